import Foundation

/// Events from the daemons' logs: every line is `mono=<ms> node=<name> <level> <text>`, on the
/// monotonic clock the lab's own timestamps use.
extension Lab {
    public func tail(_ path: String, lines: Int) -> String {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    public struct Event: Sendable {
        public var mono: Int
        public var node: String
        public var text: String
    }

    public func events(_ i: Int) -> [Event] {
        let text = (try? String(contentsOfFile: logFile(i), encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            let parts = line.split(separator: " ", maxSplits: 3)
            guard parts.count == 4, parts[0].hasPrefix("mono="), let m = Int(parts[0].dropFirst(5)) else { return nil }
            return Event(mono: m, node: String(parts[1].dropFirst(5)), text: String(parts[3]))
        }
    }

    public func allEvents() -> [Event] {
        (1...options.nodes).flatMap { events($0) }.sorted { $0.mono < $1.mono }
    }

    /// Intervals (monotonic ms) during which each node carried `address`, from its own log.
    /// An interval still open ends at `openEnd[node]` (when its links went down) or now.
    public func holdIntervals(address: String, openEnd: [Int: Int] = [:]) -> [Int: [(Int, Int)]] {
        var out: [Int: [(Int, Int)]] = [:]
        let now = Int(Lab.monoNowMs())
        for i in 1...options.nodes {
            var start: Int?
            var list: [(Int, Int)] = []
            for e in events(i) {
                let mine = e.text.contains("address=\(address)/") || e.text.contains("address=\(address) ")
                if mine && (e.text.hasPrefix("address-added") || e.text.hasPrefix("found-leftover")) {
                    if start == nil { start = e.mono }
                } else if mine && e.text.hasPrefix("address-removed") {
                    if let s = start { list.append((s, e.mono)) }
                    start = nil
                }
            }
            if let s = start { list.append((s, openEnd[i] ?? now)) }
            out[i] = list
        }
        return out
    }

    /// Pairs of nodes that carried the address at the same time (should be empty).
    public static func overlaps(_ intervals: [Int: [(Int, Int)]]) -> [String] {
        var found: [String] = []
        let keys = intervals.keys.sorted()
        for (ai, a) in keys.enumerated() {
            for b in keys[(ai + 1)...] {
                for x in intervals[a] ?? [] {
                    for y in intervals[b] ?? [] where x.0 < y.1 && y.0 < x.1 {
                        found.append("node\(a) \(x) and node\(b) \(y)")
                    }
                }
            }
        }
        return found
    }

    /// The longest gap between consecutive answer times (ms), with the answers around it.
    public static func longestGap(_ times: [Double]) -> (gap: Double, lastBefore: Double, firstAfter: Double)? {
        guard times.count >= 2 else { return nil }
        var best = (0.0, times[0], times[0])
        for (a, b) in zip(times, times.dropFirst()) where b - a > best.0 { best = (b - a, a, b) }
        return best
    }

    public static func monoNowNs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    public static func monoNowMs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
    }

    /// The first `address-added` and `resource-started` instant of each resource at or after
    /// `since`, over the logs of `nodes`.
    public func startInstants(nodes: [Int], since: Int) -> (addresses: [String: Int], resources: [String: Int]) {
        var addresses: [String: Int] = [:]
        var resources: [String: Int] = [:]
        for e in nodes.flatMap({ events($0) }) where e.mono >= since {
            for (prefix, isAddress) in [("address-added resource=", true), ("resource-started resource=", false)] where e.text.hasPrefix(prefix) {
                let name = String(e.text.dropFirst(prefix.count).prefix { $0 != " " })
                if isAddress { addresses[name] = min(addresses[name] ?? e.mono, e.mono) } else { resources[name] = min(resources[name] ?? e.mono, e.mono) }
            }
        }
        return (addresses, resources)
    }
}
