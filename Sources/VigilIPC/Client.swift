import CQB
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Glibc

/// hactl's side: connect to clusterd's libqb service, check who runs it, send one request.
public enum IPCClient {
    public static func call(service: String, _ request: IPCRequest, timeoutMs: Int32 = 15_000) throws -> IPCResponse {
        let body = Array(try JSONEncoder().encode(request))
        // A change gets rings that fit any answer at once (it must not run twice); a question
        // starts small and is asked once more if its answer needs larger rings.
        // (A history's answer is large, and asking twice would fetch every journal twice.)
        let first = ringSize(request: body.count, isChange: request.isChange || request.command == .history)
        let r = try exchange(service: service, buffer: first, body: body, timeoutMs: timeoutMs)
        guard !request.isChange, let need = r.needBuffer, need > first, need <= IPCLimits.maxBuffer else { return r }
        return try exchange(service: service, buffer: need, body: body, timeoutMs: timeoutMs)
    }

    /// `hactl status --watch`: the first answer, then every event clusterd pushes, each handed to
    /// `each` (which returns false to stop). Throws when clusterd goes away.
    public static func watch(service: String, _ request: IPCRequest, each: (IPCResponse) -> Bool) throws {
        let c = try connect(service: service, buffer: IPCLimits.maxBuffer)
        defer { qb_ipcc_disconnect(c) }
        guard each(try exchange(c, body: Array(try JSONEncoder().encode(request)), timeoutMs: 15_000)) else { return }
        var fd: Int32 = -1
        guard qb_ipcc_fd_get(c, &fd) == 0 else { throw IPCError("clusterd's event channel cannot be polled") }
        while true {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let n = poll(&p, 1, -1)
            if n < 0 && errno == EINTR { continue }
            var got = 0
            let buf = [UInt8](unsafeUninitializedCapacity: IPCLimits.maxMessage) { raw, count in
                got = qb_ipcc_event_recv(c, raw.baseAddress, raw.count, 0)
                count = max(0, min(got, raw.count))
            }
            if got == -Int(EAGAIN) { continue }
            guard got >= IPCLimits.responseHeader else { throw IPCError("clusterd stopped sending (\(got < 0 ? String(cString: strerror(Int32(-got))) : "short event"))") }
            guard let r = try? JSONDecoder().decode(IPCResponse.self, from: Data(buf[IPCLimits.responseHeader...])) else { throw IPCError("unreadable event from clusterd") }
            guard each(r) else { return }
        }
    }

    /// The rings a request starts with: the initial size for a question, the largest for a
    /// change, and never smaller than the request itself needs.
    public static func ringSize(request bytes: Int, isChange: Bool) -> Int {
        let wanted = isChange ? IPCLimits.maxBuffer : IPCLimits.initialBuffer
        let fits = (IPCLimits.requestHeader + bytes + IPCLimits.ringSlack + 65_535) / 65_536 * 65_536
        return min(IPCLimits.maxBuffer, max(wanted, fits))
    }

    static func exchange(service: String, buffer: Int, body: [UInt8], timeoutMs: Int32) throws -> IPCResponse {
        let c = try connect(service: service, buffer: buffer)
        defer { qb_ipcc_disconnect(c) }
        return try exchange(c, body: body, timeoutMs: timeoutMs)
    }

    /// Connects and checks who serves the name (`buffer`: the size of libqb's rings).
    public static func connect(service: String, buffer: Int = IPCLimits.maxMessage) throws -> OpaquePointer {
        guard let c = qb_ipcc_connect(service, buffer) else {
            let e = errno
            throw IPCError("cannot connect to clusterd (IPC service '\(service)'): \(String(cString: strerror(e))). Is clusterd running on this node (and in this network namespace)? Use --ipc NAME if its ipc_name differs.")
        }
        var pid: pid_t = 0
        var uid: uid_t = 0
        var gid: gid_t = 0
        let auth = qb_ipcc_auth_get(c, &pid, &uid, &gid)
        if let why = serverProblem(auth: auth, pid: pid, uid: uid, ourUid: geteuid()) {
            qb_ipcc_disconnect(c)
            throw IPCError("refusing IPC service '\(service)': \(why)")
        }
        return c
    }

    /// Why the server must not be trusted, nil if it may. Only a server run by root or by
    /// ourselves is: anyone else could impersonate clusterd (and receive the files hactl
    /// sends). A server whose credentials cannot be read (`auth`, the result of
    /// `qb_ipcc_auth_get`, negative) is not trusted either: it fails closed.
    public static func serverProblem(auth: Int32, pid: pid_t, uid: uid_t, ourUid: uid_t) -> String? {
        guard auth == 0 else { return "its credentials cannot be read (\(String(cString: strerror(auth < 0 ? -auth : auth))))" }
        guard uid == 0 || uid == ourUid else { return "it is served by uid \(uid) (pid \(pid)), not by root" }
        return nil
    }

    /// Sends one request body (JSON) and reads the answer.
    public static func exchange(_ c: OpaquePointer, body: [UInt8], timeoutMs: Int32 = 15_000) throws -> IPCResponse {
        var msg = [UInt8](repeating: 0, count: IPCLimits.requestHeader)
        let size = Int32(msg.count + body.count)
        msg.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: Int32(1), toByteOffset: 0, as: Int32.self)
            raw.storeBytes(of: size, toByteOffset: 8, as: Int32.self)
        }
        msg += body
        guard msg.count <= IPCLimits.maxMessage else { throw IPCError("request too large (\(msg.count) bytes)") }
        let sent = msg.withUnsafeBytes { qb_ipcc_send(c, $0.baseAddress, $0.count) }
        guard sent >= 0 else { throw IPCError("sending to clusterd failed: \(String(cString: strerror(Int32(-sent))))") }
        // Uninitialised: zeroing 2 MB that a small answer never touches costs milliseconds.
        var n = 0
        let buf = [UInt8](unsafeUninitializedCapacity: IPCLimits.maxMessage) { raw, count in
            n = qb_ipcc_recv(c, raw.baseAddress, raw.count, timeoutMs)
            count = max(0, min(n, raw.count))
        }
        guard n >= IPCLimits.responseHeader else {
            throw IPCError(n < 0 ? "no answer from clusterd: \(String(cString: strerror(Int32(-n))))" : "short answer from clusterd")
        }
        let data = Data(buf[IPCLimits.responseHeader..<n])
        do {
            return try JSONDecoder().decode(IPCResponse.self, from: data)
        } catch {
            throw IPCError("unreadable answer from clusterd: \(error)")
        }
    }
}
