/// Fence devices and levels: the `[[fence]]` and `[[fence_level]]` entries of the resources
/// file (replicated with the rest of it). See README "Fencing".

/// A fence device: an agent speaking the fence-agents protocol (`key=value` lines on stdin),
/// its parameters, and the nodes it can fence.
public struct FenceDevice: Sendable, Equatable, Codable {
    public var name: String
    /// `fence_*` executable: a name looked up in the fence agents' directories, or an absolute path.
    public var agent: String
    /// Parameters sent on stdin, in file order (secrets included: never on the command line).
    public var params: [AgentParam]
    /// Nodes it can fence, each fenced as the plug of the same name unless `hostMap` says otherwise.
    public var hosts: [String]
    /// Node to plug (the agent's `plug`/`port`), for devices whose outlets are not named after nodes.
    public var hostMap: [String: String]
    public var timeoutMs: UInt64
    /// How often every data node runs the device's `monitor` action (0: never).
    public var monitorIntervalMs: UInt64

    public func covers(_ node: String) -> Bool { hosts.contains(node) || hostMap[node] != nil }
    public func plug(for node: String) -> String { hostMap[node] ?? node }

    /// Parameter names whose values are never shown (config show, logs, status).
    public static func isSecret(_ key: String) -> Bool {
        let k = key.lowercased()
        return k.contains("passw") || k.contains("secret") || k.contains("community") || k.hasSuffix("_key") || k == "key"
    }

    /// Directories searched for an agent given by name (Debian's fence-agents install into /usr/sbin).
    public static let searchPath = ["/usr/sbin", "/usr/local/sbin", "/sbin"]

    /// The agent's stdin for one action: the device's parameters, then the action and the target.
    /// Values are one line each: a newline in a value is refused when the file is read.
    public func input(action: String, target: String?) -> String {
        var lines = params.map { "\($0.name)=\($0.value)" }
        lines.append("action=\(action)")
        if let target {
            lines.append("nodename=\(target)")
            // `plug` (current) and `port` (older agents); a device's own setting wins.
            if !params.contains(where: { $0.name == "plug" || $0.name == "port" }) { lines.append("plug=\(plug(for: target))") }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// The fence devices of a resource set and the order in which they are tried per node.
public struct FenceTopology: Sendable, Equatable, Codable {
    public var devices: [FenceDevice] = []
    /// Per node: levels tried in order; a level succeeds when every device of it did.
    public var levels: [String: [[String]]] = [:]

    public init() {}

    public func device(named n: String) -> FenceDevice? { devices.first { $0.name == n } }

    /// The levels for `node`: its `[[fence_level]]` entries, else each covering device alone, in file order.
    public func levels(for node: String) -> [[FenceDevice]] {
        if let ls = levels[node] { return ls.map { $0.compactMap(device(named:)) }.filter { !$0.isEmpty } }
        return devices.filter { $0.covers(node) }.map { [$0] }
    }

    public func covers(_ node: String) -> Bool { !levels(for: node).isEmpty }

    /// Parses `[[fence]]` and `[[fence_level]]` from the resources file's top table.
    static func parse(_ top: inout TableReader, nodeNames: Set<String>, notANode: (String) -> String) throws(ConfigError) -> FenceTopology {
        var topo = FenceTopology()
        for var t in try top.tableArray("fence") {
            let name = try t.requiredString("name")
            guard ClusterConfig.validName(name) else { throw t.error("name", "'\(name)' may contain only letters, digits, '-', '_' and '.'") }
            guard topo.device(named: name) == nil else { throw t.error("name", "duplicate fence device '\(name)'") }
            let agent = try t.requiredString("agent")
            let base = agent.split(separator: "/").last.map(String.init) ?? agent
            guard base.hasPrefix("fence_"), base.count > 6, base.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == ".") }),
                  !agent.contains(".."), agent.hasPrefix("/") || !agent.contains("/") else {
                throw t.error("agent", "'\(agent)' is not a fence agent: give a fence_* name (looked up in \(FenceDevice.searchPath.joined(separator: ", "))) or an absolute path")
            }
            var params: [AgentParam] = []
            for e in try t.stringMap("params") ?? [] {
                guard !e.key.isEmpty, e.key.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) else {
                    throw t.error("params", "parameter name '\(e.key)' may contain only letters, digits and '_'", line: e.line)
                }
                guard !["action", "option", "nodename"].contains(e.key) else {
                    throw t.error("params", "'\(e.key)' is set by the cluster for each operation", line: e.line)
                }
                guard !e.value.contains("\n"), !e.value.contains("\r") else {
                    throw t.error("params", "the value of '\(e.key)' spans lines: the agent reads one parameter per line", line: e.line)
                }
                params.append(AgentParam(name: e.key, value: e.value))
            }
            let hosts = try t.stringArray("hosts") ?? []
            for h in hosts where !nodeNames.contains(h) { throw t.error("hosts", notANode(h)) }
            var map: [String: String] = [:]
            for e in try t.stringMap("host_map") ?? [] {
                guard nodeNames.contains(e.key) else { throw t.error("host_map", notANode(e.key), line: e.line) }
                guard !e.value.isEmpty, !e.value.contains("\n") else { throw t.error("host_map", "the plug of '\(e.key)' must be one non-empty line", line: e.line) }
                map[e.key] = e.value
            }
            guard !hosts.isEmpty || !map.isEmpty else { throw t.error(nil, "fence device '\(name)' fences no node: set 'hosts' or 'host_map'") }
            let timeout = try t.int("timeout_ms", range: 1000...3_600_000) ?? 60_000
            let monitor = try t.int("monitor_interval_ms", range: 0...86_400_000) ?? 60_000
            if monitor > 0 && monitor < 5000 { throw t.error("monitor_interval_ms", "\(monitor) ms is too frequent for a fence device; use 0 (off) or at least 5000") }
            try t.finish()
            topo.devices.append(FenceDevice(name: name, agent: agent, params: params, hosts: hosts, hostMap: map,
                                            timeoutMs: UInt64(timeout), monitorIntervalMs: UInt64(monitor)))
        }
        var seenIndex: [String: Set<Int64>] = [:]
        var entries: [String: [(Int64, [String])]] = [:]
        for var t in try top.tableArray("fence_level") {
            let node = try t.requiredString("node")
            guard nodeNames.contains(node) else { throw t.error("node", notANode(node)) }
            guard let index = try t.int("index", range: 1...9) else { throw t.error("index", "missing: the level's place (1 is tried first)") }
            guard seenIndex[node, default: []].insert(index).inserted else { throw t.error("index", "node '\(node)' already has a level \(index)") }
            guard let devs = try t.stringArray("devices"), !devs.isEmpty else { throw t.error("devices", "a level needs at least one device") }
            for d in devs {
                guard let dev = topo.device(named: d) else { throw t.error("devices", "'\(d)' is not a fence device defined in this file") }
                guard dev.covers(node) else { throw t.error("devices", "fence device '\(d)' cannot fence '\(node)' (not in its hosts or host_map)") }
            }
            if Set(devs).count != devs.count { throw t.error("devices", "lists a device twice") }
            try t.finish()
            entries[node, default: []].append((index, devs))
        }
        for (node, ls) in entries { topo.levels[node] = ls.sorted { $0.0 < $1.0 }.map(\.1) }
        return topo
    }
}
