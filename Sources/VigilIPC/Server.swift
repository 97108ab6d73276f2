import CQB
import Foundation
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
    }

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
        qb_ipcs_enforce_buffer_size(s, UInt32(IPCLimits.maxMessage))
        let rc = qb_ipcs_run(s)
        guard rc == 0 else {
            activeServer = nil
            throw IPCError("cannot run IPC service '\(name)': \(String(cString: strerror(-rc))) (is another clusterd using the same ipc_name?)")
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
    public func mayChange(_ peer: Peer) -> Bool {
        if peer.uid == 0 { return true }
        guard let g = Host.groupID(named: adminGroup) else { return false }
        return peer.gid == g || Host.groups(ofUID: peer.uid, primary: peer.gid).contains(g)
    }

    public func respond(_ response: IPCResponse, to connection: OpaquePointer) {
        let body = (try? JSONEncoder().encode(response)).map { Array($0) } ?? Array(#"{"ok":false,"message":"encoding failed"}"#.utf8)
        var msg = [UInt8](repeating: 0, count: IPCLimits.responseHeader)
        let size = Int32(msg.count + body.count)
        msg.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: Int32(1), toByteOffset: 0, as: Int32.self)
            raw.storeBytes(of: size, toByteOffset: 8, as: Int32.self)
            raw.storeBytes(of: Int32(0), toByteOffset: 16, as: Int32.self)
        }
        msg += body
        _ = msg.withUnsafeBytes { qb_ipcs_response_send(connection, $0.baseAddress, $0.count) }
        qb_ipcs_connection_unref(connection)
    }

    func handle(connection c: OpaquePointer, data: UnsafeRawPointer?, size: Int) {
        qb_ipcs_connection_ref(c)
        guard let data, size >= IPCLimits.requestHeader else {
            respond(IPCResponse(ok: false, message: "malformed request"), to: c)
            return
        }
        let bytes = Data(bytes: data + IPCLimits.requestHeader, count: size - IPCLimits.requestHeader)
        guard let req = try? JSONDecoder().decode(IPCRequest.self, from: bytes) else {
            respond(IPCResponse(ok: false, message: "malformed request (hactl and clusterd versions differ?)"), to: c)
            return
        }
        guard let peer = peers[c] else {
            respond(IPCResponse(ok: false, message: "unknown connection"), to: c)
            return
        }
        if req.isChange && !mayChange(peer) {
            log("refused \(req.command.rawValue) from uid \(peer.uid): not root and not in group '\(adminGroup)'")
            respond(IPCResponse(ok: false, message: "permission denied: '\(req.command.rawValue)' changes the cluster and needs root or membership of group '\(adminGroup)'"), to: c)
            return
        }
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
    s.peers[c] = IPCServer.Peer(uid: uid, gid: gid)
    // Let the client map the shared-memory buffers that libqb creates for it.
    qb_ipcs_connection_auth_set(c, uid, gid, 0o600)
    return 0
}

private func ipcMessage(_ c: OpaquePointer?, _ data: UnsafeMutableRawPointer?, _ size: Int) -> Int32 {
    guard let c, let s = activeServer else { return 0 }
    s.handle(connection: c, data: data.map { UnsafeRawPointer($0) }, size: size)
    return 0
}

private func ipcClosed(_ c: OpaquePointer?) -> Int32 {
    if let c { activeServer?.peers[c] = nil }
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
