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

    public init(ips: [FloatingIP] = []) { self.ips = ips }

    public var names: [String] { ips.map(\.name) }
    public func ip(named n: String) -> FloatingIP? { ips.first { $0.name == n } }

    public static let maxTextBytes = 60_000

    /// Parses and validates a resources file against the cluster's nodes.
    /// Nothing is partially accepted: either the whole set is valid or an error names the first problem.
    public static func parse(_ text: String, file: String, cluster: ClusterConfig) throws(ConfigError) -> ResourceSet {
        if text.utf8.count > maxTextBytes {
            throw ConfigError(file: file, message: "is \(text.utf8.count) bytes; at most \(maxTextBytes) bytes are supported")
        }
        let root = try parseTOML(text, file: file)
        var top = TableReader(root, path: "", file: file)
        var ips: [FloatingIP] = []
        let nodeNames = Set(cluster.nodes.map(\.name))
        for var t in try top.tableArray("ip") {
            let name = try t.requiredString("name")
            guard ClusterConfig.validName(name) else { throw t.error("name", "'\(name)' may contain only letters, digits, '-', '_' and '.'") }
            if ips.contains(where: { $0.name == name }) { throw t.error("name", "duplicate resource name '\(name)'") }
            let addrText = try t.requiredString("address")
            let prefix: IPPrefix
            switch IPPrefix.parse(addrText) {
            case .success(let p): prefix = p
            case .failure(let e): throw t.error("address", e.message)
            }
            if let other = ips.first(where: { $0.prefix.address == prefix.address }) {
                throw t.error("address", "\(prefix.address) is already used by '\(other.name)'")
            }
            if cluster.nodes.contains(where: { $0.addresses.contains(prefix.address) }) {
                throw t.error("address", "\(prefix.address) is a node's heartbeat address")
            }
            let iface = try t.string("interface")
            if let iface { try checkInterfaceName(iface, reader: t, key: "interface") }
            var perNode: [String: String] = [:]
            for entry in try t.stringMap("interfaces") ?? [] {
                guard nodeNames.contains(entry.key) else {
                    throw t.error("interfaces", "'\(entry.key)' is not a node of cluster '\(cluster.name)'", line: entry.line)
                }
                try checkInterfaceName(entry.value, reader: t, key: "interfaces.\(entry.key)")
                perNode[entry.key] = entry.value
            }
            if iface == nil {
                let missing = cluster.nodes.map(\.name).filter { perNode[$0] == nil }
                if !missing.isEmpty {
                    throw t.error(nil, "no interface for node(s) \(missing.joined(separator: ", ")): set 'interface' or add them to 'interfaces'")
                }
            }
            let preferred = try t.stringArray("preferred") ?? []
            for p in preferred where !nodeNames.contains(p) {
                throw t.error("preferred", "'\(p)' is not a node of cluster '\(cluster.name)'")
            }
            if Set(preferred).count != preferred.count { throw t.error("preferred", "lists a node twice") }
            let failback = try t.bool("failback") ?? false
            let count = try t.int("announce_count", range: 0...100) ?? 3
            let aInt = try t.int("announce_interval_ms", range: 1...60_000) ?? 100
            let refresh = try t.int("announce_refresh_ms", range: 0...86_400_000) ?? 0
            if refresh > 0 && refresh < 1000 { throw t.error("announce_refresh_ms", "\(refresh) ms is too frequent; use 0 (off) or at least 1000") }
            let mon = try t.int("monitor_interval_ms", range: 50...600_000) ?? 1000
            try t.finish()
            ips.append(FloatingIP(
                name: name, prefix: prefix, interface: iface, interfaces: perNode, preferred: preferred,
                failback: failback, announceCount: Int(count), announceIntervalMs: UInt64(aInt),
                refreshIntervalMs: UInt64(refresh), monitorIntervalMs: UInt64(mon)))
        }
        try top.finish()
        return ResourceSet(ips: ips)
    }

    private static func checkInterfaceName(_ s: String, reader: TableReader, key: String) throws(ConfigError) {
        // Linux IFNAMSIZ is 16 including the NUL; '/' and whitespace are never valid.
        if s.isEmpty || s.utf8.count > 15 || s.contains("/") || s.contains(where: { $0.isWhitespace }) || s == "." || s == ".." {
            throw ConfigError(file: reader.file, line: reader.table.line, key: reader.keyPath(key), message: "'\(s)' is not a valid interface name (1-15 characters, no '/' or spaces)")
        }
    }
}

/// A versioned resource configuration as replicated between nodes.
public struct VersionedResources: Sendable, Equatable {
    public var version: UInt64
    /// The operator's file as submitted (comments kept), so `hactl config show` prints it back.
    public var text: String
    public var digest: UInt64

    public init(version: UInt64, text: String) {
        self.version = version
        self.text = text
        self.digest = fnv1a64(Array(text.utf8))
    }

    public static let empty = VersionedResources(version: 0, text: "")

    /// Total order used when two nodes disagree: higher version wins, then the digest.
    public func isNewer(than other: VersionedResources) -> Bool {
        version != other.version ? version > other.version : digest > other.digest
    }
}

public func fnv1a64(_ bytes: [UInt8]) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in bytes {
        h ^= UInt64(b)
        h = h &* 0x0000_0100_0000_01B3
    }
    return h
}
