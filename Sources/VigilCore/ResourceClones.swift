/// `[[clone]]` (issue 13): a resource run on every eligible data node at once (a local DNS
/// cache, a monitoring agent, a cluster filesystem's daemon), or on at most `max` of them.
///
/// A clone is one instance per data node, each an ordinary agent resource named `NAME:NODE` and
/// bound to its node (a location of -inf everywhere else): an instance is probed, started,
/// monitored, restarted and banned on its node alone, so a failure is handled where it happened
/// without touching the others, and the heartbeat carries instances as it carries any resource
/// (paged beyond one datagram). The agent sees the clone's name as `OCF_RESOURCE_INSTANCE`.
/// With `max` below the number of nodes the scheduler runs the instances that already run first,
/// then by location. Other resources may refer to the clone: `[[colocation]] with = "NAME"` puts
/// them on a node where an instance is placed; `[[order]] first = "NAME"` starts them after the
/// instance on their own node (pair the two: "start the address after the clone runs here").
public struct ResourceClone: Sendable, Equatable, Codable {
    public var name: String
    public var max: Int
    /// Instance resource names by the node each is bound to.
    public var instances: [String: String]
}

extension ResourceSet {
    mutating func addClone(_ name: String, _ agent: AgentResource, _ opts: ResourceOptions, max: Int?, nodes: [String]) {
        var instances: [String: String] = [:]
        for n in nodes {
            let i = "\(name):\(n)"
            var o = opts
            for m in nodes where m != n { o.locations[m] = -Score.infinity }
            agents.append(AgentResource(name: i, agent: agent.agent, params: agent.params))
            options[i] = o
            names.append(i)
            instances[n] = i
        }
        clones.append(ResourceClone(name: name, max: Swift.min(max ?? nodes.count, nodes.count), instances: instances))
    }

    public func clone(named n: String) -> ResourceClone? { clones.first { $0.name == n } }

    /// The clone and node of an instance name (`NAME:NODE`), nil for anything else.
    public func cloneInstance(_ r: String) -> (clone: String, node: String)? {
        guard !clones.isEmpty, let colon = r.lastIndex(of: ":") else { return nil }
        let c = String(r[..<colon]), n = String(r[r.index(after: colon)...])
        guard let cl = clone(named: c), cl.instances[n] == r else { return nil }
        return (c, n)
    }

    /// An instance bound to another node than `node` (never probed or run there).
    public func boundElsewhere(_ r: String, from node: String) -> Bool {
        cloneInstance(r).map { $0.node != node } ?? false
    }

    /// What a name in a constraint stands for: a group's members, a clone's instances, or itself.
    public func expand(_ r: String) -> [String] {
        if let g = group(named: r) { return g.members }
        if let c = clone(named: r) { return c.instances.keys.sorted().compactMap { c.instances[$0] } }
        return [r]
    }

    /// The name an agent is told (`OCF_RESOURCE_INSTANCE`): a clone's name for its instances.
    public static func agentInstanceName(_ r: String) -> String {
        r.firstIndex(of: ":").map { String(r[..<$0]) } ?? r
    }

    /// `[[location]]`, `[[colocation]]`, `[[order]]` and `[[maintenance]]`.
    mutating func readConstraints(_ top: inout TableReader, nodeNames: Set<String>, notANode: (String) -> String) throws(ConfigError) {
        let groupNames = Set(groups.map(\.name)), cloneNames = Set(clones.map(\.name))
        let resourceNames = Set(names.filter { cloneInstance($0) == nil })
        func checkRef(_ r: String, _ t: TableReader, _ key: String) throws(ConfigError) {
            guard resourceNames.contains(r) || groupNames.contains(r) || cloneNames.contains(r) else {
                throw t.error(key, "'\(r)' is not a resource, group or clone defined in this file")
            }
        }
        for var t in try top.tableArray("location") {
            let r = try t.requiredString("resource")
            try checkRef(r, t, "resource")
            let node = try t.requiredString("node")
            guard nodeNames.contains(node) else { throw t.error("node", notANode(node)) }
            let score = try Self.readScore(&t)
            if let origin = try t.string("origin") {
                guard let kind = OperatorConstraint.Kind(rawValue: String(origin.dropFirst(6))), origin.hasPrefix("hactl "),
                      score == (kind == .move ? Score.infinity : -Score.infinity) else {
                    throw t.error("origin", "'\(origin)' is not an origin hactl writes (\"hactl move\" with score \"inf\", \"hactl ban\" with \"-inf\")")
                }
                var expires: UInt64?
                if let e = try t.string("expires") {
                    guard let ms = WallTime.parse(e) else { throw t.error("expires", "'\(e)' is not a UTC time as YYYY-MM-DDTHH:MM:SSZ") }
                    expires = ms
                }
                operatorConstraints.append(OperatorConstraint(kind: kind, resource: r, node: node, expiresMs: expires))
            }
            try t.finish()
            for m in expand(r) {
                // (A clone's instance is bound to its node: a location only ranks its own node.)
                if let i = cloneInstance(m), i.node != node { continue }
                options[m, default: ResourceOptions()].locations[node] = score
            }
        }
        for var t in try top.tableArray("colocation") {
            let r = try t.requiredString("resource")
            try checkRef(r, t, "resource")
            let w = try t.requiredString("with")
            try checkRef(w, t, "with")
            if r == w { throw t.error("with", "a resource cannot be colocated with itself") }
            if cloneNames.contains(r) { throw t.error("resource", "a clone runs on every node it may: colocate the other resource with it (with = \"\(r)\")") }
            let score = try Self.readScore(&t)
            try t.finish()
            colocations.append(Colocation(resource: r, with: w, score: score))
        }
        for var t in try top.tableArray("order") {
            let f = try t.requiredString("first")
            try checkRef(f, t, "first")
            let th = try t.requiredString("then")
            try checkRef(th, t, "then")
            if f == th { throw t.error("then", "a resource cannot be ordered after itself") }
            if cloneNames.contains(th) { throw t.error("then", "a clone's instances start on their own; order other resources after it (first = \"\(th)\")") }
            // After a clone means after its instance on the same node: without the colocation a
            // resource could sit on a node whose instance never starts, and never start itself.
            if cloneNames.contains(f), !colocations.contains(where: { $0.resource == th && $0.with == f && $0.score >= Score.infinity }) {
                throw t.error("first", "a resource ordered after clone '\(f)' must also be colocated with it: add [[colocation]] resource = \"\(th)\" with = \"\(f)\"")
            }
            try t.finish()
            orderings.append(Ordering(first: f, then: th))
        }
        // Maintenance (`hactl maintenance on`, `hactl unmanage R`; see Maintenance.swift).
        for var t in try top.tableArray("maintenance") {
            if let scope = try t.string("scope") {
                guard scope == "cluster" else { throw t.error("scope", "'\(scope)' is not a scope: use \"cluster\" (or resource = \"NAME\" for one resource)") }
                guard try t.string("resource") == nil else { throw t.error("resource", "give scope = \"cluster\" or a resource, not both") }
                maintenance = true
            } else {
                let r = try t.requiredString("resource")
                try checkRef(r, t, "resource")
                unmanagedNames.append(r)
                for m in expand(r) { unmanaged.insert(m) }
            }
            try t.finish()
        }
    }
}
