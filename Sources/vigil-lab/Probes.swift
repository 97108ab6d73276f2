import ArgumentParser
import CQB
import Foundation
import Glibc
import VigilIPC
import VigilSystem

/// Used by the tests: connections to clusterd's IPC as a hostile local user would open them.
struct IPCProbe: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ipc-probe", abstract: "Open IPC connections to a clusterd and report how many it accepted.")
    @Option(help: "The clusterd's IPC name.") var ipc: String
    @Option(help: "Connections to open and hold.") var connections: Int = 1
    @Option(help: "Buffer size to ask libqb for.") var buffer: Int = IPCLimits.maxMessage
    @Option(help: "Send a status request padded to this many bytes on the first connection.") var requestBytes: Int = 0
    @Option(help: "Hold the connections this long before exiting.") var holdMs: Int = 0

    func run() throws {
        var open: [OpaquePointer] = []
        var errors: [String] = []
        for _ in 0..<max(0, connections) {
            do { open.append(try IPCClient.connect(service: ipc, buffer: buffer)) } catch { errors.append("\(error)") }
        }
        print("connected=\(open.count) refused=\(errors.count)")
        if let e = errors.first { print("first-error=\(e)") }
        if requestBytes > 0, let c = open.first {
            var body = Array(#"{"command":"status"}"#.utf8)
            body += [UInt8](repeating: 0x20, count: max(0, requestBytes - IPCLimits.requestHeader - body.count))
            do {
                let r = try IPCClient.exchange(c, body: body, timeoutMs: 5000)
                print("answer-ok=\(r.ok) answer=\(r.message ?? "")")
            } catch {
                print("answer-error=\(error)")
            }
        }
        fflush(nil)
        if holdMs > 0 { usleep(UInt32(min(holdMs, 600_000)) * 1000) }
        for c in open { qb_ipcc_disconnect(c) }
    }
}

/// Used by the tests: binds an abstract Unix socket name first, as any local user may.
struct SquatIPC: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "squat-ipc", abstract: "Bind an abstract Unix socket name and hold it.")
    @Option var name: String
    @Option var seconds: Int = 30

    func run() throws {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ExitCode(1) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(name.utf8)
        guard bytes.count < 107 else { throw ValidationError("name too long") }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw[0] = 0
            for (i, b) in bytes.enumerated() { raw[i + 1] = b }
        }
        // The whole sun_path, padded with NULs, as libqb binds it.
        let len = socklen_t(MemoryLayout<sockaddr_un>.size)
        let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        guard r == 0, listen(fd, 4) == 0 else {
            print("bind failed: \(String(cString: strerror(errno)))")
            throw ExitCode(1)
        }
        print("bound pid=\(getpid())")
        fflush(nil)
        sleep(UInt32(max(0, seconds)))
    }
}

/// Used by the tests: a real libqb IPC service under the given name, run by whoever starts it,
/// that answers every request "ok". hactl must refuse to talk to it unless it runs as root.
struct ImpostorIPC: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "impostor-ipc", abstract: "Serve a libqb IPC name that answers every request, as the current user.")
    @Option var name: String
    @Option var seconds: Int = 30

    func run() throws {
        let reactor = try Reactor()
        let server = IPCServer(name: name, adminGroup: "root", poll: (
            add: { fd, events, handler in reactor.add(fd: fd, events: events) { if handler($0) < 0 { reactor.remove(fd: fd) } } },
            modify: { fd, events in reactor.modify(fd: fd, events: events) },
            remove: { fd in reactor.remove(fd: fd) },
            enqueue: { job in reactor.enqueue(job) }
        ))
        server.handler = { _, _, _ in .now(IPCResponse(ok: true, message: "impostor answered")) }
        try server.start()
        print("serving pid=\(getpid()) uid=\(getuid())")
        fflush(nil)
        let end = MonotonicClock.nowMs() + UInt64(max(0, seconds)) * 1000
        reactor.nextWake = { end }
        reactor.onTick = { if MonotonicClock.nowMs() >= end { reactor.stop() } }
        reactor.run()
        server.stop()
    }
}
