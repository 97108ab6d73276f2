/// How far each peer's monotonic clock is from this node's, as heartbeat echoes measure it
/// (`hactl history` merges journals with it; nothing that keeps the cluster safe reads it).
///
/// A heartbeat from peer P carries P's clock when sent (t3) and echoes the latest of our
/// heartbeats P had received (our t1); it arrives at our t4. P received ours at some t2 with
/// t1 ≤ t2 (on our clock) and sent at t3 ≥ t2 (on its clock), so the offset θ = P − us lies in
/// [t3 − t4, t3 − t1]: never wider than the round trip plus the time P held our heartbeat.
/// Heartbeats on both sides run at independent phases, so some samples hold briefly; the
/// intersection of the recent intervals is typically a millisecond or two wide (the answer
/// to a history request is one more sample, held for no time at all). Clocks drift apart by a
/// few parts per million, so only the last `window` samples count; if they do not intersect
/// (a clock was stepped, or drift over the window), the narrowest recent one decides.
public struct ClockOffsets: Sendable {
    struct Sample: Sendable { var low: Int64; var high: Int64 }

    public struct Estimate: Sendable, Equatable, Codable {
        /// Peer's clock minus ours (ms).
        public var offsetMs: Double
        /// Half the width of the interval the offset is known to lie in.
        public var uncertaintyMs: Double
        public var samples: Int
    }

    /// Samples kept per peer: 6.4 s of heartbeats at the default interval.
    public static let window = 64
    var samples: [NodeID: [Sample]] = [:]
    var next: [NodeID: Int] = [:]

    public init() {}

    /// A heartbeat (or a history piece) from `peer`: sent at `sentAt` on its clock, echoing
    /// our `echo`, received at `receivedAt` on ours. An echo of 0 (none yet) or from the
    /// future is no sample.
    public mutating func record(peer: NodeID, sentAt: PeerTime, echo: UInt64, receivedAt: UInt64) {
        guard echo > 0, echo <= receivedAt, sentAt.ms < JournalRecord.maxMono, receivedAt < JournalRecord.maxMono else { return }
        let t3 = Int64(sentAt.ms)
        // (Each reading is whole milliseconds, cut down, and clocks may be slewed apart by up to
        // 500 ppm over the window's few seconds: two more either side keep θ inside.)
        let s = Sample(low: t3 - Int64(receivedAt) - 2, high: t3 - Int64(echo) + 2)
        if samples[peer, default: []].count < Self.window {
            samples[peer, default: []].append(s)
        } else {
            let i = next[peer, default: 0]
            samples[peer]?[i] = s
            next[peer] = (i + 1) % Self.window
        }
    }

    /// Forgets a peer (it restarted: its monotonic clock may have a new origin).
    public mutating func forget(_ peer: NodeID) {
        samples[peer] = nil
        next[peer] = nil
    }

    public func estimate(_ peer: NodeID) -> Estimate? {
        guard let list = samples[peer], let first = list.first else { return nil }
        var low = first.low, high = first.high
        for s in list.dropFirst() {
            low = max(low, s.low)
            high = min(high, s.high)
        }
        if low > high {
            // No common interval: the narrowest sample alone.
            guard let narrow = list.min(by: { ($0.high - $0.low) < ($1.high - $1.low) }) else { return nil }
            (low, high) = (narrow.low, narrow.high)
        }
        return Estimate(offsetMs: Double(low + high) / 2, uncertaintyMs: Double(high - low) / 2, samples: list.count)
    }
}
