/// Two nodes under Corosync (`ClusterConfig.isCorosyncPair`).
///
/// The argument. No majority of two can withdraw a lost node's lease (`withdrawnByMajority`
/// would need both nodes), so nothing a lost node ran moves before it is fenced, or confirmed
/// its release, or an operator confirms it is off. Hence:
/// - A node's lease no longer needs the other's support: it lasts while votequorum says quorate
///   and the loop runs (`updateLeases`). votequorum with corosync-qdevice (ffsplit) keeps quorum
///   on one side of a split only; the other side releases at once (`membershipQuorate`), and a
///   stalled node's guardian removes its addresses when its lease runs out, as ever.
/// - The quorate side fences the other node itself, coordinator or not, once the other has been
///   lost for a failure timeout and `pairSettleMs` (the lease, or the quorum device's
///   `sync_timeout` if longer) and this node has been quorate that long: by then votequorum has
///   settled which side keeps quorum, so a side holding a stale device vote does not fence the
///   winner. Where both sides stay quorate by design (`two_node: 1`, no device), the node with
///   the higher id waits `pairFenceDelayMs` more (the shell sets 15 s there: power fencing takes
///   seconds), so the lower id wins the race, as qnetd's default tie-breaker would.
/// - Only a fenced other node, or one that left cleanly holding nothing, votes for this one (a
///   ballot that never runs out while it is so and this node is quorate): at most one
///   coordinator at any instant, as ever (our own vote still waits out the one we gave it). The
///   coordinator then recovers what the fenced node ran.
/// - Only fence devices fence here (a quorate node's watchdog is never starved, so a watchdog
///   "fence" would prove nothing); without a device covering the other node, nothing it ran
///   moves until `hactl fence confirm`, which clusterd refuses while Corosync still counts that
///   node in its ring.
extension Engine {
    /// The other node of a Corosync pair when it is not a member.
    func pairPeerLost() -> PeerState? {
        guard cluster.isCorosyncPair else { return nil }
        return peers.values.first { !$0.member }
    }

    /// The other node left cleanly: it said it was leaving, holding nothing.
    func pairPeerLeftCleanly(_ p: PeerState) -> Bool {
        guard let r = p.report else { return false }
        return r.leaving && p.heldSet.isEmpty
    }

    /// When the lost other node may be fenced (nil: it is a member, fenced, or we are not quorate).
    func pairFenceDue() -> UInt64? {
        guard engineQuorate, !leaving, !fencedOut, let p = pairPeerLost(), !isFenced(p.id), !pairPeerLeftCleanly(p) else { return nil }
        let lostAt = (p.lastHeard ?? ledger.startedAt) + timing.timeout
        let delay = selfId > p.id ? (pairFenceDelayMs ?? timing.lease / 2) : 0
        let due = max(lostAt, engineQuorateSince) + max(timing.lease, pairSettleMs) + delay
        if let j = pairFence, !j.running, pairFenceTarget == p.id { return max(due, j.retryAt) }
        return due
    }

    /// Fences the lost other node when due (see above), and retries after a failure.
    mutating func updatePairFencing(now: UInt64, out: inout [Directive]) {
        guard let p = pairPeerLost(), let due = pairFenceDue(), resourceSet.fencing.covers(p.name) else {
            if pairFence?.running != true { pairFence = nil; pairFenceTarget = nil }
            return
        }
        var j = pairFence ?? FenceJob(reason: "lost (two-node cluster: fenced before anything it ran moves)")
        guard !j.running, now >= due else { return }
        j.targetIncarnation = p.incarnation
        j.running = true
        j.attempts += 1
        pairFence = j
        pairFenceTarget = p.id
        out.append(.fence(target: p.id, name: p.name, reason: j.reason))
        announce(FenceRecord(target: p.name, targetIncarnation: j.targetIncarnation, outcome: .begun, device: "", by: selfName, reason: j.reason), out: &out)
    }

    /// What a quorate node of a pair without a coordinator waits for, for `hactl status`.
    func pairWaitDetail(now: UInt64) -> String? {
        guard cluster.isCorosyncPair, engineQuorate, let p = pairPeerLost(), !isFenced(p.id), !pairPeerLeftCleanly(p) else { return nil }
        let head = "two-node cluster: \(p.name) is lost and nothing moves before it is fenced"
        guard resourceSet.fencing.covers(p.name) else { return head + "; no fence device covers it: hactl fence confirm \(p.name) once it is off" }
        if let j = pairFence, pairFenceTarget == p.id {
            return head + (j.running ? " (fencing now)" : " (attempt \(j.attempts) failed\(j.lastError.map { ": \($0)" } ?? ""); retrying)")
        }
        return head + (pairFenceDue().map { $0 > now ? " (fencing in \(($0 - now + 999) / 1000) s)" : "" } ?? "")
    }
}
