import Foundation
import Glibc

/// A watchdog for a lab node: the one kernel watchdog (softdog) would reset the whole machine
/// and every lab node with it, so each node's guardian opens a FIFO instead, and this stand-in
/// reads its pets. Once armed (the first pet), if no pet arrives for the timeout it resets the
/// node as a watchdog resets a machine: every process in the node's namespace is killed and its
/// links go down. A 'V' (the magic close) disarms it.
public final class WatchdogStandIn: @unchecked Sendable {
    public let node: Int
    public let fifo: String
    private let lock = NSLock()
    private var stopped = false
    private var resetAtMs: UInt64?
    private var pets = 0

    /// Appends `[watchdog]` to the lab's cluster file (before the nodes start) and starts one
    /// stand-in per data node.
    public static func install(lab: Lab, timeoutS: Int, nodes: [Int]) throws -> [WatchdogStandIn] {
        let cfg = try String(contentsOfFile: lab.configPath, encoding: .utf8)
        try (cfg + "\n[watchdog]\ndevice = \"\(lab.workDir)/wd-{node}\"\ntimeout_s = \(timeoutS)\n").write(toFile: lab.configPath, atomically: true, encoding: .utf8)
        return try nodes.map { try WatchdogStandIn(lab: lab, node: $0, timeoutS: timeoutS) }
    }

    init(lab: Lab, node: Int, timeoutS: Int) throws {
        self.node = node
        self.fifo = "\(lab.workDir)/wd-\(lab.nodeName(node))"
        unlink(fifo)
        guard mkfifo(fifo, 0o600) == 0 else { throw LabError("mkfifo \(fifo): \(String(cString: strerror(errno)))") }
        // Read and write: the FIFO always has a writer (us), so the guardian's open never fails
        // for want of a reader and its exit is no end of file here.
        let fd = open(fifo, O_RDWR | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw LabError("open \(fifo): \(String(cString: strerror(errno)))") }
        let ns = lab.ns(node)
        let timeoutMs = UInt64(timeoutS) * 1000
        Thread.detachNewThread { [self] in self.loop(fd: fd, ns: ns, timeoutMs: timeoutMs) }
    }

    /// When the stand-in reset its node (CLOCK_MONOTONIC ms), if it did.
    public var resetAt: UInt64? { lock.withLock { resetAtMs } }
    public var petCount: Int { lock.withLock { pets } }

    public func stop() { lock.withLock { stopped = true } }

    private func loop(fd: Int32, ns: String, timeoutMs: UInt64) {
        defer { close(fd) }
        var lastPet: UInt64?
        var buf = [UInt8](repeating: 0, count: 256)
        while !lock.withLock({ stopped }) {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&pfd, 1, 20)
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            let now = Lab.monoNowMs()
            if n > 0 {
                if buf[n - 1] == 0x56 {
                    lastPet = nil  // disarmed
                } else {
                    lastPet = now
                    lock.withLock { pets += n }
                }
            }
            if let l = lastPet, now >= l + timeoutMs {
                lastPet = nil
                lock.withLock { resetAtMs = now }
                Self.reset(ns)
            }
        }
    }

    /// As a watchdog reset does to a machine: all of the node's processes gone, its links down.
    static func reset(_ ns: String) {
        for link in Lab.run("/usr/sbin/ip", ["-n", ns, "-o", "link", "show"]).out.split(separator: "\n") {
            let parts = link.split(separator: ":", maxSplits: 2)
            guard parts.count > 1 else { continue }
            let name = parts[1].trimmingCharacters(in: .whitespaces).split(separator: "@").first.map(String.init) ?? ""
            if !name.isEmpty && name != "lo" { _ = Lab.run("/usr/sbin/ip", ["-n", ns, "link", "set", name, "down"]) }
        }
        for _ in 0..<50 {
            let pids = Lab.run("/usr/sbin/ip", ["netns", "pids", ns]).out.split(separator: "\n").compactMap { pid_t($0) }
            if pids.isEmpty { return }
            for p in pids { kill(p, SIGKILL) }
            usleep(100_000)
        }
    }
}
