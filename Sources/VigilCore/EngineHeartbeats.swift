/// What this node tells its peers, every interval: the heartbeat (see `Heartbeat` for what
/// travels only until acknowledged).
extension Engine {
    /// Rebuilds the published facts if something they list changed; a new revision only if the
    /// lists differ.
    mutating func refreshFacts() {
        guard factsDirty else { return }
        factsDirty = false
        var f = Heartbeat(sentAt: 0)
        f.held = local.keys.sorted()
        f.started = f.held.filter { local[$0] == .started }
        f.blocked = f.held.filter { local[$0] == .blocked }
        f.failed = failed.keys.sorted()
        f.fatal = fatal.keys.sorted()
        f.probingResources = probePending.sorted()
        if facts.factsRev == 0 || !f.sameFacts(as: facts) {
            f.factsRev = facts.factsRev + 1
            facts = f
            factsSize = f.factsWireSize
            factsPages = []
        }
    }

    /// The heartbeat of the rhythm, to every peer; late peers are asked to answer at once.
    mutating func sendHeartbeats(now: UInt64, out: inout [Directive]) {
        let ask = peersToAsk(now: now)
        replyDue = []
        send(to: membership.peerIds, asking: ask, offBeat: false, now: now, out: &out)
    }

    /// Late peers not asked within the last `retry` ms.
    func peersToAsk(now: UInt64) -> Set<NodeID> {
        var ask: Set<NodeID> = []
        for p in peers.values where isLate(p, now: now) && now >= (lastAskedAt[p.id] ?? 0) + timing.retry { ask.insert(p.id) }
        return ask
    }

    /// Between heartbeats of the rhythm: answers to peers that asked, and questions to peers that
    /// are late (each asked again every `retry` ms while late).
    mutating func sendOffBeat(now: UInt64, out: inout [Directive]) {
        let ask = peersToAsk(now: now)
        guard !ask.isEmpty || !replyDue.isEmpty else { return }
        let to = ask.union(replyDue).sorted()
        replyDue = []
        send(to: to, asking: ask, offBeat: true, now: now, out: &out)
    }

    /// A peer is late while it is plausibly alive (heard within the timeout) but unheard for longer
    /// than an interval and the retry spacing, or its latest echo of our clock is older than two
    /// intervals and the retry spacing (in step, an echo is at most two intervals old: it answers
    /// our previous heartbeat). Both windows close at the timeout: a peer that stays silent, or
    /// hears us no more, is asked no more often than the rhythm.
    /// (At most two windows, without an array: this runs for every peer on every loop round.)
    func lateWindows(_ p: PeerState) -> (hearing: Window?, echo: Window?) {
        guard let heard = p.lastHeard else { return (nil, nil) }
        let hearing = Window(from: heard + timing.interval + timing.retry, until: heard + timing.timeout)
        guard p.report?.echoIncarnation == incarnation, let echo = p.report?.echo, echo > 0 else { return (hearing, nil) }
        return (hearing, Window(from: echo + 2 * timing.interval + timing.retry, until: echo + timing.timeout))
    }

    struct Window { var from: UInt64; var until: UInt64 }

    func isLate(_ p: PeerState, now: UInt64) -> Bool {
        let w = lateWindows(p)
        func inside(_ x: Window?) -> Bool { x.map { now >= $0.from && now < $0.until } ?? false }
        return inside(w.hearing) || inside(w.echo)
    }

    /// When the next question to `p` is due (for `nextDeadline`), if any.
    func nextQuestion(to p: PeerState, now: UInt64) -> UInt64? {
        let again = (lastAskedAt[p.id] ?? 0) + timing.retry
        var best: UInt64?
        func consider(_ w: Window?) {
            guard let w else { return }
            let t = max(w.from, again, now + 1)
            if t < w.until, best.map({ t < $0 }) ?? true { best = t }
        }
        let w = lateWindows(p)
        consider(w.hearing)
        consider(w.echo)
        return best
    }

    mutating func send(to targets: [NodeID], asking ask: Set<NodeID>, offBeat: Bool, now: UInt64, out: inout [Directive]) {
        refreshFacts()
        let members = membership.members
        // Each node is told only its own assignments: the heartbeat does not grow with what the
        // rest of the cluster runs.
        let withdrawals = ledger.withdrawals
        let seen = ledger.epochsSeen
        if isCoordinator, var o = office {
            office = nil  // mutate a unique copy
            o.refreshSent(serial: &assignmentSerial, peers: peers.keys)
            office = o
        }
        for id in targets {
            guard let p = peers[id] else { continue }
            // What this peer acknowledged of ours counts only if it answers our current life.
            let answers = p.report.map { $0.echoIncarnation == incarnation } ?? false
            // The authority to start what we assign never outlives our own term as coordinator.
            // The peer counts it from its own `sentAt` we echo (`echo + leaseMs` on its clock), and
            // sent that before we received it: counted from that receipt, it ends by our term's end
            // (up to the clocks' rate error and millisecond rounding, which the guard time covers).
            // (Counted from now, as it was, it lost the time since that receipt: a round when we
            // send first, and with the peer's echo of our term also a round old, the grant came
            // to `lease - guard - 2 * interval`, about one interval at the defaults. One lost
            // heartbeat of ours let it lapse, every round above 110 ms intervals.)
            var leaseMs: UInt32 = 0
            let heardAt = p.peerSentAt.echoed > 0 ? min(now, p.peerSentAtReceivedAt) : 0
            if isCoordinator && p.member && election.termEnd > now && heardAt > 0 {
                leaseMs = UInt32(min(timing.lease - min(timing.guardTime, timing.lease), election.termEnd - heardAt))
            }
            var h = Heartbeat(
                sentAt: PeerTime(sentBy: now), echoIncarnation: p.incarnation, echo: p.peerSentAt.echoed, vote: votedFor,
                isCoordinator: isCoordinator, leaseMs: leaseMs, leaving: leaving || fencedOut,
                configVersion: resources.version, configDigest: resources.digest, members: members)
            h.configCommitted = resources.committed
            h.factsRev = facts.factsRev
            if answers && p.report?.factsAck == facts.factsRev {
                h.factsIncluded = false
            } else {
                h.copyFacts(from: facts)
            }
            // We hold the facts of the revision in the peer's latest report (never a report
            // whose facts we did not have).
            h.factsAck = p.report?.factsRev ?? 0
            if isCoordinator, let sent = office?.sent[id] {
                h.assignmentsRev = sent.rev
                if answers && p.report?.assignmentsAck == sent.rev {
                    h.assignmentsIncluded = false
                } else {
                    h.assignments = sent.assignments
                }
            }
            if id == authority && authorityIncarnation == p.incarnation { h.assignmentsAck = authorityRev }
            h.probing = !probePending.isEmpty
            h.epoch = ledger.epoch
            let echo = ledger.echo(for: id)
            h.supportEpoch = echo.epoch
            h.supportEcho = echo.sentAt.echoed
            h.refusedEpoch = ledger.refused(id)
            if isCoordinator { h.assigneeEpoch = p.report?.epoch ?? 0 }
            h.withdrawals = withdrawals
            h.epochsSeen = seen
            h.offBeat = offBeat
            h.migration = migrationLines(to: id)
            if ask.contains(id) {
                h.wantsReply = true
                lastAskedAt[id] = now
            }
            // (Only when something sizeable travels: most heartbeats carry neither.)
            if (h.factsIncluded && factsSize > 2) || (h.assignmentsIncluded && !h.assignments.isEmpty) { pageIfLarge(&h, to: id, out: &out) }
            out.append(.send(to: id, .heartbeat(h)))
        }
    }

    /// Facts or assignments that would make the heartbeat larger than `Message.heartbeatBudget`
    /// go out as pages just before it (see `StatePage`), and the heartbeat names only their
    /// revision.
    mutating func pageIfLarge(_ h: inout Heartbeat, to id: NodeID, out: inout [Directive]) {
        var bare = h
        bare.factsIncluded = false
        bare.assignmentsIncluded = false
        let base = Message.heartbeat(bare).encodePayload().count
        let assignmentsSize = h.assignmentsIncluded ? Heartbeat.assignmentsWireSize(h.assignments) : 0
        let inlineFacts = h.factsIncluded ? factsSize : 0
        guard base + inlineFacts + assignmentsSize > Message.heartbeatBudget else { return }
        // Page as little as makes it fit: one of the two if that is enough (the larger if
        // either is), else both.
        var pageFacts = h.factsIncluded
        var pageAssignments = h.assignmentsIncluded
        let fitsWithoutFacts = base + assignmentsSize <= Message.heartbeatBudget
        let fitsWithoutAssignments = base + inlineFacts <= Message.heartbeatBudget
        if pageFacts && pageAssignments && fitsWithoutFacts && fitsWithoutAssignments {
            if inlineFacts >= assignmentsSize { pageAssignments = false } else { pageFacts = false }
        } else if pageFacts && fitsWithoutFacts {
            pageAssignments = false
        } else if pageAssignments && fitsWithoutAssignments {
            pageFacts = false
        }
        if pageFacts {
            if factsPages.first?.rev != facts.factsRev {
                factsPages = StatePage.paginate(.facts, rev: facts.factsRev, entries: facts.factEntries)
            }
            for p in factsPages { out.append(.send(to: id, .statePage(p))) }
            h.factsIncluded = false
            h.setFacts([])
        }
        if pageAssignments {
            let entries = h.assignments.keys.sorted().compactMap { k in h.assignments[k].map { StatePage.Entry(name: k, value: $0.rawValue) } }
            for p in StatePage.paginate(.assignments, rev: h.assignmentsRev, entries: entries) { out.append(.send(to: id, .statePage(p))) }
            h.assignmentsIncluded = false
            h.assignments = [:]
        }
    }

    /// The node whose heartbeats ours follow in phase: our coordinator while it is a member, else
    /// the lowest-id member below us (none for the coordinator and the lowest-id member).
    var phaseReference: NodeID? {
        if isCoordinator { return nil }
        if let a = authority, a != selfId, membership.isMember(a) { return a }
        var best: NodeID?
        for p in peers.values where p.member && p.id < selfId && best.map({ p.id < $0 }) ?? true { best = p.id }
        return best
    }

    /// `nextDeadline` and `guardianDeadline` as the shell's loop reads them, every round: a
    /// mutating call reads the engine where the shell keeps it, where a non-mutating one on an
    /// engine stored in a class first copies all of it (a retain and a release for each of its
    /// many collections).
    public mutating func nextDeadlineInPlace(now: UInt64) -> UInt64 { nextDeadline(now: now) }
    public mutating func guardianDeadlineInPlace() -> UInt64 { guardianDeadline }

    /// The next instant at which `tick` has something to do: the next heartbeat, or earlier when
    /// a lease, a vote, a term, a membership or a withdrawal runs out. The shell sleeps until
    /// then (or until a packet arrives) instead of polling.
    public func nextDeadline(now: UInt64) -> UInt64 {
        var d = nextHeartbeatAt
        func consider(_ t: UInt64) { if t > now && t < d { d = t } }
        if !local.isEmpty { consider(leaseUntil) }
        consider(authorityUntil)
        if let o = office {
            consider(o.startBarrier)
            consider(o.nextRound)
            if o.factsChanged { consider(o.lastRound + placementSpacing) }
        }
        // (Only a monitor still running when it came due again leaves the earliest in the past.)
        if monitorNext > now { consider(monitorNext) } else { for t in monitorDue.values { consider(t) } }
        for t in failureExpiry.values { consider(t) }
        consider(election.blockedUntil)
        if cluster.isCorosyncPair, let t = pairFenceDue() { consider(t) }
        consider(election.termEnd)
        consider(leftoverGraceUntil)
        consider(ledger.quietUntil)
        for p in peers.values {
            if let h = p.lastHeard { consider(h + timing.timeout) }
            for case let h? in p.linkLastHeard { consider(h + timing.timeout) }
            if p.report?.echoIncarnation == incarnation, let echo = p.report?.echo {
                consider(echo + timing.timeout)
                consider(echo + timing.lease - min(timing.guardTime, timing.lease))
            }
            if let t = nextQuestion(to: p, now: now) { consider(t) }
        }
        for p in ledger.peers.values where p.ceasing { consider(p.acceptedAt + ledger.params.promiseOnSupporter) }
        // At or before `now`: a heartbeat is due now (a tick sends it and moves the deadline on).
        return d
    }
}
