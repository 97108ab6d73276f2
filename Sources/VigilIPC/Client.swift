import CQB
import Foundation
import Glibc

/// hactl's side: connect to clusterd's libqb service, check who runs it, send one request.
public enum IPCClient {
    public static func call(service: String, _ request: IPCRequest, timeoutMs: Int32 = 15_000) throws -> IPCResponse {
        guard let c = qb_ipcc_connect(service, IPCLimits.maxMessage) else {
            let e = errno
            throw IPCError("cannot connect to clusterd (IPC service '\(service)'): \(String(cString: strerror(e))). Is clusterd running on this node (and in this network namespace)? Use --ipc NAME if its ipc_name differs.")
        }
        defer { qb_ipcc_disconnect(c) }
        var pid: pid_t = 0
        var uid: uid_t = 0
        var gid: gid_t = 0
        if qb_ipcc_auth_get(c, &pid, &uid, &gid) == 0 {
            // Only trust a server run by root or by ourselves: anyone else could impersonate clusterd.
            guard uid == 0 || uid == geteuid() else {
                throw IPCError("refusing IPC service '\(service)': it is served by uid \(uid) (pid \(pid)), not by root")
            }
        }
        let body = Array(try JSONEncoder().encode(request))
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
        var buf = [UInt8](repeating: 0, count: IPCLimits.maxMessage)
        let n = buf.withUnsafeMutableBytes { qb_ipcc_recv(c, $0.baseAddress, $0.count, timeoutMs) }
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
