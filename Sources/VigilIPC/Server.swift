import CQB
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Glibc
import VigilCore
import VigilSystem

/// The libqb IPC server inside clusterd. libqb's descriptors are served by the daemon's own
/// poll loop through `qb_ipcs_poll_handlers`, so requests arrive on the same thread as
/// everything else.
public final class IPCServer {
    public struct Peer: Sendable {
        public let uid: uid_t
        public let gid: gid_t
        /// Root or a member of the admin group; nil while the group database is being asked
        /// (off the loop: a stalled NSS source such as LDAP must not stop the heartbeats).
        public var admin: Bool?
    }

    /// Answers of the group database per user, for `adminCacheMs` (a change of the admin
    /// group's members applies within that time).
    struct Credentials: Hashable { var uid: uid_t; var gid: gid_t }
    var adminCache: [Credentials: (admin: Bool, at: UInt64)] = [:]
    static let adminCacheMs: UInt64 = 60_000
    /// Lookups running, and the request of each connection waiting for one (at most one per
    /// connection; it holds a connection reference).
    var lookups: Set<Credentials> = []
    var deferred: [OpaquePointer: Data] = [:]
    /// Where lookups run; set by `start` (nil: looked up on the loop, for tools without a reactor).
    var offLoop: OffLoop?

    /// Connections refused at accept (too large a buffer, too many connections), for the log.
    var refused: UInt64 = 0

    /// Answer a request now (`.now`) or later through `respond(_:to:)` (`.later`).
    public enum Reply {
        case now(IPCResponse)
        case later
    }

    public typealias Poll = (add: (Int32, Int16, @escaping (Int16) -> Int32) -> Void, modify: (Int32, Int16) -> Void, remove: (Int32) -> Void, enqueue: (@escaping () -> Void) -> Void)

    public let name: String
    let adminGroup: String
    let poll: Poll
    var service: OpaquePointer?
    var peers: [OpaquePointer: Peer] = [:]
    public var handler: (IPCRequest, OpaquePointer, Peer) -> Reply = { _, _, _ in .now(IPCResponse(ok: false, message: "not ready")) }
    public var log: (String) -> Void = { _ in }

    public init(name: String, adminGroup: String, poll: Poll) {
        self.name = name
        self.adminGroup = adminGroup
        self.poll = poll
    }

    /// Group-database lookups go to a thread of their own, results back through `poll`.
    public func useOffLoop() throws {
        offLoop = try OffLoop(name: "ipc-groups") { [poll] fd, f in poll.add(fd, Int16(POLLIN)) { _ in f(); return 0 } }
    }

    public func start() throws {
        guard activeServer == nil else { throw IPCError("only one IPC server per process") }
        activeServer = self
        var handlers = qb_ipcs_service_handlers(
            connection_accept: ipcAccept, connection_created: nil, msg_process: ipcMessage,
            connection_closed: ipcClosed, connection_destroyed: nil)
        guard let s = qb_ipcs_create(name, 0, QB_IPC_NATIVE, &handlers) else {
            activeServer = nil
            throw IPCError("cannot create IPC service '\(name)': \(String(cString: strerror(errno)))")
        }
        service = s
        var ph = qb_ipcs_poll_handlers(job_add: ipcJobAdd, dispatch_add: ipcDispatchAdd, dispatch_mod: ipcDispatchMod, dispatch_del: ipcDispatchDel)
        qb_ipcs_poll_handlers_set(s, &ph)
        qb_ipcs_enforce_buffer_size(s, UInt32(IPCLimits.initialBuffer))
        let rc = qb_ipcs_run(s)
        guard rc == 0 else {
            activeServer = nil
            // (libqb released the service itself: destroying it again fails an assertion.)
            service = nil
            // The name is an abstract socket of this network namespace: anyone may bind it first.
            let holders = SocketHolders.find(abstractName: name)
            let who = holders.isEmpty ? "is another clusterd using the same ipc_name?"
                : "the name is held by " + holders.map { "pid \($0.pid) (\($0.command), uid \($0.uid))" }.joined(separator: ", ")
            throw IPCError("cannot run IPC service '\(name)': \(String(cString: strerror(-rc))); \(who)")
        }
    }

    public func stop() {
        if let s = service {
            qb_ipcs_destroy(s)
            service = nil
        }
        activeServer = nil
    }

    /// Whether a local user may change the cluster: root, or a member of the admin group.
    public func mayChange(_ peer: Peer) -> Bool { peer.admin ?? false }

    static func isAdmin(uid: uid_t, gid: gid_t, group: String) -> Bool {
        if uid == 0 { return true }
        guard let g = Host.groupID(named: group) else { return false }
        return gid == g || Host.groups(ofUID: uid, primary: gid).contains(g)
    }

    /// The cached answer for `uid`, or nil after starting a lookup (whose result `lookedUp`
    /// hands to every connection of that user and to the requests they sent meanwhile).
    func admin(uid: uid_t, gid: gid_t) -> Bool? {
        if uid == 0 { return true }
        let key = Credentials(uid: uid, gid: gid)
        let now = MonotonicClock.nowMs()
        if let c = adminCache[key], now - min(now, c.at) < Self.adminCacheMs { return c.admin }
        guard let offLoop else {
            let a = Self.isAdmin(uid: uid, gid: gid, group: adminGroup)
            adminCache[key] = (a, now)
            return a
        }
        if lookups.insert(key).inserted {
            let group = adminGroup
            offLoop.run({ Self.isAdmin(uid: uid, gid: gid, group: group) }, then: { [weak self] a in self?.lookedUp(key, admin: a) })
        }
        return nil
    }

    func lookedUp(_ key: Credentials, admin: Bool) {
        lookups.remove(key)
        adminCache[key] = (admin, MonotonicClock.nowMs())
        for c in Array(peers.keys) {
            // (A request handled below may close another connection: look each up afresh.)
            guard var p = peers[c], p.uid == key.uid, p.gid == key.gid, p.admin == nil else { continue }
            p.admin = admin
            peers[c] = p
            if let body = deferred.removeValue(forKey: c) { process(c, p, body) }
        }
    }

    /// Runs before libqb creates the connection's shared-memory rings: a client asking for
    /// larger buffers than any request needs, or one connection too many, is refused here.
    func accept(_ c: OpaquePointer, uid: uid_t, gid: gid_t) -> Int32 {
        let buffer = Int(qb_ipcs_connection_get_buffer_size(c))
        var reason: String?
        var code = EAGAIN
        if buffer > IPCLimits.maxBuffer {
            reason = "asked for \(buffer)-byte buffers (at most \(IPCLimits.maxBuffer))"
            code = EMSGSIZE
        } else if peers.count >= IPCLimits.maxConnections {
            reason = "\(peers.count) connections are open (at most \(IPCLimits.maxConnections))"
        } else if uid != 0, peers.values.filter({ $0.uid == uid }).count >= IPCLimits.maxConnectionsPerUser {
            reason = "uid \(uid) has \(IPCLimits.maxConnectionsPerUser) connections open already"
        }
        if let reason {
            refused += 1
            if refused & (refused - 1) == 0 { log("refused IPC connection from uid \(uid): \(reason) (total refused \(refused))") }
            return -code
        }
        peers[c] = Peer(uid: uid, gid: gid, admin: admin(uid: uid, gid: gid))
        // Let the client map the shared-memory buffers that libqb creates for it.
        qb_ipcs_connection_auth_set(c, uid, gid, 0o600)
        return 0
    }

    /// Connections that watch (`hactl status --watch`): each is sent every change as an event
    /// until it closes (a reference is held meanwhile). At most `maxWatchers`.
    var watchers: Set<OpaquePointer> = []
    public static let maxWatchers = 8
    public var hasWatchers: Bool { !watchers.isEmpty }

    /// Whether `c` may watch (false: too many watchers).
    public func watch(_ c: OpaquePointer) -> Bool {
        if watchers.contains(c) { return true }
        guard watchers.count < Self.maxWatchers else { return false }
        watchers.insert(c)
        qb_ipcs_connection_ref(c)
        return true
    }

    /// One event to every watcher; one that cannot take it (gone, its ring full) stops watching.
    public func notifyWatchers(_ response: IPCResponse) {
        guard !watchers.isEmpty else { return }
        let msg = Self.frame(response)
        for c in watchers {
            let rc = msg.withUnsafeBytes { qb_ipcs_event_send(c, $0.baseAddress, $0.count) }
            if rc < 0 {
                // Disconnected, not just forgotten: its hactl then stops and says so instead of
                // showing an old status (a suspended or piped watcher fills its ring).
                log("a status watcher was disconnected: \(String(cString: strerror(Int32(-rc))))")
                unwatch(c)
                qb_ipcs_disconnect(c)
            }
        }
    }

    func unwatch(_ c: OpaquePointer) {
        if watchers.remove(c) != nil { qb_ipcs_connection_unref(c) }
    }

    /// libqb's response header, then the JSON.
    static func frame(_ response: IPCResponse) -> [UInt8] {
        let body = (try? JSONEncoder().encode(response)).map { Array($0) } ?? Array(#"{"ok":false,"message":"encoding failed"}"#.utf8)
        var msg = [UInt8](repeating: 0, count: IPCLimits.responseHeader)
        let size = Int32(msg.count + body.count)
        msg.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: Int32(1), toByteOffset: 0, as: Int32.self)
            raw.storeBytes(of: size, toByteOffset: 8, as: Int32.self)
            raw.storeBytes(of: Int32(0), toByteOffset: 16, as: Int32.self)
        }
        return msg + body
    }

    /// Connections whose request is a change: its answer never becomes a `needBuffer` hint
    /// (the change is done; asking again would do it twice).
    var changing: Set<OpaquePointer> = []

    public func respond(_ response: IPCResponse, to connection: OpaquePointer) {
        let change = changing.remove(connection) != nil
        let msg = Self.frame(response)
        // Too large for this connection's rings: say how large they must be (the client asks
        // again; only questions, which change nothing, start with small rings).
        let rings = Int(qb_ipcs_connection_get_buffer_size(connection))
        if msg.count + IPCLimits.ringSlack > rings, rings < IPCLimits.maxBuffer, !change {
            var retry = IPCResponse(ok: false, message: "answer of \(msg.count) bytes exceeds the connection's \(rings)-byte buffers")
            retry.needBuffer = min(IPCLimits.maxBuffer, (msg.count + IPCLimits.ringSlack + 65_535) / 65_536 * 65_536)
            return respond(retry, to: connection)
        }
        _ = msg.withUnsafeBytes { qb_ipcs_response_send(connection, $0.baseAddress, $0.count) }
        qb_ipcs_connection_unref(connection)
    }

    func handle(connection c: OpaquePointer, data: UnsafeRawPointer?, size: Int) {
        qb_ipcs_connection_ref(c)
        guard let data, size >= IPCLimits.requestHeader else {
            respond(IPCResponse(ok: false, message: "malformed request"), to: c)
            return
        }
        guard let peer = peers[c] else {
            respond(IPCResponse(ok: false, message: "unknown connection"), to: c)
            return
        }
        // Size and credentials before anything is decoded: no request of a user outside root
        // and the admin group needs more than a few bytes.
        let limit = peer.admin.map { $0 ? IPCLimits.maxMessage : IPCLimits.maxUnprivilegedRequest } ?? IPCLimits.maxMessage
        guard size <= limit else { return refuseSize(c, peer, size, limit) }
        let bytes = Data(bytes: data + IPCLimits.requestHeader, count: size - IPCLimits.requestHeader)
        guard peer.admin != nil else {
            // Rights not known yet: a small read-only request is answered as to any user; a
            // change (or a large request) waits, with its connection reference, for the answer.
            if size <= IPCLimits.maxUnprivilegedRequest, let req = try? JSONDecoder().decode(IPCRequest.self, from: bytes), !req.isChange {
                return dispatch(c, peer, req)
            }
            // One waiting request per connection (hactl sends one): memory stays bounded by the
            // connection limits however long the group database stalls.
            guard deferred[c] == nil else {
                respond(IPCResponse(ok: false, message: "busy: still asking the group database about this user; retry"), to: c)
                return
            }
            deferred[c] = bytes
            return
        }
        process(c, peer, bytes)
    }

    func refuseSize(_ c: OpaquePointer, _ peer: Peer, _ size: Int, _ limit: Int) {
        log("refused a request of \(size) bytes from uid \(peer.uid) (at most \(limit))")
        respond(IPCResponse(ok: false, message: "request of \(size) bytes refused: at most \(limit) bytes from this user"), to: c)
    }

    /// A request whose sender's rights are known (the connection reference is held).
    func process(_ c: OpaquePointer, _ peer: Peer, _ bytes: Data) {
        let limit = mayChange(peer) ? IPCLimits.maxMessage : IPCLimits.maxUnprivilegedRequest
        guard bytes.count + IPCLimits.requestHeader <= limit else { return refuseSize(c, peer, bytes.count + IPCLimits.requestHeader, limit) }
        guard let req = try? JSONDecoder().decode(IPCRequest.self, from: bytes) else {
            respond(IPCResponse(ok: false, message: "malformed request (hactl and clusterd versions differ?)"), to: c)
            return
        }
        if req.isChange && !mayChange(peer) {
            log("refused \(req.command.rawValue) from uid \(peer.uid): not root and not in group '\(adminGroup)'")
            respond(IPCResponse(ok: false, message: "permission denied: '\(req.command.rawValue)' changes the cluster and needs root or membership of group '\(adminGroup)'"), to: c)
            return
        }
        dispatch(c, peer, req)
    }

    func dispatch(_ c: OpaquePointer, _ peer: Peer, _ req: IPCRequest) {
        if req.isChange { changing.insert(c) }
        switch handler(req, c, peer) {
        case .now(let r): respond(r, to: c)
        case .later: break
        }
    }
}

public struct IPCError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}

// libqb calls these C functions; they find the server through this single reference.
// Only the daemon's reactor thread ever touches it.
nonisolated(unsafe) var activeServer: IPCServer?

private func ipcAccept(_ c: OpaquePointer?, _ uid: uid_t, _ gid: gid_t) -> Int32 {
    guard let c, let s = activeServer else { return -EACCES }
    return s.accept(c, uid: uid, gid: gid)
}

private func ipcMessage(_ c: OpaquePointer?, _ data: UnsafeMutableRawPointer?, _ size: Int) -> Int32 {
    guard let c, let s = activeServer else { return 0 }
    s.handle(connection: c, data: data.map { UnsafeRawPointer($0) }, size: size)
    return 0
}

private func ipcClosed(_ c: OpaquePointer?) -> Int32 {
    guard let c, let s = activeServer else { return 0 }
    s.peers[c] = nil
    s.unwatch(c)
    s.changing.remove(c)
    // A request that waited for a group lookup holds a reference.
    if s.deferred.removeValue(forKey: c) != nil { qb_ipcs_connection_unref(c) }
    return 0
}

private func ipcDispatchAdd(_ p: qb_loop_priority, _ fd: Int32, _ events: Int32, _ data: UnsafeMutableRawPointer?, _ fn: qb_ipcs_dispatch_fn_t?) -> Int32 {
    guard let s = activeServer, let fn else { return -EINVAL }
    let box = UncheckedBox(data)
    s.poll.add(fd, Int16(truncatingIfNeeded: events)) { revents in fn(fd, Int32(revents), box.value) }
    return 0
}

private func ipcDispatchMod(_ p: qb_loop_priority, _ fd: Int32, _ events: Int32, _ data: UnsafeMutableRawPointer?, _ fn: qb_ipcs_dispatch_fn_t?) -> Int32 {
    // Re-registering replaces the events and the callback of the descriptor.
    ipcDispatchAdd(p, fd, events, data, fn)
}

private func ipcDispatchDel(_ fd: Int32) -> Int32 {
    activeServer?.poll.remove(fd)
    return 0
}

private func ipcJobAdd(_ p: qb_loop_priority, _ data: UnsafeMutableRawPointer?, _ fn: qb_loop_job_dispatch_fn?) -> Int32 {
    guard let s = activeServer, let fn else { return -EINVAL }
    let box = UncheckedBox(data)
    s.poll.enqueue { fn(box.value) }
    return 0
}

struct UncheckedBox: @unchecked Sendable {
    let value: UnsafeMutableRawPointer?
    init(_ v: UnsafeMutableRawPointer?) { value = v }
}
