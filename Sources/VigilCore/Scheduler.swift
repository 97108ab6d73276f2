/// Where every resource should run: a pure, deterministic function of the configuration, the
/// membership and the current resource state, returning the placement and the ordered actions
/// that get there. The coordinator carries the placement out safely (see Engine); the
/// regression suite in Tests/VigilCoreTests/Scheduler replays scenario files through it.
///
/// Rules, in the order they apply:
/// - A group is placed as one unit: its members run together on one node, start in order and
///   stop in reverse. Its score on a node is the sum of its members' scores.
/// - A node is out for a unit when it is offline, leaving or in standby, when a member failed
///   there (`banned`: migration threshold reached, hard agent error, failed address monitor),
///   when a member cannot run there (no interface for an address), or a location says -inf.
/// - Score = location scores (`preferred` gives 50, 40, 30, ...) + stickiness of every member
///   already running there + colocation scores. The highest score wins; ties go to the lowest id.
/// - `A with B` (score inf) puts A where B is and stops A when B is stopped; -inf keeps them
///   apart; finite scores add to B's node. B is placed before A.
/// - A member stopped by `target_role = "stopped"` stops the members after it.
/// - A resource whose stop failed (`blocked`) stays where it may still run: nothing moves it.
/// - A resource whose agent said its configuration is wrong (`fatal`) runs nowhere.
public enum Scheduler {
    public struct Node: Sendable, Equatable {
        public var id: NodeID
        public var name: String
        public var online: Bool
        public var standby: Bool
        public init(id: NodeID, name: String, online: Bool = true, standby: Bool = false) {
            self.id = id
            self.name = name
            self.online = online
            self.standby = standby
        }
    }

    public struct State: Sendable, Equatable {
        /// Nodes reporting each resource as (possibly) running.
        public var running: [String: Set<NodeID>] = [:]
        /// Nodes where a resource failed and must not be placed.
        public var banned: [String: Set<NodeID>] = [:]
        /// Nodes where stopping a resource failed.
        public var blocked: [String: Set<NodeID>] = [:]
        /// Resources banned everywhere (agent reported a configuration error).
        public var fatal: Set<String> = []
        public init() {}
    }

    public enum Action: Equatable, Sendable, CustomStringConvertible {
        case stop(String, on: String)
        case start(String, on: String)
        public var description: String {
            switch self {
            case .stop(let r, let n): return "stop \(r) on \(n)"
            case .start(let r, let n): return "start \(r) on \(n)"
            }
        }
    }

    public struct Result: Sendable, Equatable {
        /// Resource name to node id; absent means stopped.
        public var placement: [String: NodeID] = [:]
        /// Why a resource is stopped or pinned.
        public var reasons: [String: String] = [:]
        public var actions: [Action] = []
    }

    struct Unit: Sendable, Equatable, Codable {
        var name: String
        var members: [String]
    }

    public static func schedule(_ set: ResourceSet, nodes: [Node], state: State) -> Result {
        var result = Result()
        let byId = Dictionary(uniqueKeysWithValues: nodes.map { ($0.id, $0) })
        let units = set.unitOrder.isEmpty && !set.names.isEmpty ? orderedUnits(set) : set.unitOrder
        let sortedNodes = nodes.sorted(by: { $0.id < $1.id })
        var unitPlacement: [String: NodeID?] = [:]

        func unitOf(_ name: String) -> String {
            if set.group(named: name) != nil { return name }
            return set.group(of: name)?.name ?? name
        }
        let notAllowed = set.clones.isEmpty ? [:] : cloneInstancesBeyondMax(set, nodes: sortedNodes, state: state)

        for unit in units {
            // Members stopped by target_role, fatal errors: they and the members after them stop.
            var active = unit.members
            if let i = unit.members.firstIndex(where: { !set.options($0).started || state.fatal.contains($0) }) {
                let m = unit.members[i]
                for r in unit.members[i...] {
                    result.reasons[r] = state.fatal.contains(m) ? "\(m): agent reported a configuration error (OCF_ERR_CONFIGURED); fix it and run hactl cleanup \(m)"
                        : (r == m ? "target_role is stopped" : "\(m) is stopped (target_role)")
                }
                active = Array(unit.members[..<i])
            }
            guard !active.isEmpty else {
                unitPlacement[unit.name] = .some(nil)
                continue
            }
            // A failed stop pins the unit: it may still run there.
            if let m = active.first(where: { !(state.blocked[$0] ?? []).isEmpty }), let n = state.blocked[m]?.min() {
                for r in active { result.reasons[r] = "\(m) failed to stop on \(byId[n]?.name ?? "?"); it stays there until the operator checks it and runs hactl cleanup \(m)" }
                for r in active where (state.running[r] ?? []).contains(n) { result.placement[r] = n }
                unitPlacement[unit.name] = .some(n)
                continue
            }
            if let why = notAllowed[unit.name] {
                for r in active { result.reasons[r] = why }
                unitPlacement[unit.name] = .some(nil)
                continue
            }
            var best: (score: Int, id: NodeID)?
            var why = "no node is online"
            var withStopped: String?
            // What the unit's members say, looked up once per unit rather than once per node.
            var banned: Set<NodeID> = []
            for r in active { if let b = state.banned[r] { banned.formUnion(b) } }
            let addresses = active.compactMap { set.ip(named: $0) }
            let members = active.map { (options: set.options($0), running: state.running[$0] ?? []) }
            let colocations = set.colocations.isEmpty ? [] : set.colocations.filter { c in c.resource == unit.name || active.contains(c.resource) }
            // With a clone: the nodes where its instances are placed (they are placed first).
            var cloneNodes: [String: Set<NodeID>] = [:]
            for c in colocations { if let cl = set.clone(named: c.with) { cloneNodes[c.with] = Set(cl.instances.values.compactMap { unitPlacement[$0] ?? nil }) } }
            for node in sortedNodes {
                guard node.online else { continue }
                if why == "no node is online" { why = "no node can run it" }
                guard !node.standby else { why = "every eligible node is offline or in standby"; continue }
                if banned.contains(node.id) { why = "failed on every eligible node (hactl cleanup clears failures)"; continue }
                if addresses.contains(where: { $0.interface(on: node.name) == nil }) { continue }
                var score = 0
                for m in members {
                    score = Score.add(score, m.options.locations[node.name] ?? 0)
                    if m.running.contains(node.id) { score = Score.add(score, m.options.stickiness) }
                }
                for c in colocations {
                    // With a clone: a node where one of its instances is placed.
                    if let on = cloneNodes[c.with] {
                        if c.score >= Score.infinity {
                            if on.isEmpty { withStopped = c.with; score = -Score.infinity; break }
                            if !on.contains(node.id) { score = -Score.infinity }
                        } else if c.score <= -Score.infinity {
                            if on.contains(node.id) { score = -Score.infinity }
                        } else if on.contains(node.id) {
                            score = Score.add(score, c.score)
                        }
                        continue
                    }
                    let w = unitOf(c.with)
                    guard let wp = unitPlacement[w] else { continue }
                    if c.score >= Score.infinity {
                        guard let wn = wp else { withStopped = c.with; score = -Score.infinity; break }
                        if wn != node.id { score = -Score.infinity }
                    } else if c.score <= -Score.infinity {
                        if wp == node.id { score = -Score.infinity }
                    } else if wp == node.id {
                        score = Score.add(score, c.score)
                    }
                }
                if score <= -Score.infinity {
                    why = withStopped.map { "it must run with \($0), which is stopped" } ?? "location or colocation rules forbid every node"
                    continue
                }
                if best == nil || score > (best?.score ?? Int.min) { best = (score, node.id) }
            }
            if let b = best {
                for r in active { result.placement[r] = b.id }
                unitPlacement[unit.name] = .some(b.id)
            } else {
                let instance = active.count == 1 ? set.cloneInstance(active[0]) : nil
                for r in active { result.reasons[r] = instance.map { "an instance of clone \($0.clone), bound to \($0.node), which cannot run it now (offline, standby, failed there or banned)" } ?? why }
                unitPlacement[unit.name] = .some(nil)
            }
        }

        // Actions: stops (dependents first), then starts (predecessors first). Resources on
        // offline nodes need no stop: their lease has ended them.
        let order = set.startOrder
        // A resource (re)starts where it is placed if it does not run there yet, or if a
        // predecessor (re)starts: what depends on it is restarted after it.
        var needsStart: Set<String> = []
        for r in order {
            guard let n = result.placement[r] else { continue }
            let runsThere = (state.running[r] ?? []).contains(n)
            let blocked = !(state.blocked[r] ?? []).isEmpty
            if !blocked && (!runsThere || set.predecessors(of: r).contains(where: { needsStart.contains($0) && result.placement[$0] == n })) {
                needsStart.insert(r)
            }
        }
        for r in order.reversed() {
            for n in (state.running[r] ?? []).sorted() where (result.placement[r] != n || needsStart.contains(r)) && (byId[n]?.online ?? false) {
                result.actions.append(.stop(r, on: byId[n]?.name ?? "node\(n)"))
            }
        }
        for r in order where needsStart.contains(r) {
            if let n = result.placement[r] {
                result.actions.append(.start(r, on: byId[n]?.name ?? "node\(n)"))
            }
        }
        return result
    }

    /// Units in placement order: a unit colocated with another comes after it.
    static func orderedUnits(_ set: ResourceSet) -> [Unit] {
        var units: [Unit] = []
        var seen: Set<String> = []
        for r in set.names {
            if let g = set.group(of: r) {
                if seen.insert(g.name).inserted { units.append(Unit(name: g.name, members: g.members)) }
            } else {
                units.append(Unit(name: r, members: [r]))
            }
        }
        func unitName(_ x: String) -> String { set.group(named: x) != nil ? x : (set.group(of: x)?.name ?? x) }
        var deps: [String: [String]] = [:]
        for c in set.colocations {
            // (A clone's instances are placed before what is colocated with the clone.)
            deps[unitName(c.resource), default: []].append(contentsOf: set.clone(named: c.with) != nil ? set.expand(c.with) : [unitName(c.with)])
        }
        var out: [Unit] = []
        var done: Set<String> = []
        var visiting: Set<String> = []
        let byName = Dictionary(uniqueKeysWithValues: units.map { ($0.name, $0) })
        func visit(_ u: Unit) {
            if done.contains(u.name) || visiting.contains(u.name) { return }
            visiting.insert(u.name)
            for d in deps[u.name] ?? [] { if let du = byName[d] { visit(du) } }
            visiting.remove(u.name)
            done.insert(u.name)
            out.append(u)
        }
        for u in units { visit(u) }
        return out
    }

    /// Resources with every predecessor before it (file order otherwise).
    public static func startOrder(_ set: ResourceSet) -> [String] {
        var out: [String] = []
        var done: Set<String> = []
        var visiting: Set<String> = []
        func visit(_ r: String) {
            if done.contains(r) || visiting.contains(r) { return }
            visiting.insert(r)
            for p in set.predecessors(of: r) { visit(p) }
            visiting.remove(r)
            done.insert(r)
            out.append(r)
        }
        for r in set.names { visit(r) }
        return out
    }

    /// Clones with `max` below their instances: the instances that may not run (and why). An
    /// instance whose stop failed counts first (it may still run), then an operator's preference
    /// (`hactl move CLONE NODE`), then those that run already, then the better location, then the
    /// lower node id; only instances that could run (node online, not in standby, not failed
    /// there) count besides the blocked.
    static func cloneInstancesBeyondMax(_ set: ResourceSet, nodes: [Node], state: State) -> [String: String] {
        var out: [String: String] = [:]
        for cl in set.clones where cl.max < cl.instances.count {
            var candidates: [(name: String, rank: Int, score: Int, id: NodeID)] = []
            for n in nodes {
                guard let i = cl.instances[n.name] else { continue }
                let o = set.options(i), location = o.locations[n.name] ?? 0
                if !(state.blocked[i] ?? []).isEmpty {
                    candidates.append((i, 3, location, n.id))
                    continue
                }
                guard n.online, !n.standby, o.started, !state.fatal.contains(i), !(state.banned[i] ?? []).contains(n.id), location > -Score.infinity else { continue }
                let rank = location >= Score.infinity ? 2 : ((state.running[i] ?? []).contains(n.id) ? 1 : 0)
                candidates.append((i, rank, location, n.id))
            }
            candidates.sort { ($0.rank, $0.score, -Int($0.id.rawValue)) > ($1.rank, $1.score, -Int($1.id.rawValue)) }
            let allowed = Set(candidates.prefix(cl.max).map(\.name))
            // (Instances that cannot run anyway are left to placement, which says why.)
            for c in candidates where !allowed.contains(c.name) { out[c.name] = "clone \(cl.name) runs on at most \(cl.max) node\(cl.max == 1 ? "" : "s")" }
        }
        return out
    }
}
