/// `hactl simulate` and `hactl apply --dry-run` (issue 12): the real scheduler on a cluster's
/// state with changes applied in imagination: nodes down or up, a resource failed on a node, a
/// node in standby, a new resources file. Nothing here acts: it returns the placement and the
/// ordered actions the coordinator would then carry out.
///
/// What the coordinator adds to the scheduler's plan and this reproduces: a planned move of an
/// `allow_migrate` resource is a migration; a resource whose running instance changed (its
/// agent, parameters, address or interface) restarts where it runs. What it does not model:
/// timing (a lost node's resources wait for its lease or its fencing), probes finding things
/// already running, and failures that have not happened.
public enum WhatIf {
    public enum Change: Sendable, Equatable, Codable, CustomStringConvertible {
        case nodeDown(String), nodeUp(String), fail(resource: String, node: String), standby(String)
        public var description: String {
            switch self {
            case .nodeDown(let n): return "node \(n) down"
            case .nodeUp(let n): return "node \(n) up"
            case .fail(let r, let n): return "\(r) failed on \(n)"
            case .standby(let n): return "node \(n) in standby"
            }
        }
    }

    /// What the simulation knows of one node.
    public struct NodeInput: Sendable, Equatable {
        public var name: String
        public var online: Bool
        public var standby: Bool
        public var held: [String]
        public var failed: [String]
        public init(name: String, online: Bool, standby: Bool, held: [String], failed: [String]) {
            self.name = name
            self.online = online
            self.standby = standby
            self.held = held
            self.failed = failed
        }
    }

    public struct Report: Sendable, Codable, Equatable {
        public struct Placed: Sendable, Codable, Equatable {
            public var resource: String
            /// Where it would run; nil: stopped (`reason` says why).
            public var node: String?
            public var reason: String?
        }
        /// The changes imagined, in words.
        public var imagined: [String] = []
        public var placement: [Placed] = []
        /// In order: `stop R on N`, `start R on N`, `migrate R from A to B`, `restart R on N`.
        public var actions: [String] = []
        /// With a new resources file: the resources it adds, removes and changes.
        public var added: [String]? = nil
        public var removed: [String]? = nil
        public var changed: [String]? = nil
        /// With a new resources file that would be refused: why (nothing else is then filled in).
        public var refused: String? = nil
    }

    public struct Refusal: Error, Sendable, CustomStringConvertible {
        public let description: String
        public init(_ d: String) { description = d }
    }

    /// Runs the scheduler on `nodes` (what each reports) under `current`, or under `newText`
    /// parsed for `cluster`, with `changes` applied. Throws only for a change naming a node or
    /// resource that does not exist.
    public static func run(cluster: ClusterConfig, current: ResourceSet, nodes: [NodeInput], changes: [Change],
                           newText: String? = nil, file: String = "resources.toml") throws(Refusal) -> Report {
        var report = Report()
        report.imagined = changes.map(\.description)
        var set = current
        if let text = newText {
            do {
                set = try ResourceSet.parse(text, file: file, cluster: cluster)
            } catch {
                report.refused = "\(error)"
                return report
            }
            let old = Set(current.names), new = Set(set.names)
            report.added = new.subtracting(old).sorted()
            report.removed = old.subtracting(new).sorted()
            report.changed = new.intersection(old).filter { r in
                cluster.dataNodes.contains { set.instanceChanged(r, from: current, on: $0.name) } || set.options(r) != current.options(r)
            }.sorted()
            report.imagined.append("resources from \(file)")
        }
        let names = Set(cluster.dataNodes.map(\.name))
        func node(_ n: String, _ flag: String) throws(Refusal) -> String {
            guard names.contains(n) else { throw Refusal("\(flag): '\(n)' is not a node of cluster '\(cluster.name)' that runs resources") }
            return n
        }
        var down: Set<String> = [], up: Set<String> = [], standby: Set<String> = [], fails: [String: Set<String>] = [:]
        for c in changes {
            switch c {
            case .nodeDown(let n): down.insert(try node(n, "--node-down"))
            case .nodeUp(let n): up.insert(try node(n, "--node-up"))
            case .standby(let n): standby.insert(try node(n, "--standby"))
            case .fail(let r, let n):
                // A clone fails as its instance on that node.
                let name = set.clone(named: r)?.instances[n] ?? r
                guard set.nameSet.contains(name) else { throw Refusal("--fail: '\(r)' is not a resource\(set.clone(named: r) != nil ? " with an instance on \(n)" : "")") }
                fails[name, default: []].insert(try node(n, "--fail"))
            }
        }
        let byName = Dictionary(nodes.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var sched: [Scheduler.Node] = []
        var state = Scheduler.State()
        for n in cluster.dataNodes {
            let input = byName[n.name]
            let online = !down.contains(n.name) && (up.contains(n.name) || (input?.online ?? false))
            sched.append(Scheduler.Node(id: n.id, name: n.name, online: online, standby: standby.contains(n.name) || (input?.standby ?? false)))
            // A node imagined up comes back running nothing; a node down runs nothing anymore.
            guard online, !up.contains(n.name) || (input?.online ?? false), let i = input else { continue }
            for r in i.held where set.nameSet.contains(r) { state.running[r, default: []].insert(n.id) }
            for r in i.failed where set.nameSet.contains(r) { state.banned[r, default: []].insert(n.id) }
        }
        let ids = Dictionary(uniqueKeysWithValues: cluster.dataNodes.map { ($0.name, $0.id) })
        for (r, ns) in fails { for n in ns { if let id = ids[n] { state.banned[r, default: []].insert(id) } } }
        let plan = Scheduler.schedule(set, nodes: sched, state: state)
        let nameOf = Dictionary(uniqueKeysWithValues: cluster.dataNodes.map { ($0.id, $0.name) })
        report.placement = set.names.map { r in
            Report.Placed(resource: r, node: plan.placement[r].flatMap { nameOf[$0] }, reason: plan.placement[r] == nil ? plan.reasons[r] ?? "stopped" : nil)
        }
        // A stop on A and a start on B of a resource that may migrate, moved for a planned
        // reason (A is up and it did not fail there), is one migration.
        var stops: [String: String] = [:]
        for case .stop(let r, let n) in plan.actions { stops[r] = n }
        // Resources the new file drops stop first, wherever they run.
        if newText != nil {
            for r in current.startOrder.reversed() where !set.nameSet.contains(r) {
                for n in cluster.dataNodes where sched.contains(where: { $0.id == n.id && $0.online }) && (byName[n.name]?.held.contains(r) ?? false) {
                    report.actions.append("stop \(r) on \(n.name)")
                }
            }
        }
        var migrating: Set<String> = []
        for case .start(let r, let to) in plan.actions {
            guard let from = stops[r], from != to, set.options(r).allowMigrate, set.migratable(r),
                  let fid = ids[from], !(state.banned[r]?.contains(fid) ?? false) else { continue }
            migrating.insert(r)
        }
        for a in plan.actions {
            switch a {
            case .stop(let r, _) where migrating.contains(r): continue
            case .start(let r, let to) where migrating.contains(r): report.actions.append("migrate \(r) from \(stops[r] ?? "?") to \(to)")
            default: report.actions.append("\(a)")
            }
        }
        // Changed definitions restart where they stay.
        let moved = Set(plan.actions.map { a -> String in
            switch a { case .stop(let r, _), .start(let r, _): return r }
        })
        for r in set.startOrder where !moved.contains(r) && newText != nil {
            guard let id = plan.placement[r], let n = nameOf[id], state.running[r]?.contains(id) ?? false,
                  set.instanceChanged(r, from: current, on: n) else { continue }
            report.actions.append("restart \(r) on \(n)")
        }
        return report
    }
}

extension ResourceSet {
    /// Whether `r`'s instance on `node` differs from `old`'s: its address and interface there,
    /// its agent and parameters. (Placement settings change where or how, not what.)
    public func instanceChanged(_ r: String, from old: ResourceSet, on node: String) -> Bool {
        if let o = old.ip(named: r), let n = ip(named: r) { return o.prefix != n.prefix || o.interface(on: node) != n.interface(on: node) }
        if let o = old.agent(named: r), let n = agent(named: r) { return o.agent != n.agent || o.params != n.params }
        return false
    }

    /// Whether `r` and every resource tied to it (group, ordering, colocation) allow migration.
    public func migratable(_ r: String) -> Bool {
        let c = component(of: r)
        // (A clone's instances stay where they are: they neither migrate nor hold it back.)
        return names.allSatisfy { n in component(of: n) != c || cloneInstance(n) != nil || (agent(named: n) != nil && options(n).allowMigrate) }
    }
}
