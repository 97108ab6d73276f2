import ArgumentParser
import Foundation
import Glibc

/// Used by the tests: a flood of hostile datagrams at a node's heartbeat port, a third each of
/// random bytes, packets that look like Vigil's (magic, version, consistent length: they cost
/// the node a MAC each), and replays of captured authentic packets.
struct Flood: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Send hostile datagrams at a steady rate (random, Vigil-looking, replayed).")
    @Option var to: String
    @Option var port: UInt16
    @Option(help: "Datagrams per second.") var rate: Int = 30_000
    @Option var seconds: Double = 60
    @Option(help: "An authentic packet to replay, in hex (repeatable).") var replay: [String] = []
    @Option(help: "The protocol version the Vigil-looking packets claim (the nodes' own, so they cost a MAC each).") var protocolVersion: UInt16 = 8

    func run() throws {
        let replays = try replay.map(hexBytes)
        var sin = try ipv4Target(to, port: port)
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw ExitCode(1) }
        defer { close(fd) }
        // A pool made once (random bytes cost more than sending them): a third random, a third
        // Vigil-looking, a third replays when given.
        var rng = SystemRandomNumberGenerator()
        func random(_ n: Int) -> [UInt8] {
            var out = [UInt8](repeating: 0, count: n)
            var i = 0
            while i < n {
                var w = rng.next()
                for _ in 0..<8 where i < n {
                    out[i] = UInt8(truncatingIfNeeded: w)
                    w >>= 8
                    i += 1
                }
            }
            return out
        }
        var pool: [[UInt8]] = []
        for n in 0..<3000 {
            switch n % 3 {
            case 2 where !replays.isEmpty:
                pool.append(replays[(n / 3) % replays.count])
            case 0:
                pool.append(random(Int.random(in: 1...1400, using: &rng)))
            default:
                let len = Int.random(in: 80...1400, using: &rng)
                var p = random(len)
                p.replaceSubrange(0..<6, with: Array("VGIL".utf8) + [UInt8(protocolVersion >> 8), UInt8(protocolVersion & 0xFF)])
                let payload = UInt32(len - 80)
                for i in 0..<4 { p[44 + i] = UInt8(truncatingIfNeeded: payload >> (24 - 8 * UInt32(i))) }
                pool.append(p)
            }
        }
        var start = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        let total = Int(Double(rate) * seconds)
        var sent = 0
        var errors = 0
        while sent < total {
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            let elapsed = Double(now.tv_sec - start.tv_sec) + Double(now.tv_nsec - start.tv_nsec) / 1e9
            // The duration is kept even if the rate is not (the summary says what was reached).
            if elapsed >= seconds { break }
            let due = min(total, Int(elapsed * Double(rate)))
            while sent < due {
                let p = pool[sent % pool.count]
                let n = p.withUnsafeBytes { raw in
                    withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, raw.baseAddress, raw.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
                }
                if n < 0 { errors += 1 }
                sent += 1
            }
            usleep(1000)
        }
        var end = timespec()
        clock_gettime(CLOCK_MONOTONIC, &end)
        let took = Double(end.tv_sec - start.tv_sec) + Double(end.tv_nsec - start.tv_nsec) / 1e9
        print("flood sent=\(sent) errors=\(errors) seconds=\(String(format: "%.1f", took)) rate=\(Int(Double(sent) / max(took, 0.001)))")
    }
}
