/// Membership (two-way contact per peer and link) and the election (exclusive, time-bounded votes).
extension Engine {
    mutating func updateMembership(now: UInt64, out: inout [Directive]) {
        for c in membership.update(now: now) {
            switch c {
            case .linkUp(let peer, let l): out.append(.event(.linkUp(peer, cluster.links[l].name)))
            case .linkDown(let peer, let l): out.append(.event(.linkDown(peer, cluster.links[l].name)))
            case .joined(let peer):
                out.append(.event(.peerJoined(peer)))
                // A partition healed: tell switches again where our addresses are.
                for r in held.sorted() { out.append(.announce(r)) }
                urgent = true
            case .lost(let peer):
                out.append(.event(.peerLost(peer)))
                urgent = true
            }
        }
    }

    func isMember(_ id: NodeID) -> Bool { id == selfId || (peers[id]?.member ?? false) }

    /// The lowest-id data member that is not leaving (we ourselves unless we leave or are a
    /// witness); nil: none. A witness votes but is never elected.
    func candidate() -> NodeID? {
        var best: NodeID? = leaving || fencedOut || isWitness ? nil : selfId
        for p in peers.values where p.member && !witnesses.contains(p.id) && !(p.report?.leaving ?? false) && best.map({ p.id < $0 }) ?? true { best = p.id }
        return best
    }

    mutating func updateVote(now: UInt64, out: inout [Directive]) {
        let v = election.votedFor
        let current = v.flatMap { v in v == selfId ? nil : peers[v] }.map {
            Election.Current(member: $0.member, coordinates: $0.report?.isCoordinator ?? false,
                             leaving: $0.report?.leaving ?? false, lastReceived: $0.peerSentAtReceivedAt)
        }
        if election.updateVote(now: now, candidate: candidate(), current: current) { urgent = true }
    }

    mutating func updateCoordinator(now: UInt64, out: inout [Directive]) {
        var echoes: [UInt64] = []
        for p in peers.values {
            // (Fields read in place: binding the report would copy every list and map of it.)
            guard p.report?.vote == selfId, p.report?.echoIncarnation == incarnation, let echo = p.report?.echo,
                  p.member || (p.lastHeard.map { now < $0 + timing.timeout } ?? false) else { continue }
            echoes.append(echo)
        }
        // A Corosync pair: the other node, lost and fenced (or gone after a clean stop), votes for
        // the side votequorum keeps quorate (see EnginePair.swift).
        if engineQuorate, let p = pairPeerLost(), isFenced(p.id) || pairPeerLeftCleanly(p) { echoes.append(now) }
        let change = election.updateTerm(now: now, ballotEchoes: echoes)
        if change != .none {
            urgent = true
            // Orders of the previous coordinator end with the change (ours are our office's).
            takeMigrationOrders([])
            if change == .elected {
                office = CoordinatorOffice(since: now, guardTime: timing.guardTime)
                out.append(.event(.becameCoordinator))
            } else {
                office = nil
                out.append(.event(.resignedCoordinator))
            }
        }
        if isCoordinator {
            authority = selfId
            authorityUntil = election.termEnd
        } else if authority == selfId {
            authority = nil
            authorityUntil = 0
        }
        let quorate = now < leaseUntil
        if quorate != wasQuorate {
            wasQuorate = quorate
            out.append(.event(quorate ? .quorumGained : .quorumLost))
        }
        let coord = isCoordinator ? selfId : authority
        if coord != lastCoordinatorSeen {
            lastCoordinatorSeen = coord
            out.append(.event(.coordinatorChanged(coord.map { name(of: $0) })))
        }
    }

}
