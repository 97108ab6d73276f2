/// Scores as in Pacemaker: integers, with +/-infinity meaning "must" and "never".
public enum Score {
    public static let infinity = 1_000_000
    public static func parse(_ s: String) -> Int? {
        switch s.lowercased() {
        case "inf", "+inf", "infinity", "+infinity": return infinity
        case "-inf", "-infinity": return -infinity
        default:
            guard let v = Int(s) else { return nil }
            return max(-infinity, min(infinity, v))
        }
    }
    public static func add(_ a: Int, _ b: Int) -> Int {
        if a <= -infinity || b <= -infinity { return -infinity }
        return min(infinity, a + b)
    }
}

/// Options every resource has (floating addresses and agent resources alike).
public struct ResourceOptions: Sendable, Equatable, Codable {
    /// Preference to stay where it runs; larger than the default preference scores, so a
    /// recovered node does not pull resources back unless asked.
    public var stickiness: Int = 100
    /// `stopped` keeps it stopped everywhere.
    public var started: Bool = true
    /// Failures on one node before the resource moves away from it.
    public var migrationThreshold: Int = 3
    /// Failures older than this are forgotten (0: never).
    public var failureTimeoutMs: UInt64 = 0
    public var monitorIntervalMs: UInt64 = 10_000
    public var monitorTimeoutMs: UInt64 = 20_000
    public var startTimeoutMs: UInt64 = 20_000
    public var stopTimeoutMs: UInt64 = 20_000
    /// A planned move runs migrate_to, migrate_from, then stop (OCF agents that advertise both).
    public var allowMigrate = false, migrateTimeoutMs: UInt64 = 120_000
    /// After its node was lost, starts elsewhere only once that node was fenced (agent resources).
    public var requiresFencing = false
    /// Location scores per node name (from `preferred` and [[location]]).
    public var locations: [String: Int] = [:]
    public init() {}
}

public struct AgentParam: Sendable, Equatable, Codable {
    public var name: String
    public var value: String
    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// A protected application run by a resource agent.
/// Resource definitions: cluster state, replicated by the coordinator. See README "Resources file".
public struct FloatingIP: Sendable, Equatable, Codable {
    public var name: String
    public var prefix: IPPrefix
    /// Interface used on nodes without a per-node entry.
    public var interface: String?
    /// Per-node interface names (nodes with dedicated or differently named NICs).
    public var interfaces: [String: String]
    /// Ordered node preference; nodes not listed are still eligible, after the listed ones.
    public var preferred: [String]
    /// Move back to a more preferred node when it returns. Off by default (stickiness).
    public var failback: Bool
    /// Gratuitous ARP / unsolicited NA on takeover.
    public var announceCount: Int
    public var announceIntervalMs: UInt64
    /// Re-announce periodically while held (0 = never).
    public var refreshIntervalMs: UInt64
    /// How often the address and its interface are checked.
    public var monitorIntervalMs: UInt64

    public func interface(on node: String) -> String? { interfaces[node] ?? interface }
}

public struct ResourceSet: Sendable, Equatable, Codable {
    public var ips: [FloatingIP]
    public var agents: [AgentResource] = []
    public var groups: [ResourceGroup] = []
    public var colocations: [Colocation] = []
    public var orderings: [Ordering] = []
    public var clones: [ResourceClone] = []
    /// Fence devices and levels.
    public var fencing = FenceTopology()
    /// Options by resource name.
    public var options: [String: ResourceOptions] = [:]
    /// Every resource name in file order.
    public internal(set) var names: [String] = []
    /// Location constraints `hactl move` and `ban` added (see Constraints.swift).
    public internal(set) var operatorConstraints: [OperatorConstraint] = []
    /// The whole cluster in maintenance: nothing is started, stopped or recovered.
    public internal(set) var maintenance = false
    /// Resources not managed (`hactl unmanage`; a group's members), and the names as given.
    public internal(set) var unmanaged: Set<String> = []
    public internal(set) var unmanagedNames: [String] = []
    /// Resources the cluster leaves alone: every one in maintenance, else the unmanaged.
    public func isFrozen(_ r: String) -> Bool { maintenance || unmanaged.contains(r) }

    public init(ips: [FloatingIP] = []) {
        self.ips = ips
        self.names = ips.map(\.name)
        for ip in ips { options[ip.name] = ResourceOptions() }
        buildGraph()
    }

    // Lookups by name go through indexes built with the graph (the scheduler asks for every
    // resource on every node: a linear scan made placement quadratic in the number of resources).
    private var ipIndex: [String: Int] = [:]
    private var agentIndex: [String: Int] = [:]
    private var groupIndex: [String: Int] = [:]
    private var groupOfIndex: [String: Int] = [:]
    private var indexed: Bool { ipIndex.count == ips.count && agentIndex.count == agents.count && groupIndex.count == groups.count }

    public func ip(named n: String) -> FloatingIP? {
        guard indexed else { return ips.first { $0.name == n } }
        return ipIndex[n].map { ips[$0] }
    }
    public func agent(named n: String) -> AgentResource? {
        guard indexed else { return agents.first { $0.name == n } }
        return agentIndex[n].map { agents[$0] }
    }
    public func group(of r: String) -> ResourceGroup? {
        guard indexed else { return groups.first { $0.members.contains(r) } }
        return groupOfIndex[r].map { groups[$0] }
    }
    public func group(named n: String) -> ResourceGroup? {
        guard indexed else { return groups.first { $0.name == n } }
        return groupIndex[n].map { groups[$0] }
    }
    public func options(_ r: String) -> ResourceOptions { options[r] ?? ResourceOptions() }

    /// Order relations, computed once when the set is parsed (the engine asks on every tick).
    private var predecessorMap: [String: [String]] = [:]
    private var dependentMap: [String: [String]] = [:]
    public private(set) var startOrder: [String] = []
    /// `names` as a set (looked up on every evaluation), built with the graph.
    public private(set) var nameSet: Set<String> = []
    /// The scheduler's placement units (groups and lone resources) in dependency order.
    private(set) var unitOrder: [Scheduler.Unit] = []

    mutating func buildGraph() {
        ipIndex = [:]
        agentIndex = [:]
        groupIndex = [:]
        groupOfIndex = [:]
        for (i, x) in ips.enumerated() where ipIndex[x.name] == nil { ipIndex[x.name] = i }
        for (i, x) in agents.enumerated() where agentIndex[x.name] == nil { agentIndex[x.name] = i }
        for (i, g) in groups.enumerated() where groupIndex[g.name] == nil {
            groupIndex[g.name] = i
            for m in g.members where groupOfIndex[m] == nil { groupOfIndex[m] = i }
        }
        predecessorMap = [:]
        for r in names { predecessorMap[r] = computePredecessors(of: r) }
        dependentMap = [:]
        for r in names { for p in predecessorMap[r] ?? [] { dependentMap[p, default: []].append(r) } }
        startOrder = Scheduler.startOrder(self)
        nameSet = Set(names)
        unitOrder = Scheduler.orderedUnits(self)
        buildComponents()
    }

    /// Resources tied together by groups, orderings and colocations, numbered: a probe still
    /// running for one of them can change where the others go, so the coordinator starts none
    /// of them anew until it is done. Unrelated resources never wait for each other's probes.
    public internal(set) var componentIndex: [String: Int] = [:]

    /// Resources that must be running before `r` starts (and stop after it): the previous
    /// group member and the `first` of every ordering whose `then` is `r` (or its group).
    public func predecessors(of r: String) -> [String] {
        predecessorMap[r] ?? computePredecessors(of: r)
    }

    private func computePredecessors(of r: String) -> [String] {
        var out: [String] = []
        if let g = group(of: r), let i = g.members.firstIndex(of: r), i > 0 { out.append(g.members[i - 1]) }
        let owners = [r] + (group(of: r).map { g in g.members.first == r ? [g.name] : [] } ?? [])
        for o in orderings where owners.contains(o.then) {
            if let g = group(named: o.first), let last = g.members.last { out.append(last) } else { out.append(contentsOf: expand(o.first)) }
        }
        return out
    }

    /// Resources that depend on `r` (inverse of `predecessors`).
    public func dependents(of r: String) -> [String] {
        if !predecessorMap.isEmpty { return dependentMap[r] ?? [] }
        return names.filter { predecessors(of: $0).contains(r) }
    }

    /// Replicated in pieces (`Message.maxChunk`), so not bound by one datagram.
    public static let maxTextBytes = 512 * 1024

    /// Parses and validates a resources file against the cluster's nodes.
    /// Nothing is partially accepted: either the whole set is valid or an error names the first problem.
    public static func parse(_ text: String, file: String, cluster: ClusterConfig) throws(ConfigError) -> ResourceSet {
        if text.utf8.count > maxTextBytes {
            throw ConfigError(file: file, message: "is \(text.utf8.count) bytes; at most \(maxTextBytes) bytes are supported")
        }
        let root = try parseTOML(text, file: file)
        var top = TableReader(root, path: "", file: file)
        var ips: [FloatingIP] = []
        var set = ResourceSet()
        // Resources name data nodes only: a witness runs nothing.
        let nodeNames = Set(cluster.dataNodes.map(\.name))
        let witnessNames = Set(cluster.nodes.filter { $0.role == .witness }.map(\.name))
        func notANode(_ n: String) -> String {
            witnessNames.contains(n) ? "'\(n)' is a witness of cluster '\(cluster.name)': it runs no resources" : "'\(n)' is not a node of cluster '\(cluster.name)'"
        }
        set.fencing = try FenceTopology.parse(&top, nodeNames: nodeNames, notANode: notANode)
        // `requires = "fencing"` is the default only where every data node can be fenced.
        let everyNodeFenced = cluster.watchdog != nil || cluster.dataNodes.allSatisfy { set.fencing.covers($0.name) }
        var allNames: Set<String> = []
        var addressOwner: [IPAddress: String] = [:]
        func checkNewName(_ name: String, _ t: TableReader) throws(ConfigError) {
            guard ClusterConfig.validName(name) else { throw t.error("name", "'\(name)' may contain only letters, digits, '-', '_' and '.'") }
            guard allNames.insert(name).inserted else { throw t.error("name", "duplicate resource or group name '\(name)'") }
        }
        for var t in try top.tableArray("ip") {
            let name = try t.requiredString("name")
            try checkNewName(name, t)
            let addrText = try t.requiredString("address")
            let prefix: IPPrefix
            switch IPPrefix.parse(addrText) {
            case .success(let p): prefix = p
            case .failure(let e): throw t.error("address", e.message)
            }
            if let other = addressOwner[prefix.address] {
                throw t.error("address", "\(prefix.address) is already used by '\(other)'")
            }
            addressOwner[prefix.address] = name
            if cluster.nodes.contains(where: { $0.addresses.contains(prefix.address) }) {
                throw t.error("address", "\(prefix.address) is a node's heartbeat address")
            }
            let iface = try t.string("interface")
            if let iface { try checkInterfaceName(iface, reader: t, key: "interface") }
            var perNode: [String: String] = [:]
            for entry in try t.stringMap("interfaces") ?? [] {
                guard nodeNames.contains(entry.key) else {
                    throw t.error("interfaces", notANode(entry.key), line: entry.line)
                }
                try checkInterfaceName(entry.value, reader: t, key: "interfaces.\(entry.key)")
                perNode[entry.key] = entry.value
            }
            if iface == nil {
                let missing = cluster.dataNodes.map(\.name).filter { perNode[$0] == nil }
                if !missing.isEmpty {
                    throw t.error(nil, "no interface for node(s) \(missing.joined(separator: ", ")): set 'interface' or add them to 'interfaces'")
                }
            }
            let preferred = try t.stringArray("preferred") ?? []
            for p in preferred where !nodeNames.contains(p) {
                throw t.error("preferred", notANode(p))
            }
            if Set(preferred).count != preferred.count { throw t.error("preferred", "lists a node twice") }
            let failback = try t.bool("failback") ?? false
            let count = try t.int("announce_count", range: 0...100) ?? 3
            let aInt = try t.int("announce_interval_ms", range: 1...60_000) ?? 100
            let refresh = try t.int("announce_refresh_ms", range: 0...86_400_000) ?? 0
            if refresh > 0 && refresh < 1000 { throw t.error("announce_refresh_ms", "\(refresh) ms is too frequent; use 0 (off) or at least 1000") }
            let mon = try t.int("monitor_interval_ms", range: 50...600_000) ?? 1000
            var opts = try readOptions(&t, preferred: preferred, nodeNames: nodeNames, cluster: cluster)
            if failback { opts.stickiness = 0 }
            opts.monitorIntervalMs = UInt64(mon)
            set.options[name] = opts
            set.names.append(name)
            try t.finish()
            ips.append(FloatingIP(
                name: name, prefix: prefix, interface: iface, interfaces: perNode, preferred: preferred,
                failback: failback, announceCount: Int(count), announceIntervalMs: UInt64(aInt),
                refreshIntervalMs: UInt64(refresh), monitorIntervalMs: UInt64(mon)))
        }
        set.ips = ips
        // A [[clone]] reads as a [[resource]] (and `max`); it becomes one instance per data node.
        for (isClone, var t) in try top.tableArray("resource").map({ (false, $0) }) + top.tableArray("clone").map({ (true, $0) }) {
            let name = try t.requiredString("name")
            try checkNewName(name, t)
            let agentText = try t.requiredString("agent")
            let spec: AgentSpec
            switch AgentSpec.parse(agentText) {
            case .success(let a): spec = a
            case .failure(let e): throw t.error("agent", e.message)
            }
            var params: [AgentParam] = []
            for entry in try t.stringMap("params") ?? [] {
                guard !entry.key.isEmpty, entry.key.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) else {
                    throw t.error("params", "parameter name '\(entry.key)' may contain only letters, digits and '_'", line: entry.line)
                }
                params.append(AgentParam(name: entry.key, value: entry.value))
            }
            let preferred = try t.stringArray("preferred") ?? []
            for p in preferred where !nodeNames.contains(p) { throw t.error("preferred", notANode(p)) }
            var opts = try readOptions(&t, preferred: preferred, nodeNames: nodeNames, cluster: cluster)
            opts.monitorIntervalMs = UInt64(try t.int("monitor_interval_ms", range: 0...86_400_000) ?? 10_000)
            opts.monitorTimeoutMs = UInt64(try t.int("monitor_timeout_ms", range: 100...3_600_000) ?? 20_000)
            opts.startTimeoutMs = UInt64(try t.int("start_timeout_ms", range: 100...3_600_000) ?? 20_000)
            opts.stopTimeoutMs = UInt64(try t.int("stop_timeout_ms", range: 100...3_600_000) ?? 20_000)
            opts.allowMigrate = try t.bool("allow_migrate") ?? false
            opts.migrateTimeoutMs = UInt64(try t.int("migrate_timeout_ms", range: 100...86_400_000) ?? 120_000)
            if spec.cls == .systemd && !params.isEmpty { throw t.error("params", "systemd units take no parameters (set them in the unit or a drop-in)") }
            if opts.allowMigrate && spec.cls != .ocf { throw t.error("allow_migrate", "only OCF agents migrate (\(spec) has no migrate_to/migrate_from)") }
            switch try t.string("requires") {
            case nil: opts.requiresFencing = everyNodeFenced
            case "quorum": opts.requiresFencing = false
            case "fencing": opts.requiresFencing = true
            case let other?: throw t.error("requires", "'\(other)' is not one of: quorum, fencing")
            }
            let cloneMax = isClone ? try t.int("max", range: 1...64).map { Int($0) } : nil
            if isClone && cluster.node(named: name) != nil { throw t.error("name", "'\(name)' is a node's name: a clone needs a name of its own") }
            if isClone && opts.allowMigrate { throw t.error("allow_migrate", "a clone runs on every node it may: it has nothing to migrate") }
            try t.finish()
            if isClone {
                set.addClone(name, AgentResource(name: name, agent: spec, params: params), opts, max: cloneMax, nodes: cluster.dataNodes.map(\.name))
                continue
            }
            set.agents.append(AgentResource(name: name, agent: spec, params: params))
            set.options[name] = opts
            set.names.append(name)
        }
        let resourceNames = Set(set.names)
        for var t in try top.tableArray("group") {
            let name = try t.requiredString("name")
            try checkNewName(name, t)
            guard let members = try t.stringArray("members"), !members.isEmpty else { throw t.error("members", "a group needs at least one member") }
            for m in members {
                guard resourceNames.contains(m), set.cloneInstance(m) == nil else { throw t.error("members", "'\(m)' is not a resource defined in this file") }
                if let other = set.groups.first(where: { $0.members.contains(m) }) { throw t.error("members", "'\(m)' is already a member of group '\(other.name)'") }
            }
            if Set(members).count != members.count { throw t.error("members", "lists a resource twice") }
            try t.finish()
            set.groups.append(ResourceGroup(name: name, members: members))
        }
        try set.readConstraints(&top, nodeNames: nodeNames, notANode: notANode)
        try top.finish()
        // A resource that waits for fencing must not be able to run where no device reaches.
        for a in set.agents where set.options(a.name).requiresFencing {
            let eligible = cluster.dataNodes.map(\.name).filter { (set.options(a.name).locations[$0] ?? 0) > -Score.infinity }
            if cluster.watchdog == nil, let n = eligible.first(where: { !set.fencing.covers($0) }) {
                throw ConfigError(file: file, key: "resource.\(a.name).requires", message: "resource '\(a.name)' requires fencing but may run on '\(n)', which no fence device covers: add a [[fence]] device for it, ban the resource from it, or set requires = \"quorum\"")
            }
        }
        if let cycle = set.dependencyCycle() {
            throw ConfigError(file: file, key: "order", message: "ordering and groups form a cycle: \(cycle.joined(separator: " -> "))")
        }
        if let cycle = set.colocationCycle() {
            throw ConfigError(file: file, key: "colocation", message: "colocations form a cycle: \(cycle.joined(separator: " -> "))")
        }
        set.buildGraph()
        return set
    }
}
