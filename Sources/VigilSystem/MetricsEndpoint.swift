import CVigilSys
import Glibc
import VigilCore

/// A tiny HTTP/1.x server for Prometheus' scrapes, driven by the daemon's reactor: non-blocking
/// accept, read and write, no thread. `GET /metrics` is answered with `body()`; any other path
/// gets 404, any other method 405, a request head over 8 KiB 431. Every connection is closed
/// after one answer; at most `maxConnections` at once (the oldest is dropped), and one idle for
/// `idleMs` is closed (`reap`), so a slow or hostile client costs a descriptor for seconds.
public final class MetricsEndpoint {
    public static let maxConnections = 16
    public static let maxHead = 8192
    public static let idleMs: UInt64 = 5000

    private struct Conn { var fd: Int32; var head: [UInt8] = []; var out: [UInt8] = []; var sent = 0; var since: UInt64 }
    private var conns: [Int32: Conn] = [:]
    private let listener: Int32
    private let reactor: Reactor
    private let body: () -> [UInt8]
    /// A rendering is reused for `cacheMs`: a client reconnecting as fast as it can costs the
    /// loop one rendering a second, not one per request.
    public static let cacheMs: UInt64 = 1000
    private var cached: (at: UInt64, bytes: [UInt8])?
    private var pausedUntil: UInt64?

    public init(address: IPAddress, port: UInt16, reactor: Reactor, body: @escaping () -> [UInt8]) throws {
        self.reactor = reactor
        self.body = body
        let af = address.family == .v4 ? AF_INET : AF_INET6
        let fd = socket(af, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let rc = withSockaddr(address, port: port) { sa, len in Glibc.bind(fd, sa, len) }
        guard rc == 0, listen(fd, 16) == 0 else {
            let e = errno
            close(fd)
            throw SystemError("metrics: listen on \(address) port \(port)", errno: e)
        }
        listener = fd
        reactor.add(fd: fd) { [unowned self] _ in self.accept() }
    }

    deinit {
        for fd in conns.keys { close(fd) }
        close(listener)
    }

    private func accept() {
        while true {
            let fd = vigil_accept_nonblock(listener)
            guard fd >= 0 else {
                // Out of descriptors or memory: the connection stays queued and the listener
                // readable; stop watching it for a second rather than spin.
                if errno != EAGAIN && errno != EINTR && errno != ECONNABORTED {
                    reactor.remove(fd: listener)
                    pausedUntil = MonotonicClock.nowMs() + 1000
                }
                return
            }
            if conns.count >= Self.maxConnections, let oldest = conns.values.min(by: { $0.since < $1.since }) { drop(oldest.fd) }
            conns[fd] = Conn(fd: fd, since: MonotonicClock.nowMs())
            reactor.add(fd: fd) { [unowned self] _ in self.readable(fd) }
        }
    }

    private func readable(_ fd: Int32) {
        guard var c = conns[fd] else { return }
        if !c.out.isEmpty { return write(fd) }
        var buf = [UInt8](repeating: 0, count: 2048)
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
        guard n > 0 else { return drop(fd) }
        let from = max(0, c.head.count - 3)
        c.head += buf[0..<n]
        conns[fd] = c
        if let end = Self.headEnd(c.head, from: from) {
            respond(fd, to: Array(c.head[..<end]))
        } else if c.head.count > Self.maxHead {
            answer(fd, "431 Request Header Fields Too Large", Array("request head too large\n".utf8))
        }
    }

    /// Where the request head ends (a blank line, CRLF or bare LF), scanning from `from` (the
    /// bytes before were scanned already: a head sent a byte at a time costs linear time).
    static func headEnd(_ b: [UInt8], from: Int = 0) -> Int? {
        guard b.count >= 2 else { return nil }
        for i in max(0, from)..<(b.count - 1) where b[i] == 10 {
            if b[i + 1] == 10 { return i }
            if i + 2 < b.count, b[i + 1] == 13, b[i + 2] == 10 { return i }
        }
        return nil
    }

    private func respond(_ fd: Int32, to head: [UInt8]) {
        let line = String(decoding: head.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self).split(separator: " ")
        guard line.count == 3, line[2].hasPrefix("HTTP/1.") else { return answer(fd, "400 Bad Request", Array("bad request line\n".utf8)) }
        guard line[0] == "GET" || line[0] == "HEAD" else { return answer(fd, "405 Method Not Allowed", Array("GET only\n".utf8)) }
        let path = line[1].split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        guard path == "/metrics" else { return answer(fd, "404 Not Found", Array("try /metrics\n".utf8)) }
        let now = MonotonicClock.nowMs()
        if cached == nil || now >= (cached?.at ?? 0) + Self.cacheMs { cached = (now, body()) }
        answer(fd, "200 OK", cached?.bytes ?? [], type: "text/plain; version=0.0.4; charset=utf-8", headOnly: line[0] == "HEAD")
    }

    private func answer(_ fd: Int32, _ status: String, _ body: [UInt8], type: String = "text/plain; charset=utf-8", headOnly: Bool = false) {
        guard var c = conns[fd] else { return }
        c.out = Array("HTTP/1.1 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n".utf8) + (headOnly ? [] : body)
        conns[fd] = c
        reactor.modify(fd: fd, events: Int16(POLLOUT))
        write(fd)
    }

    private func write(_ fd: Int32) {
        guard var c = conns[fd] else { return }
        while c.sent < c.out.count {
            let n = c.out[c.sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && errno == EAGAIN { conns[fd] = c; return }
            guard n > 0 else { return drop(fd) }
            c.sent += n
        }
        drop(fd)
    }

    private func drop(_ fd: Int32) {
        guard conns.removeValue(forKey: fd) != nil else { return }
        reactor.remove(fd: fd)
        close(fd)
    }

    /// Closes connections idle (or slow) for longer than `idleMs`.
    public func reap(now: UInt64) {
        for c in conns.values where now > c.since + Self.idleMs { drop(c.fd) }
        if let p = pausedUntil, now >= p {
            pausedUntil = nil
            reactor.add(fd: listener) { [unowned self] _ in self.accept() }
        }
    }
}
