/// The holder's side of the coordinator's authority, and the glue between the engine and its
/// `SupportLedger` (peer-supported leases).
extension Engine {
    // MARK: - authority (holder side)

    mutating func handleAuthority(from sender: NodeID, _ h: Heartbeat, now: UInt64) {
        guard h.isCoordinator else {
            if authority == sender { authority = nil; clearAssignments() }
            return
        }
        guard !isCoordinator else { return }
        // A heartbeat of our coordinator that grants nothing, or whose assignments we cannot
        // apply, suspends the grant we hold: it was recorded (our next report echoes it, and the
        // coordinator may count that report as releasing what it no longer assigns us), so the
        // older assignments must not be acted on any longer. What runs here keeps running; the
        // acknowledged revision stays, so the coordinator sends its assignments again.
        guard h.leaseMs > 0, h.echoIncarnation == incarnation, h.echo <= now else {
            if authority == sender { authorityUntil = 0 }
            return
        }
        let inc = peers[sender]?.incarnation ?? 0
        var assignments = h.assignments
        if !h.assignmentsIncluded {
            // A coordinator sends its assignments only until we acknowledged their revision: these
            // are the ones we hold. If we do not hold them (we dropped them since), this heartbeat
            // grants nothing; our acknowledgement tells the coordinator to send them again.
            // Paged assignments (too many for the heartbeat) come from their assembled pages.
            if authority == sender, authorityIncarnation == inc, authorityRev == h.assignmentsRev {
                assignments = authorityAssignments
            } else if let p = pagedAssignments[sender], p.incarnation == inc, p.rev == h.assignmentsRev {
                assignments = p.value
            } else {
                if authority == sender { authorityUntil = 0 }
                return
            }
        }
        // A new coordinator counts only reports that answer its own heartbeats: answer at once.
        if authority != sender { urgent = true }
        authority = sender
        // Assignments made for an older epoch of ours are void: what a coordinator assigned to
        // that epoch may have been given away after a majority withdrew it.
        guard h.assigneeEpoch == ledger.epoch else {
            clearAssignments()
            return
        }
        authorityAssignments = assignments
        takeMigrationOrders(h.migration)
        authorityIncarnation = inc
        authorityRev = h.assignmentsRev
        authorityUntil = h.echo + UInt64(h.leaseMs)
    }

    /// The membership engine says whether this node is in a quorate partition (Corosync: the
    /// connection is up and votequorum says quorate). Saying no ends the lease at once: what
    /// runs here is released and the guardian removes the addresses, without waiting for the
    /// peers' support to run out (a node that lost Corosync cannot know what the others see).
    /// Saying yes only lets the peers' support count again: a lease still needs a majority.
    public mutating func membershipQuorate(_ quorate: Bool, now: UInt64) -> [Directive] {
        guard quorate != engineQuorate else { return [] }
        engineQuorate = quorate
        if quorate { engineQuorateSince = now }
        urgent = true
        var out: [Directive] = []
        return evaluate(now: now, out: &out)
    }

    /// Forget the coordinator's assignments (and so stop acknowledging their revision).
    mutating func clearAssignments() {
        authorityAssignments = [:]
        takeMigrationOrders([])
        authorityRev = 0
        authorityUntil = 0
    }

    /// When the guardian removes this node's addresses if the lease is not renewed: half the
    /// margin after `clusterd` itself should have let go, half the margin before the lease ends.
    public var guardianDeadline: UInt64 {
        leaseUntil == UInt64.max ? UInt64.max : leaseUntil + timing.guardTime / 2
    }

    /// We may start what a coordinator assigns: our own, or one whose term still covers us.
    func authorityValid(now: UInt64) -> Bool { isCoordinator || (authority != nil && now < authorityUntil) }

    // MARK: - leases

    /// Nodes that a majority (ourselves included, by the latest reports of our members) has no
    /// two-way contact with. Only for those do we start withdrawing support: loss between one
    /// pair of nodes must not cost a node a supporter for good.
    func lostByMajority(_ x: NodeID) -> Bool {
        var count = isMember(x) ? 0 : 1
        for p in peers.values where p.id != x && p.member {
            guard let r = p.report else { continue }
            if !r.members.contains(x) || (r.withdrawals[x].map { $0 >= ledger.highestSeen(x) } ?? false) { count += 1 }
        }
        return count >= cluster.majority
    }

    mutating func updateLeases(now: UInt64, out: inout [Directive]) {
        // (Every loop round: no set is built while every peer is a member, the usual case.)
        let view = membership  // (a copy the closure may read while the ledger changes)
        var lost: [NodeID] = []
        for id in view.peerIds where !view.isMember(id) && lostByMajority(id) { lost.append(id) }
        for e in ledger.update(now: now, member: { view.isMember($0) }, lostByMajority: { lost.contains($0) }) {
            switch e {
            case .ceasing(let id): out.append(.event(.supportCeasing(name(of: id))))
            case .resumed(let id): out.append(.event(.supportResumed(name(of: id))))
            case .withdrew(let id, let upTo): out.append(.event(.supportWithdrawn(name(of: id), epoch: upTo)))
            }
            urgent = true
        }
        var end = ledger.leaseEnd(majority: cluster.majority)
        // A Corosync pair: votequorum (with its quorum device) says whether this node keeps
        // running, and nothing of this node moves to the other before this node is fenced or
        // confirmed its release (see EnginePair.swift), so the lease lasts while the loop runs.
        if cluster.isCorosyncPair && engineQuorate {
            end = max(end == UInt64.max ? 0 : end, now + ledger.params.promiseOnHolder)
        }
        leaseUntil = !engineQuorate ? 0 : (end == UInt64.max ? end : end - min(end, timing.guardTime))
        // A withdrawn epoch can never be supported again: take a new one once nothing runs here.
        if ledger.currentEpochWithdrawn && local.isEmpty && now >= leaseUntil {
            ledger.newEpoch()
            clearAssignments()
            out.append(.event(.newEpoch(ledger.epoch)))
            urgent = true
        }
        // The coordinator we know stays known while it is a member; only its authority to
        // start things lapses with its term (so lost heartbeats are not coordinator changes).
        if let a = authority, a != selfId, !isMember(a) {
            authority = nil
            clearAssignments()
        }
    }

    /// Coordinator: a majority of nodes withdrew `z` up to the newest epoch of it anyone reported,
    /// counting only reports that answer something we sent while in office.
    func withdrawnByMajority(_ z: NodeID, since officeSince: UInt64) -> Bool {
        var e = max(ledger.highestSeen(z), peers[z]?.report?.epoch ?? 0)
        var fresh: [Heartbeat] = []
        for p in peers.values where p.id != z && p.member {
            guard let r = p.report, r.echoIncarnation == incarnation, r.echo >= officeSince else { continue }
            fresh.append(r)
            e = max(e, r.epochsSeen[z] ?? 0)
        }
        var count = (ledger.withdrawn(z).map { $0 >= e } ?? false) ? 1 : 0
        for r in fresh where (r.withdrawals[z].map { $0 >= e } ?? false) { count += 1 }
        return count >= cluster.majority
    }

}
