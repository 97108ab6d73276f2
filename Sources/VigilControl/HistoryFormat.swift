import VigilCore

/// `hactl history` as text: the merged timeline (UTC, on the asking node's wall clock, each
/// line naming the node that recorded it), each failover's steps, and the clock offsets used.
public enum HistoryFormat {
    /// `2026-12-07T00:41:02.123Z` for milliseconds since 1970 (UTC; days to civil date after
    /// Howard Hinnant's well-known algorithm).
    public static func utc(_ ms: Int64) -> String {
        let (secs, milli) = (ms >= 0 ? ms / 1000 : (ms - 999) / 1000, ((ms % 1000) + 1000) % 1000)
        let days = secs >= 0 ? secs / 86_400 : (secs - 86_399) / 86_400
        let sod = secs - days * 86_400
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
        func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let ms3 = milli < 10 ? "00\(milli)" : (milli < 100 ? "0\(milli)" : "\(milli)")
        return "\(y)-\(two(m))-\(two(d))T\(two(sod / 3600)):\(two(sod % 3600 / 60)):\(two(sod % 60)).\(ms3)Z"
    }

    static func offset(_ ms: Double) -> String {
        let tenths = (ms * 10).rounded() / 10
        return (tenths >= 0 ? "+" : "") + "\(tenths) ms"
    }

    public static func text(_ r: History.Report) -> String {
        var out: [String] = []
        out.append("History as \(r.asker) sees it (times UTC on \(r.asker)'s clock; other nodes' corrected by the measured offsets)")
        for n in r.nodes {
            var line = "  \(n.name): \(n.records) records"
            if let o = n.wallOffsetMs, n.offsetSource != "self" {
                line += ", clock \(offset(o)) ±\(((n.uncertaintyMs ?? 0) * 10).rounded() / 10) ms (\(n.offsetSource ?? "?"))"
            }
            if !n.complete && n.note == nil { line += ", incomplete" }
            if let note = n.note { line += " — \(note)" }
            out.append(line)
        }
        if r.omitted > 0 { out.append("  (\(r.omitted) older events left out: narrow with --since, --resource or --node)") }
        out.append("")
        if r.events.isEmpty { out.append("No events.") }
        let width = r.events.map(\.node.count).max() ?? 0
        for e in r.events {
            out.append("\(utc(e.wallMs))  \(e.node.padding(width))  \(e.text)")
        }
        for f in r.failovers {
            out.append("")
            out.append("Failover of \(f.resource) from \(f.from)\(f.to.map { " to \($0)" } ?? "") (\(f.reason)):")
            let base = f.lost ?? f.detected
            var steps: [(String, Int64?)] = [("lost", f.lost), ("detected", f.detected), ("decided", f.decided), ("stopped", f.stopped),
                                               ("started", f.started), ("announced", f.announced), ("completed", f.completed)]
            if f.lost == nil { steps.removeFirst() }
            for (name, t) in steps {
                guard let t else { continue }
                out.append("  \(name.padding(10)) \(utc(t))  +\(t - base) ms")
            }
            if let c = f.clientOutageMs { out.append("  client-visible outage ≈ \(c) ms (estimate: from the last heartbeat heard from the old holder, or its failure report, to \(f.announced != nil ? "the first announcement" : "the start"))") }
        }
        return out.joined(separator: "\n")
    }
}

extension String {
    fileprivate func padding(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
}
