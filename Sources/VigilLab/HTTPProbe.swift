import Foundation
import Glibc

/// A minimal HTTP client for the lab's benchmark: GET / over a fresh TCP connection every
/// interval, recording the monotonic time of every 200 answer. Runs inside the client
/// namespace (`vigil-lab http-probe`), writing one line per success to a file.
public enum HTTPProbe {
    public static func get(host: String, port: UInt16, timeoutMs: Int32) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &sin.sin_addr) == 1 else { return false }
        let rc = withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        if rc != 0 && errno != EINPROGRESS { return false }
        var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        guard poll(&pfd, 1, timeoutMs) == 1 else { return false }
        var err: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
        guard err == 0 else { return false }
        let req = Array("GET / HTTP/1.0\r\nHost: \(host)\r\n\r\n".utf8)
        guard req.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == req.count else { return false }
        var buf = [UInt8](repeating: 0, count: 64)
        pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, timeoutMs) == 1 else { return false }
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard n >= 12 else { return false }
        return String(decoding: buf[0..<n], as: UTF8.self).hasPrefix("HTTP/1.0 200") || String(decoding: buf[0..<n], as: UTF8.self).hasPrefix("HTTP/1.1 200")
    }

    /// Probes until `stopFile` exists or `maxSeconds` pass.
    public static func run(host: String, port: UInt16, intervalMs: Int, timeoutMs: Int32, out: String, maxSeconds: Int) {
        guard let fh = FileHandle(forWritingAtPath: out) else { return }
        let end = Lab.monoNowMs() + UInt64(maxSeconds) * 1000
        while Lab.monoNowMs() < end {
            let t0 = Lab.monoNowMs()
            if get(host: host, port: port, timeoutMs: timeoutMs) {
                fh.write(Data("\(Lab.monoNowMs())\n".utf8))
            }
            let spent = Int(Lab.monoNowMs() - t0)
            if spent < intervalMs { usleep(UInt32((intervalMs - spent) * 1000)) }
        }
    }
}

/// Runs `vigil-lab http-probe` in the client namespace and reads its answers back.
public final class HTTPClientProbe {
    let process: Process
    let outPath: String

    public init(lab: Lab, binDir: String, host: String, port: UInt16, seconds: Int = 120) throws {
        outPath = lab.workDir + "/http-probe-\(UInt32.random(in: 0...UInt32.max)).out"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        process.arguments = ["netns", "exec", lab.clientNS, binDir + "/vigil-lab", "http-probe", "--host", host, "--port", "\(port)",
                             "--interval-ms", "20", "--timeout-ms", "200", "--out", outPath, "--seconds", "\(seconds)"]
        try process.run()
    }

    deinit { stop() }

    public func stop() {
        if process.isRunning {
            Glibc.kill(process.processIdentifier, SIGKILL)
            Lab.reap(process.processIdentifier)
        }
    }

    public func answers() -> [Double] {
        ((try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "").split(separator: "\n").compactMap { Double($0) }
    }

    public func longestGap(from: Double) -> (gap: Double, lastBefore: Double, firstAfter: Double)? {
        Lab.longestGap(answers().filter { $0 >= from })
    }
}

extension Scenarios {
    /// Kills the node running the web service group; measures what an HTTP client sees.
    public static func appFailover(lab: Lab, binDir: String, root: String, preferred: Int, log: (String) -> Void = { _ in }) throws -> FailoverResult {
        try Lab.installExampleAgent(from: root)
        let docroot = lab.workDir + "/www"
        try FileManager.default.createDirectory(atPath: docroot, withIntermediateDirectories: true)
        try "hello from vigil\n".write(toFile: docroot + "/index.html", atomically: true, encoding: .utf8)
        chmod(lab.workDir, 0o755)
        try lab.startAll()
        try lab.waitFor("a quorate cluster", timeout: 15) { lab.hactl(1, ["status", "--output", "json"]).out.contains("\"quorate\" : true") }
        _ = try lab.apply(1, resources: appResources(preferred: lab.nodeName(preferred), docroot: docroot))
        try lab.waitFor("the web service on \(lab.nodeName(preferred))", timeout: 30) {
            lab.owners(of: vip) == [preferred] && lab.httpGet(webURL)
        }
        let probe = try HTTPClientProbe(lab: lab, binDir: binDir, host: vip, port: 8080)
        defer { probe.stop() }
        try lab.waitFor("HTTP answers", timeout: 10) { probe.answers().count >= 20 }
        log("HTTP client in \(lab.clientNS) fetches \(webURL) every 20 ms; the group runs on \(lab.nodeName(preferred))")
        let killAt = Double(Lab.monoNowMs())
        lab.kill(preferred)
        try lab.setLinks(preferred, up: false)
        let before = probe.answers().count
        try lab.waitFor("HTTP answers to resume", timeout: 30) { probe.answers().count > before + 20 }
        probe.stop()
        guard let g = probe.longestGap(from: killAt - 2000) else { throw LabError("no HTTP answers recorded") }
        let ev = lab.allEvents().filter { Double($0.mono) >= killAt }
        var timeline: [(String, Double)] = [("owner killed", killAt), ("last answer before", g.lastBefore), ("first answer after", g.firstAfter)]
        let victim = lab.nodeName(preferred)
        if let e = ev.first(where: { $0.text.hasPrefix("member-lost node=\(victim)") }) { timeline.append(("detected", Double(e.mono))) }
        if let e = ev.first(where: { $0.text.hasPrefix("address-added resource=web-ip") }) { timeline.append(("address", Double(e.mono))) }
        if let e = ev.first(where: { $0.text == "resource-started resource=web" }) { timeline.append(("web-started", Double(e.mono))) }
        timeline.sort { $0.1 < $1.1 }
        let newOwner = lab.owners(of: vip).first { $0 != preferred }
        return FailoverResult(outageMs: g.gap, victim: preferred, newOwner: newOwner, killAt: killAt, timeline: timeline)
    }
}
