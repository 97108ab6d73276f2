/// `systemd:UNIT` resources (issue 13): which units may be managed, and what systemd's answers
/// mean. The daemon talks to systemd (VigilSystemd); these are the rules, pure and tested.
///
/// Only `.service` units: `systemd:poweroff.target` would be an administrator's way to power a
/// node off through the cluster. A unit enabled to start at boot is refused to start: the
/// cluster must be its only starter, or a reboot would run it beside the node that took it over.
/// clusterd writes a runtime drop-in for each unit it starts (as Pacemaker's 50-pacemaker.conf)
/// ordering it `Before=vigil-clusterd.service`: at shutdown systemd stops clusterd first, which
/// hands the service over and stops it itself; and `Restart=no`, so that systemd does not
/// restart behind the cluster's back what the cluster recovers.
public enum SystemdUnit {
    public static let maxName = 255

    /// The state a node reads of a unit (`LoadState`, `ActiveState`, `UnitFileState`).
    public struct State: Sendable, Equatable {
        public var load: String
        public var active: String
        public var fileState: String
        public init(load: String, active: String, fileState: String) {
            self.load = load
            self.active = active
            self.fileState = fileState
        }
    }

    static func spec(_ s: String, unit: String) -> Result<AgentSpec, PrefixParseError> {
        if let problem = problem(unit) { return .failure(.init(message: "'\(s)': \(problem)")) }
        return .success(AgentSpec(cls: .systemd, provider: nil, type: unit))
    }

    /// Why `unit` cannot be a resource, or nil.
    public static func problem(_ unit: String) -> String? {
        guard unit.hasSuffix(".service"), unit.count > ".service".count else {
            return "only systemd services may be resources (systemd:NAME.service); other unit types (targets, mounts, ...) are refused"
        }
        guard unit.utf8.count <= maxName else { return "a unit name has at most \(maxName) bytes" }
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:-_.\\@")
        guard unit.allSatisfy({ allowed.contains($0) }), !unit.hasPrefix("-"), !unit.hasPrefix(".") else {
            return "a unit name has only letters, digits and ':-_.\\@'"
        }
        let stem = unit.dropLast(".service".count)
        if let at = stem.firstIndex(of: "@"), stem[stem.index(after: at)...].isEmpty {
            return "\(unit) is a template: name an instance (NAME@INSTANCE.service)"
        }
        return nil
    }

    public static func dropInPath(_ unit: String) -> String { "/run/systemd/system/\(unit).d/50-vigil.conf" }
    public static let dropIn = """
        # Written by clusterd: this unit is a cluster resource (hactl status); only the cluster starts it.
        [Unit]
        Description=Cluster Controlled %N
        Before=vigil-clusterd.service

        [Service]
        Restart=no

        """

    /// Unit file states that start a unit at boot.
    /// (`linked` units are enabled from outside the search path. `indirect`, `generated` and a
    /// static unit pulled in by an enabled one are not seen: see README, Known limits.)
    public static let bootStates: Set<String> = ["enabled", "enabled-runtime", "linked", "linked-runtime"]

    /// Why this node must not start the unit (before its start), or nil.
    public static func refusal(_ unit: String, _ st: State) -> OperationOutcome? {
        switch st.load {
        case "loaded": break
        case "not-found": return .hardError("unit \(unit) is not installed on this node (LoadState=not-found)")
        case "masked": return .hardError("unit \(unit) is masked on this node")
        default: return .hardError("unit \(unit) cannot be loaded on this node (LoadState=\(st.load))")
        }
        if bootStates.contains(st.fileState) {
            return .hardError("unit \(unit) is enabled to start at boot (UnitFileState=\(st.fileState)): the cluster must be its only starter; run 'systemctl disable \(unit)' on this node")
        }
        return nil
    }

    /// A monitor (or probe): running, cleanly not running, or in between.
    public static func monitor(_ st: State) -> OperationOutcome {
        if st.load == "not-found" { return .notRunning }
        switch st.active {
        case "active", "reloading": return .success
        case "inactive", "failed": return .notRunning
        default: return .softError("unit is \(st.active)")
        }
    }

    /// A start or stop job ended with `result`; for a start, `st` is the unit's state after it.
    public static func jobEnded(_ op: AgentOperation, _ unit: String, result: String, then st: State?) -> OperationOutcome {
        guard result == "done" else { return .softError("\(op.rawValue) job of \(unit) ended: \(result)") }
        guard op == .start else { return .success }
        guard let st else { return .softError("started \(unit), but its state could not be read") }
        return monitor(st) == .success ? .success : .softError("the start job of \(unit) is done, but the unit is \(st.active)")
    }

    /// What `hactl agent info systemd:UNIT` says (systemd units take no parameters).
    public static func metadata(_ unit: String) -> String {
        """
        <?xml version="1.0"?>
        <resource-agent name="\(unit)" version="1">
          <version>1.1</version>
          <shortdesc lang="en">systemd unit \(unit): started, stopped and monitored through systemd's D-Bus API</shortdesc>
          <parameters/>
          <actions><action name="start" timeout="100s"/><action name="stop" timeout="100s"/><action name="monitor" timeout="100s" interval="60s"/></actions>
        </resource-agent>
        """
    }
}
