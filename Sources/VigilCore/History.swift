/// `hactl history`: the journals of all reachable nodes merged into one timeline, on the
/// asking node's wall clock.
///
/// Each node's records carry its own wall clock, which may be off by seconds. The asker knows
/// each peer's monotonic offset θ from heartbeat echoes (`ClockOffsets`) and each node's wall
/// minus monotonic (d) at answering time, so the peer's wall clock runs w = θ + d_peer − d_asker
/// ahead of its own; a record's wall time minus w is the asker's wall time of the event. The
/// merge keeps each node's own order (its seq) even where its wall clock was stepped, and
/// otherwise orders by corrected time. Failovers are then read off the timeline.
public enum History {
    public struct Source: Sendable {
        public var node: String
        /// The node's wall clock minus the asker's (ms); 0 for the asker itself.
        public var wallOffsetMs: Double
        public var uncertaintyMs: Double
        public var records: [JournalRecord]
        public init(node: String, wallOffsetMs: Double, uncertaintyMs: Double, records: [JournalRecord]) {
            self.node = node
            self.wallOffsetMs = wallOffsetMs
            self.uncertaintyMs = uncertaintyMs
            self.records = records
        }
    }

    public struct NodeInfo: Codable, Sendable, Equatable {
        public var name: String
        /// Its wall clock minus the asker's, as measured (nil: not measured).
        public var wallOffsetMs: Double?
        public var uncertaintyMs: Double?
        /// How the offset was measured: "self", "heartbeat-echoes".
        public var offsetSource: String?
        public var records: Int
        /// Every record asked for arrived.
        public var complete: Bool
        public var note: String?
        public init(name: String, wallOffsetMs: Double?, uncertaintyMs: Double?, offsetSource: String?, records: Int, complete: Bool, note: String?) {
            self.name = name
            self.wallOffsetMs = wallOffsetMs
            self.uncertaintyMs = uncertaintyMs
            self.offsetSource = offsetSource
            self.records = records
            self.complete = complete
            self.note = note
        }
    }

    public struct Event: Codable, Sendable, Equatable {
        /// The asker's wall clock (ms since 1970), corrected.
        public var wallMs: Int64
        public var node: String
        public var seq: UInt64
        /// The recording node's own wall clock, uncorrected.
        public var localWallMs: Int64
        public var kind: String
        public var fields: [String: String]
        public var text: String
    }

    /// One failover's timeline: the asker's wall clock (ms); nil where no node recorded that step.
    public struct Failover: Codable, Sendable, Equatable {
        public var resource: String
        public var from: String
        public var to: String?
        public var reason: String
        /// The lost node declared lost (earliest survivor), or the failure reported.
        public var lost: Int64?
        /// The coordinator began the failover.
        public var detected: Int64
        public var decided: Int64?
        /// The old holder stopped it (a failure; a lost node stops nothing anyone hears of).
        public var stopped: Int64?
        public var started: Int64?
        /// First gratuitous ARP / unsolicited NA (addresses).
        public var announced: Int64?
        public var completed: Int64?
        /// From when clients likely lost the service (the last heartbeat heard from a lost
        /// node, a failure's report) to started or announced.
        public var clientOutageMs: Int64?
    }

    public struct Report: Codable, Sendable, Equatable {
        public var format = 1
        public var asker: String
        public var generatedWallMs: Int64
        public var sinceWallMs: Int64?
        public var nodes: [NodeInfo]
        public var events: [Event]
        public var failovers: [Failover]
        /// Older events left out (at most `maxEvents` are returned).
        public var omitted: Int
        public init(asker: String, generatedWallMs: Int64, sinceWallMs: Int64?, nodes: [NodeInfo], events: [Event], failovers: [Failover], omitted: Int) {
            self.asker = asker
            self.generatedWallMs = generatedWallMs
            self.sinceWallMs = sinceWallMs
            self.nodes = nodes
            self.events = events
            self.failovers = failovers
            self.omitted = omitted
        }
    }

    public static let maxEvents = 4000
    public static let maxFailovers = 500
    /// What the events may take of the answer (hactl's rings hold 2 MiB).
    public static let maxAnswerBytes = 1_200_000

    /// Merges `sources` into one timeline: per node in seq order, across nodes by corrected time.
    public static func merge(_ sources: [Source]) -> [Event] {
        var heads = sources.map { s in s.records.sorted { $0.seq < $1.seq }[...] }
        var out: [Event] = []
        out.reserveCapacity(sources.reduce(0) { $0 + $1.records.count })
        // (Offsets are bounded like the records' clocks: no arithmetic here can overflow.)
        let shift = sources.map { s in Int64(Swift.max(-Double(JournalRecord.maxWall), Swift.min(Double(JournalRecord.maxWall), s.wallOffsetMs.rounded()))) }
        func corrected(_ i: Int, _ r: JournalRecord) -> Int64 { r.wallMs - shift[i] }
        while true {
            var best: (i: Int, t: Int64)?
            for i in heads.indices {
                guard let r = heads[i].first else { continue }
                let t = corrected(i, r)
                if best.map({ t < $0.t }) ?? true { best = (i, t) }
            }
            guard let b = best, let r = heads[b.i].popFirst() else { break }
            out.append(Event(wallMs: b.t, node: sources[b.i].node, seq: r.seq, localWallMs: r.wallMs, kind: r.kind, fields: r.fields, text: r.text))
        }
        return out
    }

    /// The failovers in `events` (merged), each with its steps. `timeoutMs`: how long after the
    /// last heartbeat heard a node is declared lost.
    public static func failovers(_ events: [Event], timeoutMs: UInt64) -> [Failover] {
        var out: [Failover] = []
        for (i, e) in events.enumerated() where e.kind == "failover-begun" {
            guard let r = e.fields["resource"], let from = e.fields["from"] else { continue }
            var f = Failover(resource: r, from: from, to: nil, reason: e.fields["reason"] ?? "", lost: nil, detected: e.wallMs)
            let window = e.wallMs - Int64(timeoutMs) - 10_000
            // Lost: the earliest survivor's member-lost of `from` shortly before, or the failure.
            var failedAt: Int64?
            for p in events[Swift.max(0, i - 2000)..<i].reversed() {
                if p.wallMs < window { break }
                if p.kind == "member-lost", p.fields["node"] == from { f.lost = p.wallMs }
                if p.kind == "resource-failed", p.fields["resource"] == r, p.node == from, failedAt == nil { failedAt = p.wallMs }
            }
            if f.lost == nil { f.lost = failedAt }
            // The rest: after the beginning, up to the next failover of this resource.
            // (At most a few hundred events on: a failover's steps follow within seconds.)
            let limit = Swift.min(events.endIndex, i + 1 + 2000)
            let end = events[(i + 1)..<limit].firstIndex { $0.kind == "failover-begun" && $0.fields["resource"] == r } ?? limit
            for n in events[(i + 1)..<end] {
                switch n.kind {
                case "decided" where n.fields["resource"] == r && f.decided == nil:
                    f.decided = n.wallMs
                    f.to = n.fields["node"]
                case "resource-stopped" where n.fields["resource"] == r && n.node == from && f.stopped == nil:
                    f.stopped = n.wallMs
                case "resource-started" where n.fields["resource"] == r && f.to != nil && n.node == f.to && f.started == nil:
                    f.started = n.wallMs
                case "announced" where n.fields["resource"] == r && f.to != nil && n.node == f.to && f.announced == nil:
                    f.announced = n.wallMs
                case "failover-completed" where n.fields["resource"] == r && f.completed == nil:
                    f.completed = n.wallMs
                    if f.to == nil { f.to = n.fields["to"] }
                default: break
                }
            }
            let begin = failedAt ?? f.lost.map { $0 - Int64(timeoutMs) }
            if let b = begin, let up = f.announced ?? f.started { f.clientOutageMs = max(0, up - b) }
            out.append(f)
        }
        return out
    }

    /// Keeps the events about `resource` and/or `node` (recorded there, or naming it), newer
    /// than `sinceWallMs`; the failovers likewise.
    public static func filter(_ events: [Event], _ failovers: [Failover], since sinceWallMs: Int64?, resource: String?, node: String?) -> ([Event], [Failover]) {
        let ev = events.filter { e in
            if let s = sinceWallMs, e.wallMs < s { return false }
            if let r = resource, e.fields["resource"] != r { return false }
            if let n = node, e.node != n, !["node", "from", "to", "coordinator"].contains(where: { e.fields[$0] == n }) { return false }
            return true
        }
        let fo = failovers.filter { f in
            if let s = sinceWallMs, (f.lost ?? f.detected) < s { return false }
            if let r = resource, f.resource != r { return false }
            if let n = node, f.from != n, f.to != n { return false }
            return true
        }
        return (ev, fo)
    }

    /// The whole report: merged, failovers read off the full timeline, then filtered and capped.
    public static func report(asker: String, generatedWallMs: Int64, sources: [Source], nodes: [NodeInfo], timeoutMs: UInt64,
                              since: Int64?, resource: String?, node: String?) -> Report {
        let merged = merge(sources)
        let (ev, fo) = filter(merged, failovers(merged, timeoutMs: timeoutMs), since: since, resource: resource, node: node)
        // The newest events that fit an answer (each about twice its text, with its fields).
        var kept = 0, bytes = 0
        for e in ev.reversed() {
            bytes += 2 * e.text.utf8.count + 160
            if kept == maxEvents || bytes > maxAnswerBytes { break }
            kept += 1
        }
        return Report(asker: asker, generatedWallMs: generatedWallMs, sinceWallMs: since, nodes: nodes, events: Array(ev.suffix(kept)),
                      failovers: Array(fo.suffix(maxFailovers)), omitted: ev.count - kept)
    }

    /// `30s`, `15m`, `1h`, `2d` (or plain seconds) as milliseconds; nil if it is none of these.
    public static func duration(_ s: String) -> UInt64? {
        let units: [Character: UInt64] = ["s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000]
        guard let last = s.last else { return nil }
        let (digits, unit) = units[last].map { (s.dropLast(), $0) } ?? (Substring(s), 1000)
        guard !digits.isEmpty, digits.allSatisfy(\.isASCII), let n = UInt64(digits), n <= 3650 * 86_400 else { return nil }
        return n * unit
    }
}
