/// Maintenance (`hactl maintenance on|off`) and unmanaged resources (`hactl unmanage|manage`),
/// as Pacemaker's `maintenance-mode` and `is-managed=false`: `[[maintenance]]` tables in the
/// resources file, so they are committed, replicated, persisted and shown like any change.
/// A frozen resource is monitored and reported, never started, stopped, restarted or moved.
public enum MaintenanceEdit {
    public enum Request: Sendable, Equatable {
        case cluster(on: Bool)
        case resource(String, managed: Bool)
    }

    public static func apply(_ req: Request, to text: String, set: ResourceSet) throws(ConstraintEdit.Refusal) -> ConstraintEdit.Result {
        switch req {
        case .cluster(let on):
            if on {
                guard !set.maintenance else { throw .init("the cluster is in maintenance already") }
                let t = "# hactl maintenance on: nothing is started, stopped or recovered; hactl maintenance off ends it\n[[maintenance]]\nscope = \"cluster\"\n"
                return .init(text: ConstraintEdit.appendingBlock(t, to: text),
                             message: "cluster in maintenance: nothing is started, stopped or recovered until hactl maintenance off")
            }
            guard set.maintenance else { throw .init("the cluster is not in maintenance") }
            let out = removing(key: "scope", value: "cluster", from: text)
            guard out.removed > 0 else { throw .init("the maintenance table was not written by hactl: edit the resources file") }
            return .init(text: out.text, message: "maintenance ended: every node probes its resources again before acting")
        case .resource(let r, let managed):
            let name = set.group(of: r)?.name ?? set.cloneInstance(r)?.clone ?? r
            let note = name == r ? "" : " (a member of \(set.clone(named: name) != nil ? "clone" : "group") \(name): all of it as one)"
            guard set.nameSet.contains(r) || set.group(named: r) != nil || set.clone(named: r) != nil else {
                throw .init("'\(r)' is not a resource or group of the current configuration")
            }
            if !managed {
                guard !set.unmanagedNames.contains(name) else { throw .init("\(name) is unmanaged already") }
                let t = "# hactl unmanage \(name): monitored, never acted on; hactl manage \(name) ends it\n[[maintenance]]\nresource = \"\(name)\"\n"
                return .init(text: ConstraintEdit.appendingBlock(t, to: text),
                             message: "\(name) unmanaged\(note): monitored and reported, never started, stopped or moved until hactl manage \(name)")
            }
            let out = removing(key: "resource", value: name, from: text)
            guard out.removed > 0 else { throw .init("\(name) is not unmanaged\(note)") }
            return .init(text: out.text, message: "\(name) managed again\(note): probed before anything is done")
        }
    }

    static func removing(key: String, value: String, from text: String) -> (text: String, removed: Int) {
        ConstraintEdit.removingTables(header: "[[maintenance]]", from: text) { body in
            body[key] == value
        }
    }
}
