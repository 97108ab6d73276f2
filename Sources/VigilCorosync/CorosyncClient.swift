import CVigilCorosync
import Glibc

/// A connection to the local Corosync (3.x): the CPG process group of Vigil's daemons,
/// votequorum's quorum, cmap's node list and settings, cfg's knet link status.
///
/// A thin shell: its two descriptors are served by the caller's loop (`cpgFD`, `quorumFD`,
/// then `dispatchCPG` / `dispatchQuorum`, which dispatch everything ready and return what
/// Corosync reported, in order). Sends that Corosync cannot take now (`CS_ERR_TRY_AGAIN`, its
/// flow control) are queued and retried by `flush`, in order.
public final class CorosyncClient {
    public struct Member: Equatable, Sendable {
        public var node: UInt32
        public var pid: UInt32
    }

    public enum Event: Equatable, Sendable {
        /// The group's members after a change, who joined and who left (with Corosync's reason:
        /// 1 join, 2 leave, 3 node down, 4 node up, 5 process down).
        case members([Member], joined: [UInt32], left: [(node: UInt32, reason: UInt32)])
        /// A message some member sent to the group (agreed order: every member sees the same).
        case message(from: UInt32, pid: UInt32, bytes: [UInt8])
        /// votequorum: quorate or not, and the nodes counted as members.
        case quorum(quorate: Bool, members: [UInt32])
        /// A new totem ring (membership of Corosync itself, before the group's view).
        case ring(seq: UInt64, members: [UInt32])

        public static func == (a: Event, b: Event) -> Bool {
            switch (a, b) {
            case let (.members(m1, j1, l1), .members(m2, j2, l2)):
                return m1 == m2 && j1 == j2 && l1.map(\.node) == l2.map(\.node) && l1.map(\.reason) == l2.map(\.reason)
            case let (.message(f1, p1, b1), .message(f2, p2, b2)): return f1 == f2 && p1 == p2 && b1 == b2
            case let (.quorum(q1, m1), .quorum(q2, m2)): return q1 == q2 && m1 == m2
            case let (.ring(s1, m1), .ring(s2, m2)): return s1 == s2 && m1 == m2
            default: return false
            }
        }
    }

    /// A Corosync error, with Corosync's own words and what it usually means here.
    public struct CSError: Error, CustomStringConvertible, Sendable {
        public let code: Int32
        public let what: String
        public var description: String {
            let text = String(cString: vigil_cs_strerror(code))
            switch code {
            case 2: return "\(what): \(text) — is corosync running on this node (and in this network and mount namespace)?"
            case 11: return "\(what): \(text) — Corosync accepts only root clients unless its configuration has a uidgid entry"
            default: return "\(what): \(text) (cs_error \(code))"
            }
        }
    }

    public static let ok: Int32 = 1
    /// CS_ERR_NOT_EXIST.
    public static let notExist: Int32 = 12
    public static let tryAgain: Int32 = 6
    /// The largest message this shell sends or delivers whole.
    public static let maxMessage = 65536

    private var cs: OpaquePointer?
    public let group: String
    public let cpgFD: Int32
    public let quorumFD: Int32
    private var pending: [[UInt8]] = []
    private var buffer = [UInt8](repeating: 0, count: CorosyncClient.maxMessage)

    /// Connects and joins `group` (at most 127 bytes).
    public init(group: String) throws {
        self.group = group
        var handle: OpaquePointer?
        let e = vigil_cs_open(group, &handle)
        guard e == Self.ok, let handle else { throw CSError(code: e, what: "connect to corosync (group \(group))") }
        cs = handle
        var a: Int32 = -1
        var b: Int32 = -1
        let e1 = vigil_cs_cpg_fd(handle, &a)
        let e2 = vigil_cs_quorum_fd(handle, &b)
        guard e1 == Self.ok, e2 == Self.ok else {
            vigil_cs_close(handle)
            cs = nil
            throw CSError(code: e1 == Self.ok ? e2 : e1, what: "corosync descriptors")
        }
        cpgFD = a
        quorumFD = b
    }

    deinit { close() }

    /// Leaves the group and disconnects (also when Corosync went away).
    public func close() {
        if let cs { vigil_cs_close(cs) }
        cs = nil
    }

    private func handle() throws -> OpaquePointer {
        guard let cs else { throw CSError(code: 9, what: "corosync connection closed") }
        return cs
    }

    /// Dispatches what the CPG descriptor has. An error (Corosync stopped) ends the connection:
    /// `close` it and connect again later.
    public func dispatchCPG() throws -> [Event] { try dispatch("cpg dispatch", vigil_cs_dispatch_cpg) }

    public func dispatchQuorum() throws -> [Event] { try dispatch("votequorum dispatch", vigil_cs_dispatch_quorum) }

    private func dispatch(_ what: String, _ f: (OpaquePointer) -> Int32) throws -> [Event] {
        let h = try handle()
        let e = f(h)
        let events = take(h)
        guard e == Self.ok || e == Self.tryAgain else { throw CSError(code: e, what: what) }
        return events
    }

    private func take(_ h: OpaquePointer) -> [Event] {
        var out: [Event] = []
        var ev = vigil_cs_event()
        while buffer.withUnsafeMutableBufferPointer({ vigil_cs_next_event(h, &ev, $0.baseAddress, $0.count) }) == 1 {
            /// The first `n` entries of one of the event's fixed-size C arrays (a tuple in Swift).
            func list<T>(_ n: UInt32, _ t: T) -> [UInt32] {
                withUnsafeBytes(of: t) { raw in
                    (0..<min(Int(n), raw.count / 4)).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self) }
                }
            }
            switch ev.kind {
            case Int32(VIGIL_CS_EV_MEMBERS):
                let nodes = list(ev.count, ev.nodes)
                let pids = list(ev.count, ev.pids)
                let left = zip(list(ev.left_count, ev.left_nodes), list(ev.left_count, ev.left_reasons)).map { (node: $0, reason: $1) }
                out.append(.members(zip(nodes, pids).map { Member(node: $0, pid: $1) }, joined: list(ev.joined_count, ev.joined_nodes), left: left))
            case Int32(VIGIL_CS_EV_MESSAGE):
                // Longer than any message this shell sends: not Vigil's; dropped.
                guard ev.length <= buffer.count else { continue }
                out.append(.message(from: ev.from_node, pid: ev.from_pid, bytes: Array(buffer[0..<ev.length])))
            case Int32(VIGIL_CS_EV_QUORUM):
                out.append(.quorum(quorate: ev.quorate != 0, members: list(ev.count, ev.nodes)))
            case Int32(VIGIL_CS_EV_TOTEM):
                out.append(.ring(seq: ev.ring, members: list(ev.count, ev.nodes)))
            default:
                continue
            }
        }
        return out
    }

    /// Sends `bytes` to the group, behind anything still queued; true if nothing is left
    /// queued. Corosync's flow control (`CS_ERR_TRY_AGAIN`) queues; other errors throw.
    @discardableResult
    public func send(_ bytes: [UInt8]) throws -> Bool {
        guard bytes.count <= Self.maxMessage else { throw CSError(code: 26, what: "message of \(bytes.count) bytes") }
        // Bounded: while Corosync holds everything back (a ring re-formation) the queue fills
        // with heartbeats that are stale once it moves again; the oldest go first.
        if pending.count >= Self.maxQueued {
            pending.removeFirst(pending.count - Self.maxQueued + 1)
            droppedSends += 1
        }
        pending.append(bytes)
        return try flush()
    }

    /// Queued sends kept at most (see `send`), and how many were dropped for it.
    public static let maxQueued = 512
    public private(set) var droppedSends: UInt64 = 0

    /// Retries queued sends in order; true once none is left.
    @discardableResult
    public func flush() throws -> Bool {
        let h = try handle()
        while let first = pending.first {
            let e = first.withUnsafeBytes { vigil_cs_mcast(h, $0.baseAddress, $0.count) }
            if e == Self.tryAgain { return false }
            guard e == Self.ok else { throw CSError(code: e, what: "cpg send") }
            pending.removeFirst()
        }
        return true
    }

    public var queuedSends: Int { pending.count }

    public func localNode() throws -> UInt32 {
        var n: UInt32 = 0
        let e = vigil_cs_local_nodeid(try handle(), &n)
        guard e == Self.ok else { throw CSError(code: e, what: "local node id") }
        return n
    }

    public struct QuorumInfo: Equatable, Sendable {
        public var quorate: Bool
        public var expectedVotes: UInt32
        public var totalVotes: UInt32
        public var quorum: UInt32
    }

    public func quorumInfo() throws -> QuorumInfo {
        var q: UInt32 = 0, ex: UInt32 = 0, tot: UInt32 = 0, need: UInt32 = 0
        let e = vigil_cs_quorum_info(try handle(), &q, &ex, &tot, &need)
        guard e == Self.ok else { throw CSError(code: e, what: "votequorum info") }
        return QuorumInfo(quorate: q != 0, expectedVotes: ex, totalVotes: tot, quorum: need)
    }

    private func string(_ what: String, _ f: (OpaquePointer, UnsafeMutablePointer<CChar>, Int) -> Int32) throws -> String {
        var buf = [CChar](repeating: 0, count: 256)
        let h = try handle()
        let e = buf.withUnsafeMutableBufferPointer { b in b.baseAddress.map { f(h, $0, b.count) } ?? 7 }
        guard e == Self.ok else { throw CSError(code: e, what: what) }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The node's name in Corosync's node list (its `name`, else its `ring0_addr`).
    public func nodeName(_ id: UInt32) throws -> String {
        try string("name of node \(id)") { vigil_cs_node_name($0, id, $1, $2) }
    }

    public func clusterName() throws -> String {
        try string("cluster name") { vigil_cs_cluster_name($0, $1, $2) }
    }

    /// An unsigned cmap value, e.g. `runtime.config.totem.token`.
    public func cmapValue(_ key: String) throws -> UInt32 {
        var v: UInt32 = 0
        let e = vigil_cs_cmap_u32(try handle(), key, &v)
        guard e == Self.ok else { throw CSError(code: e, what: "cmap \(key)") }
        return v
    }

    /// A cmap integer of any width, or nil when the key does not exist.
    public func cmapInteger(_ key: String) throws -> Int64? {
        var v: Int64 = 0
        let e = vigil_cs_cmap_int(try handle(), key, &v)
        if e == Self.notExist { return nil }
        guard e == Self.ok else { throw CSError(code: e, what: "cmap \(key)") }
        return v
    }

    /// A cmap string, or nil when the key does not exist.
    public func cmapString(_ key: String) throws -> String? {
        do {
            return try string("cmap \(key)") { vigil_cs_cmap_string($0, key, $1, $2) }
        } catch let e as CSError where e.code == Self.notExist {
            return nil
        }
    }

    public struct NodeLinks: Equatable, Sendable {
        public var reachable: Bool
        /// Per configured knet link: connected (local view).
        public var connected: [Bool]
    }

    /// knet's view of the links towards node `id` (cfg's node status).
    public func links(to id: UInt32) throws -> NodeLinks {
        var reachable: UInt8 = 0
        var enabled = [UInt8](repeating: 0, count: 8)
        var connected = [UInt8](repeating: 0, count: 8)
        var n: Int32 = 0
        let e = vigil_cs_node_links(try handle(), id, &reachable, &enabled, &connected, 8, &n)
        guard e == Self.ok else { throw CSError(code: e, what: "link status of node \(id)") }
        return NodeLinks(reachable: reachable != 0, connected: (0..<Int(max(0, n))).filter { enabled[$0] != 0 }.map { connected[$0] != 0 })
    }
}
