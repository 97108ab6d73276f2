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
        }
    }

    mutating func sendHeartbeats(now: UInt64, out: inout [Directive]) {
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
        for id in peers.keys.sorted() {
            guard let p = peers[id] else { continue }
            // What this peer acknowledged of ours counts only if it answers our current life.
            let answers = p.report.map { $0.echoIncarnation == incarnation } ?? false
            // The authority to start what we assign never outlives our own term as coordinator.
            var leaseMs: UInt32 = 0
            if isCoordinator && p.member && election.termEnd > now {
                leaseMs = UInt32(min(timing.lease - min(timing.guardTime, timing.lease), election.termEnd - now))
            }
            var h = Heartbeat(
                sentAt: PeerTime(sentBy: now), echoIncarnation: p.incarnation, echo: p.peerSentAt.echoed, vote: votedFor,
                isCoordinator: isCoordinator, leaseMs: leaseMs, leaving: leaving,
                configVersion: resources.version, configDigest: resources.digest, members: members)
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
            out.append(.send(to: id, .heartbeat(h)))
        }
    }
}
