/// The cluster file: identical on every node. See README "Cluster file".
public struct ClusterConfig: Sendable, Equatable {
    public struct Node: Sendable, Equatable {
        public var name: String
        public var id: NodeID
        /// One address per link, in the order of `links`.
        public var addresses: [IPAddress]
        public var stateDir: String?
        public var ipcName: String?
        public var line: Int
        public var role: Role = .data
    }

    /// A data node runs resources; a witness only votes and supports leases (a tiebreaker for two
    /// data nodes): it is never coordinator and never runs, probes or is assigned anything.
    public enum Role: String, Sendable, Equatable, CaseIterable { case data, witness }

    public struct Link: Sendable, Equatable {
        public var name: String
        public var port: UInt16
    }

    public enum NoQuorumPolicy: String, Sendable, Codable {
        /// Release every resource (the safe default).
        case stop
        /// Keep what runs, start nothing. Unsafe for addresses unless the minority is fenced.
        case freeze
    }

    public var name: String
    public var keyFile: String
    public var stateDir: String
    public var ipcName: String
    public var adminGroup: String
    public var noQuorumPolicy: NoQuorumPolicy
    public var timing: Timing
    public var links: [Link]
    public var nodes: [Node]
    public var hooksDir: String?
    public var hookTimeoutMs: UInt64 = 10_000
    /// Watchdog self-fencing (`[watchdog]`), or nil.
    public var watchdog: Watchdog?
    /// `[metrics] listen = "HOST:PORT"`: clusterd serves Prometheus' text format there (nil: off).
    public var metricsListen: MetricsListen?
    public struct MetricsListen: Sendable, Equatable { public var address: IPAddress; public var port: UInt16 }
    /// `mlockall` and SCHED_RR for clusterd (the guardian always asks for both).
    public var realtime = true
    /// What a node does when it learns it was fenced while it still runs (Pacemaker's fence-reaction).
    public enum FenceReaction: String, Sendable, Equatable { case stop, panic }
    public var fenceReaction = FenceReaction.stop
    /// `encryption = "all"`: every message is encrypted; by default ("config") only the
    /// configuration messages (resource definitions carry agents' passwords).
    public var encryptAll = false

    /// Where membership comes from: Vigil's own heartbeats over `[[link]]`s, or a running
    /// local Corosync (its CPG group carries Vigil's messages; see README, "Corosync").
    public enum Membership: String, Sendable, Equatable { case builtin, corosync }
    public var membership = Membership.builtin
    /// Whether `[timing]` was given. Under Corosync, timing left out is derived at start from
    /// Corosync's token and consensus (a ring re-formation holds every message that long).
    public var timingGiven = false
    /// The one virtual link of the Corosync backend (Corosync's knet carries the real ones).
    public static let corosyncLink = Link(name: "corosync", port: 0)

    public var majority: Int { nodes.count / 2 + 1 }
    /// The nodes that may run resources (every node but the witnesses).
    public var dataNodes: [Node] { nodes.filter { $0.role == .data } }
    /// Two nodes under Corosync: votequorum with corosync-qdevice decides which of the two keeps
    /// quorum in a split, and fencing decides when what the other ran may move (README
    /// "Two nodes under Corosync"). No majority of two can withdraw a lost node's lease, so
    /// nothing a lost node ran moves before it is fenced or confirmed its release.
    public var isCorosyncPair: Bool { membership == .corosync && nodes.count == 2 }
    public var witnesses: Set<NodeID> { Set(nodes.filter { $0.role == .witness }.map(\.id)) }

    public func node(named name: String) -> Node? { nodes.first { $0.name == name } }
    public func node(id: NodeID) -> Node? { nodes.first { $0.id == id } }
    /// The node a wire id names (nil for 0 or an id not in the cluster file).
    public func node(rawId: UInt32) -> Node? { NodeID(rawValue: rawId).flatMap { node(id: $0) } }

    /// The state directory of a node, with `{node}` replaced by its name.
    public func stateDir(for node: Node) -> String {
        (node.stateDir ?? stateDir).replacingPlaceholder(node.name)
    }

    public func ipcName(for node: Node) -> String {
        (node.ipcName ?? ipcName).replacingPlaceholder(node.name)
    }
}

/// Heartbeat timing. All values in milliseconds.
///
/// Relation (checked at load):
/// - `interval < timeout`: a peer is declared lost after `timeout` without any packet on any link;
///   `timeout >= 3 * interval` is required so a single lost heartbeat never counts as a failure.
/// - `lease <= timeout`: every node's lease rests on its peers' echoes (see `SupportLedger`); a
///   peer withdraws its support only after it lost contact for `timeout` and its promise of
///   `lease` ran out, so a node that lost its majority releases before anyone starts its resources.
/// - `lease >= 2 * interval + guard`: in step, a peer's echo is at most two intervals old; a peer
///   later than that is asked to answer at once every `retry` ms (`Heartbeat.wantsReply`), so a lost
///   heartbeat costs a round trip, not an interval (the defaults leave about eight questions per
///   lease, and random loss of 30 % on the only link costs nothing in the simulator).
/// - `guard` covers the time to remove an address; the guardian acts half of it before the end.
public struct Timing: Sendable, Equatable, Codable {
    public var interval: UInt64
    public var timeout: UInt64
    public var lease: UInt64
    public var guardTime: UInt64

    public static let defaultInterval: UInt64 = 100
    public static let defaultTimeout: UInt64 = 350

    public init(interval: UInt64 = defaultInterval, timeout: UInt64 = defaultTimeout, lease: UInt64? = nil, guardTime: UInt64? = nil) {
        self.interval = interval
        self.timeout = timeout
        self.lease = lease ?? timeout
        // The margin a holder lets go before its lease ends (and the guardian half of it later):
        // time to act, not a share of the rhythm (12 ms at the default interval).
        self.guardTime = guardTime ?? max(10, interval / 8)
    }


    /// Returns a description of the first violated relation, or nil.
    public func violation() -> (key: String, message: String)? {
        if interval < 10 { return ("heartbeat_interval_ms", "must be at least 10 ms") }
        if timeout <= interval {
            return ("failure_timeout_ms", "\(timeout) ms must be larger than heartbeat_interval_ms (\(interval) ms)")
        }
        if timeout < 3 * interval {
            return ("failure_timeout_ms", "\(timeout) ms must be at least 3 x heartbeat_interval_ms (\(3 * interval) ms) so one lost heartbeat is not a failure")
        }
        if lease > timeout {
            return ("lease_ms", "\(lease) ms must not exceed failure_timeout_ms (\(timeout) ms)")
        }
        if lease < 2 * interval + guardTime {
            return ("lease_ms", "\(lease) ms must be at least 2 x heartbeat_interval_ms + guard (\(2 * interval + guardTime) ms)")
        }
        return nil
    }

    /// Spacing of the questions to a late peer (see `Heartbeat.wantsReply`): several fit between
    /// the moment a peer is late and the end of a lease it supports.
    public var retry: UInt64 { max(5, interval / 8) }

    /// Worst case from the last packet of a dead node to its resources starting elsewhere.
    /// (Final withdrawals after `lease·(1+ρ)`, plus a report in flight and the guard.)
    public var worstCaseTakeover: UInt64 { max(timeout, lease + lease / 1000 + 2) + guardTime }
}

extension ClusterConfig {
    public static let allowedNameChars = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")

    static func validName(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 64 && s.allSatisfy { allowedNameChars.contains($0) }
    }

    /// Parses and validates the cluster file text. Pure: the key file is checked separately.
    public static func parse(_ text: String, file: String) throws(ConfigError) -> ClusterConfig {
        let root = try parseTOML(text, file: file)
        var top = TableReader(root, path: "", file: file)
        guard var cluster = try top.subtable("cluster") else {
            throw ConfigError(file: file, message: "missing [cluster] table")
        }
        let name = try cluster.requiredString("name")
        guard validName(name) else { throw cluster.error("name", "'\(name)' may contain only letters, digits, '-', '_' and '.'") }
        let keyFile = try cluster.requiredString("key_file")
        guard keyFile.hasPrefix("/") else { throw cluster.error("key_file", "'\(keyFile)' must be an absolute path") }
        let stateDir = try cluster.string("state_dir") ?? "/var/lib/vigil"
        guard stateDir.hasPrefix("/") else { throw cluster.error("state_dir", "'\(stateDir)' must be an absolute path") }
        let ipcName = try cluster.string("ipc_name") ?? "vigil"
        guard validName(ipcName.replacingPlaceholder("x")) else { throw cluster.error("ipc_name", "'\(ipcName)' may contain only letters, digits, '-', '_', '.' and {node}") }
        let adminGroup = try cluster.string("admin_group") ?? "haclient"
        let policyText = try cluster.string("no_quorum_policy") ?? "stop"
        guard let policy = NoQuorumPolicy(rawValue: policyText) else {
            throw cluster.error("no_quorum_policy", "'\(policyText)' is not one of: stop, freeze")
        }
        let hooksDir = try cluster.string("hooks_dir")
        if let h = hooksDir, !h.hasPrefix("/") { throw cluster.error("hooks_dir", "'\(h)' must be an absolute path") }
        let hookTimeout = try cluster.int("hook_timeout_ms", range: 100...3_600_000).map(UInt64.init) ?? 10_000
        let realtime = try cluster.bool("realtime") ?? true
        let reactionText = try cluster.string("fence_reaction") ?? "stop"
        guard let reaction = FenceReaction(rawValue: reactionText) else {
            throw cluster.error("fence_reaction", "'\(reactionText)' is not one of: stop, panic")
        }
        let encryption = try cluster.string("encryption") ?? "config"
        guard ["config", "all"].contains(encryption) else {
            throw cluster.error("encryption", "'\(encryption)' is not one of: config, all")
        }
        let membershipText = try cluster.string("membership") ?? "builtin"
        guard let membership = Membership(rawValue: membershipText) else {
            throw cluster.error("membership", "'\(membershipText)' is not one of: builtin, corosync")
        }
        if membership == .corosync && name.utf8.count > 100 {
            throw cluster.error("name", "at most 100 characters with membership = \"corosync\" (it names the CPG group)")
        }
        try cluster.finish()

        var timing = Timing()
        var timingGiven = false
        if var t = try top.subtable("timing") {
            timingGiven = true
            let interval = try t.int("heartbeat_interval_ms", range: 1...60_000).map(UInt64.init) ?? Timing.defaultInterval
            let timeout = try t.int("failure_timeout_ms", range: 1...600_000).map(UInt64.init) ?? Timing.defaultTimeout
            let lease = try t.int("lease_ms", range: 1...600_000).map(UInt64.init)
            try t.finish()
            timing = Timing(interval: interval, timeout: timeout, lease: lease)
            if let v = timing.violation() {
                let explicitKey = t.has(v.key) ? v.key : (v.key == "lease_ms" ? "failure_timeout_ms" : v.key)
                throw t.error(explicitKey, v.message)
            }
        }

        var watchdog: Watchdog?
        if var w = try top.subtable("watchdog") {
            let device = try w.string("device") ?? "/dev/watchdog"
            guard device.hasPrefix("/"), !device.contains("..") else { throw w.error("device", "'\(device)' must be an absolute path ({node} stands for the node's name)") }
            let t = try w.int("timeout_s", range: 1...255) ?? 10
            try w.finish()
            watchdog = Watchdog(device: device, timeoutS: Int(t))
        }

        var metricsListen: MetricsListen?
        if var m = try top.subtable("metrics") {
            let l = try m.requiredString("listen")
            // HOST:PORT, an IPv6 host in brackets.
            guard let colon = l.lastIndex(of: ":"), let port = UInt16(l[l.index(after: colon)...]), port > 0,
                  let host = IPAddress(String(l[..<colon]).trimmingBrackets) else {
                throw m.error("listen", "'\(l)' is not ADDRESS:PORT (for example \"127.0.0.1:9464\" or \"[::1]:9464\")")
            }
            try m.finish()
            metricsListen = MetricsListen(address: host, port: port)
        }

        var links: [Link] = []
        let linkTables = try top.tableArray("link")
        if membership == .corosync {
            if let first = linkTables.first {
                throw ConfigError(file: file, line: first.table.line, key: "link",
                                  message: "with membership = \"corosync\" Vigil sends nothing of its own: its messages go through Corosync, whose links are configured in corosync.conf (totem.interface); remove the [[link]] tables")
            }
            links = [Self.corosyncLink]
        } else if linkTables.isEmpty { throw ConfigError(file: file, message: "at least one [[link]] is required") }
        if linkTables.count > 4 { throw ConfigError(file: file, line: linkTables[4].table.line, key: "link", message: "at most 4 links are supported") }
        for var lt in linkTables {
            let lname = try lt.string("name") ?? "link\(links.count)"
            guard let port = try lt.int("port", range: 1...65535) else { throw lt.error(nil, "missing required key 'port'") }
            try lt.finish()
            if links.contains(where: { $0.name == lname }) { throw lt.error("name", "duplicate link name '\(lname)'") }
            links.append(Link(name: lname, port: UInt16(port)))
        }

        var nodes: [Node] = []
        var seenAddr: [IPAddress: String] = [:]
        for var nt in try top.tableArray("node") {
            let nname = try nt.requiredString("name")
            guard validName(nname), nname.count <= 32 else {
                throw nt.error("name", "'\(nname)' may contain only letters, digits, '-', '_' and '.' (at most 32)")
            }
            guard let rawId = try nt.int("id", range: 1...Int64(UInt32.max)) else { throw nt.error(nil, "missing required key 'id'") }
            guard let id = NodeID(rawValue: UInt32(rawId)) else { throw nt.error("id", "must be at least 1") }
            let addrTexts: [String]
            if membership == .corosync {
                if nt.has("addresses") {
                    throw nt.error("addresses", "with membership = \"corosync\" nodes have no Vigil addresses (Corosync's nodelist has them); the node's id must be its Corosync nodeid")
                }
                addrTexts = []
            } else if let a = try nt.stringArray("addresses") {
                addrTexts = a
            } else {
                throw nt.error(nil, "missing required key 'addresses' (one address per [[link]])")
            }
            guard membership == .corosync || addrTexts.count == links.count else {
                throw nt.error("addresses", "has \(addrTexts.count) address(es) but \(links.count) [[link]] entries are defined: give one per link, in link order")
            }
            var addrs: [IPAddress] = []
            for text in addrTexts {
                guard let a = IPAddress(text) else { throw nt.error("addresses", "'\(text)' is not a valid IPv4 or IPv6 address") }
                if a.isUnspecified || a.isMulticast { throw nt.error("addresses", "'\(text)' cannot be a node address") }
                if let other = seenAddr[a] { throw nt.error("addresses", "address \(a) is also used by node '\(other)'") }
                seenAddr[a] = nname
                addrs.append(a)
            }
            let sd = try nt.string("state_dir")
            if let sd, !sd.hasPrefix("/") { throw nt.error("state_dir", "'\(sd)' must be an absolute path") }
            let ipc = try nt.string("ipc_name")
            let roleText = try nt.string("role") ?? "data"
            guard let role = Role(rawValue: roleText) else { throw nt.error("role", "'\(roleText)' is not a role: use \"data\" (the default) or \"witness\"") }
            if role == .witness && membership == .corosync {
                throw nt.error("role", "a Vigil witness is not used with membership = \"corosync\": Corosync's votequorum counts the votes (use corosync-qdevice for a tiebreak)")
            }
            try nt.finish()
            if let other = nodes.first(where: { $0.name == nname }) {
                throw nt.error("name", "duplicate node name '\(nname)' (first at line \(other.line))")
            }
            if let other = nodes.first(where: { $0.id == id }) {
                throw nt.error("id", "duplicate node id \(id) (also used by node '\(other.name)')")
            }
            nodes.append(Node(name: nname, id: id, addresses: addrs, stateDir: sd, ipcName: ipc, line: nt.table.line, role: role))
        }
        try top.finish()
        if nodes.isEmpty { throw ConfigError(file: file, message: "at least one [[node]] is required") }
        // Under Corosync two nodes are a pair arbitrated by votequorum and corosync-qdevice, made
        // safe by fencing (see `ClusterConfig.isCorosyncPair`); clusterd checks the quorum device.
        if nodes.count == 2 && membership == .builtin {
            throw ConfigError(
                file: file, key: "node",
                message: "a two-node cluster cannot form a safe majority on its own: add a third [[node]] with role = \"witness\" (a vote without resources, on any third machine or VM), or a third data node")
        }
        if !nodes.contains(where: { $0.role == .data }) {
            throw ConfigError(file: file, key: "node", message: "every node is a witness: at least one needs role = \"data\" to run resources")
        }
        if nodes.count > 32 { throw ConfigError(file: file, key: "node", message: "at most 32 nodes are supported") }
        // Per link, all nodes must use the same address family.
        for (i, link) in links.enumerated() where membership == .builtin {
            let fams = Set(nodes.map { $0.addresses[i].family })
            if fams.count > 1 {
                throw ConfigError(file: file, key: "node.addresses", message: "link '\(link.name)' mixes IPv4 and IPv6 node addresses")
            }
        }
        var c = ClusterConfig(
            name: name, keyFile: keyFile, stateDir: stateDir, ipcName: ipcName, adminGroup: adminGroup,
            noQuorumPolicy: policy, timing: timing, links: links, nodes: nodes, hooksDir: hooksDir)
        c.hookTimeoutMs = hookTimeout
        c.realtime = realtime
        c.watchdog = watchdog
        c.metricsListen = metricsListen
        // A panic is the watchdog's reset: the guardian stops petting (no other way to reboot is
        // used, and none that a test could trigger on the machine it runs on).
        if reaction == .panic && watchdog == nil {
            throw ConfigError(file: file, key: "cluster.fence_reaction", message: "\"panic\" resets the node through its watchdog: add a [watchdog] table, or use \"stop\"")
        }
        c.fenceReaction = reaction
        c.encryptAll = encryption == "all"
        c.membership = membership
        c.timingGiven = timingGiven
        return c
    }
}

extension String {
    func replacingPlaceholder(_ node: String) -> String {
        var out = ""
        var rest = Substring(self)
        while let r = rest.range(of: "{node}") {
            out += rest[..<r.lowerBound]
            out += node
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}

extension Substring {
    func range(of needle: String) -> Range<Substring.Index>? {
        guard !needle.isEmpty else { return nil }
        var i = startIndex
        while i < endIndex {
            if self[i...].hasPrefix(needle) {
                return i..<(index(i, offsetBy: needle.count))
            }
            i = index(after: i)
        }
        return nil
    }
}

extension String {
    /// Without one pair of enclosing brackets (an IPv6 host in HOST:PORT).
    var trimmingBrackets: String { hasPrefix("[") && hasSuffix("]") ? String(dropFirst().dropLast()) : self }
}
