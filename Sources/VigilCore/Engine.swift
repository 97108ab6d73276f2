/// The deterministic heart of a node: membership, quorum, coordinator election,
/// leases, placement and configuration replication. No I/O, no clock of its own:
/// every input carries `now` (milliseconds of a monotonic clock) and every effect
/// is returned as a `Directive` for the shell to carry out, in order.
///
/// ## Safety argument (why two nodes never run the same address)
///
/// 1. **Bidirectional liveness.** Every heartbeat echoes the latest timestamp the sender
///    received from the recipient. A node counts a peer as a member only if it heard the peer
///    within `timeout` *and* the peer's latest heartbeat echoes one of our own timestamps from
///    within `timeout`. If A hears B but B does not hear A, neither counts the other.
///
/// 2. **Exclusive votes.** Each node votes for at most one coordinator candidate (the lowest
///    member id, sticking to a living coordinator). A vote is counted by the candidate only until
///    `echo + lease - guard` on the candidate's own clock, where `echo` is the candidate's timestamp
///    that the vote message carried; the voter received that timestamp no earlier than it was sent,
///    so the voter, which refuses to vote for anyone else until `lastReceivedFromCandidate + lease + guard`,
///    always honours the vote for longer than the candidate counts it.
///    A node is coordinator while it counts a majority of votes (its own included). Majorities
///    intersect, so at any instant at most one node believes it is coordinator: asymmetric links can
///    make a node vote for someone who never hears it, which only costs liveness, never safety.
///
/// 3. **Node leases.** A node runs resources only while it holds a lease: the coordinator's
///    heartbeat grants it, echoing the node's timestamp `e`, valid until `e + d` on the node's
///    clock, where `d = min(lease - guard, coordinatorUntil - now)`: no lease outlives the term of
///    the coordinator that granted it. The coordinator knows the lease of node Z can last at most until
///    `receivedAt(e) + lease + guard` on its own clock (`leaseExpiry[Z]`). When Z goes silent the
///    coordinator stops granting (it only grants to members), so Z's lease runs out at
///    most `lease` after its last heartbeat reached the coordinator, and Z stops its resources then
///    (`no_quorum_policy = stop`).
///
/// 4. **Moves.** To move resource R from Z to Y the coordinator first withdraws R from its published
///    assignments, then assigns it to Y only once every other node is *clear*: it either reported
///    not holding R in a heartbeat echoing a timestamp at or after the withdrawal, or its lease
///    (`leaseExpiry`) has run out.
///
/// 5. **New coordinator.** The previous coordinator's term (the need-th latest expiry among the
///    votes it counts) includes a vote from at least one node of the new majority, and that node
///    voted anew only after the old vote had expired; so every lease the previous coordinator
///    granted ended before the new one took office. A new coordinator still rebuilds its picture
///    from every node's `held` report (including addresses found after a restart) and keeps
///    resources where they run; it starts nothing new within `guard` of taking office.
public struct Engine: Sendable {
    public enum Directive: Equatable, Sendable {
        case send(to: UInt32, Message)
        case start(String)
        case stop(String)
        /// Re-announce a held address (partition healed).
        case announce(String)
        case persist(VersionedResources)
        case adoptResources(ResourceSet)
        case reply(requestId: UInt64, ok: Bool, version: UInt64, message: String)
        case event(EngineEvent)
    }

    public struct PeerState: Sendable {
        public var id: UInt32
        public var name: String
        public var linkLastHeard: [UInt64?]
        public var linkUp: [Bool]
        public var lastHeard: UInt64?
        public var incarnation: UInt64 = 0
        public var lastSeq: UInt64 = 0
        /// Peer's latest `sentAt` and when we received it.
        public var peerSentAt: UInt64 = 0
        public var peerSentAtReceivedAt: UInt64 = 0
        public var report: Heartbeat?
        public var member = false
        /// Coordinator's conservative bound on this peer's lease.
        public var leaseExpiry: UInt64 = 0
    }

    public let cluster: ClusterConfig
    public let selfId: UInt32
    public let selfName: String
    public let incarnation: UInt64
    public var timing: Timing { cluster.timing }

    public private(set) var peers: [UInt32: PeerState] = [:]
    public private(set) var resources: VersionedResources
    public private(set) var resourceSet: ResourceSet

    // Voting and coordination
    public private(set) var votedFor: UInt32 = 0
    private var voteBlockedUntil: UInt64 = 0
    public private(set) var isCoordinator = false
    private var coordinatorUntil: UInt64 = 0
    private var officeSince: UInt64 = 0
    private var startBarrier: UInt64 = 0
    public private(set) var votesForSelf = 0
    /// Coordinator: published assignments.
    public private(set) var placement: [String: UInt32] = [:]
    private var withdrawnAt: [String: UInt64] = [:]
    public private(set) var waitingReason: [String: String] = [:]

    // Holder side
    public private(set) var leaseUntil: UInt64 = 0
    public private(set) var authority: UInt32 = 0
    private var authorityAssignments: [String: UInt32] = [:]
    public private(set) var held: Set<String> = []
    public private(set) var failed: [String: String] = [:]
    private var startedAt: UInt64
    private var leftoverGraceUntil: UInt64
    public private(set) var leaving = false
    private var hadLease = false
    private var everHadLease = false
    /// Resources found running at start-up; kept (not started, not stopped) until the first
    /// lease tells us whether they stay here, or until the grace period ends.
    private var leftovers: Set<String> = []
    private var wasQuorate = false
    private var lastCoordinatorSeen: UInt32 = 0

    // Heartbeats and config
    private var nextHeartbeatAt: UInt64 = 0
    private var urgent = false
    private var configRequestedAt: UInt64 = 0
    private var rejectedDigests: Set<UInt64> = []
    private struct PendingCommit { var requestId: UInt64; var origin: UInt32; var version: UInt64; var digest: UInt64; var deadline: UInt64 }
    private var pendingCommits: [PendingCommit] = []
    private struct ForwardedRequest { var requestId: UInt64; var deadline: UInt64 }
    private var forwarded: [ForwardedRequest] = []

    public init(cluster: ClusterConfig, selfId: UInt32, incarnation: UInt64, resources: VersionedResources, resourceSet: ResourceSet, now: UInt64) {
        self.cluster = cluster
        self.selfId = selfId
        self.selfName = cluster.node(id: selfId)?.name ?? "node\(selfId)"
        self.incarnation = incarnation
        self.resources = resources
        self.resourceSet = resourceSet
        self.startedAt = now
        self.leftoverGraceUntil = now + cluster.timing.timeout + cluster.timing.lease
        for n in cluster.nodes where n.id != selfId {
            peers[n.id] = PeerState(
                id: n.id, name: n.name, linkLastHeard: Array(repeating: nil, count: cluster.links.count),
                linkUp: Array(repeating: false, count: cluster.links.count))
        }
        nextHeartbeatAt = now
    }

    func name(of id: UInt32) -> String { id == selfId ? selfName : (peers[id]?.name ?? "node\(id)") }

    // MARK: - inputs

    /// A packet that passed authentication and the replay window of its link.
    public mutating func receive(from sender: UInt32, link: Int, incarnation inc: UInt64, seq: UInt64, message: Message, now: UInt64) -> [Directive] {
        guard var p = peers[sender] else { return [] }
        var out: [Directive] = []
        if inc < p.incarnation { return [] }  // an older life of that node: stale
        if inc > p.incarnation {
            // The peer restarted: forget what its previous life told us.
            p.incarnation = inc
            p.lastSeq = 0
            p.report = nil
            p.peerSentAt = 0
        }
        if link >= 0 && link < p.linkLastHeard.count { p.linkLastHeard[link] = now }
        p.lastHeard = now
        // The same packet arrives once per link: apply state only from the newest.
        guard seq > p.lastSeq else {
            peers[sender] = p
            return evaluate(now: now, out: &out)
        }
        p.lastSeq = seq
        peers[sender] = p
        switch message {
        case .heartbeat(let h):
            p.peerSentAt = h.sentAt
            p.peerSentAtReceivedAt = now
            p.report = h
            peers[sender] = p
            handleAuthority(from: sender, h, now: now)
            if (h.configVersion != resources.version || h.configDigest != resources.digest),
                !rejectedDigests.contains(h.configDigest),
                VersionedResources(version: h.configVersion, text: "").withDigest(h.configDigest).isNewer(than: resources),
                now >= configRequestedAt + timing.interval
            {
                configRequestedAt = now
                out.append(.send(to: sender, .configRequest(version: h.configVersion)))
            }
        case .configRequest:
            out.append(.send(to: sender, .configData(version: resources.version, text: resources.text)))
        case .configData(let version, let text):
            adoptConfig(VersionedResources(version: version, text: text), from: sender, out: &out)
        case .configProposal(let requestId, let text):
            handleProposal(requestId: requestId, origin: sender, text: text, now: now, out: &out)
        case .configResult(let requestId, let ok, let version, let msg):
            if let i = forwarded.firstIndex(where: { $0.requestId == requestId }) {
                forwarded.remove(at: i)
                out.append(.reply(requestId: requestId, ok: ok, version: version, message: msg))
            }
        }
        return evaluate(now: now, out: &out)
    }

    public mutating func tick(now: UInt64) -> [Directive] {
        var out: [Directive] = []
        return evaluate(now: now, out: &out)
    }

    /// The shell finished starting a resource.
    public mutating func resourceStarted(_ name: String, now: UInt64) -> [Directive] {
        var out: [Directive] = [.event(.resourceStarted(name))]
        return evaluate(now: now, out: &out)
    }

    /// A start failed, a monitor found the resource broken, or its interface went down.
    public mutating func resourceFailed(_ name: String, reason: String, now: UInt64) -> [Directive] {
        var out: [Directive] = []
        failed[name] = reason
        if held.remove(name) != nil { out.append(.stop(name)) }
        out.append(.event(.resourceFailed(name, reason)))
        urgent = true
        return evaluate(now: now, out: &out)
    }

    /// The condition behind a failure is gone (interface back up, failure expired, operator cleanup).
    public mutating func resourceRecovered(_ name: String, now: UInt64) -> [Directive] {
        var out: [Directive] = []
        if failed.removeValue(forKey: name) != nil {
            urgent = true
            out.append(.event(.resourceRecovered(name)))
        }
        return evaluate(now: now, out: &out)
    }

    /// At start-up the shell found a resource of ours still running (left behind by a crash).
    public mutating func foundLeftover(_ name: String, now: UInt64) -> [Directive] {
        held.insert(name)
        leftovers.insert(name)
        var out: [Directive] = [.event(.foundLeftover(name))]
        return evaluate(now: now, out: &out)
    }

    /// Graceful shutdown: stop everything, let the coordinator place it elsewhere.
    public mutating func beginLeaving(now: UInt64) -> [Directive] {
        leaving = true
        urgent = true
        var out: [Directive] = [.event(.leaving)]
        return evaluate(now: now, out: &out)
    }

    /// True once every resource this node ran is reported running elsewhere (or nobody can run it).
    public func handoverComplete(previouslyHeld: Set<String>) -> Bool {
        guard held.isEmpty else { return false }
        for r in previouslyHeld where resourceSet.ip(named: r) != nil {
            let elsewhere = peers.values.contains { $0.member && ($0.report?.held.contains(r) ?? false) }
            let eligibleExists = peers.values.contains { $0.member && !($0.report?.leaving ?? false) && !($0.report?.failed.contains(r) ?? false) }
            if !elsewhere && eligibleExists { return false }
        }
        return true
    }

    /// `hactl apply` on this node.
    public mutating func proposeConfig(requestId: UInt64, text: String, now: UInt64) -> [Directive] {
        var out: [Directive] = []
        // Validate locally first: a clear error without a round trip, nothing sent.
        do {
            _ = try ResourceSet.parse(text, file: "resources", cluster: cluster)
        } catch {
            return [.reply(requestId: requestId, ok: false, version: resources.version, message: error.description)]
        }
        if isCoordinator {
            handleProposal(requestId: requestId, origin: selfId, text: text, now: now, out: &out)
        } else if authority != 0, authority != selfId, now < leaseUntil {
            forwarded.append(ForwardedRequest(requestId: requestId, deadline: now + 5000))
            out.append(.send(to: authority, .configProposal(requestId: requestId, text: text)))
        } else {
            out.append(.reply(requestId: requestId, ok: false, version: resources.version,
                              message: "this node is not part of a quorate partition with a coordinator; nothing was changed"))
        }
        return evaluate(now: now, out: &out)
    }

    // MARK: - config replication

    private mutating func handleProposal(requestId: UInt64, origin: UInt32, text: String, now: UInt64, out: inout [Directive]) {
        func fail(_ msg: String) {
            if origin == selfId {
                out.append(.reply(requestId: requestId, ok: false, version: resources.version, message: msg))
            } else {
                out.append(.send(to: origin, .configResult(requestId: requestId, ok: false, version: resources.version, message: msg)))
            }
        }
        guard isCoordinator else { return fail("\(selfName) is no longer the coordinator; retry") }
        let newestKnown = peers.values.filter(\.member).compactMap { $0.report?.configVersion }.max() ?? 0
        guard resources.version >= newestKnown else {
            return fail("the coordinator is still synchronising configuration version \(newestKnown); retry in a moment")
        }
        let set: ResourceSet
        do {
            set = try ResourceSet.parse(text, file: "resources", cluster: cluster)
        } catch {
            return fail(error.description)
        }
        let next = VersionedResources(version: max(resources.version, newestKnown) + 1, text: text)
        resources = next
        resourceSet = set
        out.append(.persist(next))
        out.append(.adoptResources(set))
        out.append(.event(.configAdopted(next.version, from: name(of: origin))))
        pendingCommits.append(PendingCommit(requestId: requestId, origin: origin, version: next.version, digest: next.digest, deadline: now + 5000))
        urgent = true
    }

    private mutating func adoptConfig(_ candidate: VersionedResources, from sender: UInt32, out: inout [Directive]) {
        guard candidate.isNewer(than: resources), !rejectedDigests.contains(candidate.digest) else { return }
        do {
            let set = try ResourceSet.parse(candidate.text, file: "resources v\(candidate.version) from \(name(of: sender))", cluster: cluster)
            resources = candidate
            resourceSet = set
            out.append(.persist(candidate))
            out.append(.adoptResources(set))
            out.append(.event(.configAdopted(candidate.version, from: name(of: sender))))
            urgent = true
        } catch {
            rejectedDigests.insert(candidate.digest)
            out.append(.event(.configRejected(candidate.version, error.description)))
        }
    }

    private mutating func checkCommits(now: UInt64, out: inout [Directive]) {
        guard !pendingCommits.isEmpty else { return }
        var keep: [PendingCommit] = []
        for c in pendingCommits {
            let stored = 1 + peers.values.filter { $0.member && $0.report?.configVersion == c.version && $0.report?.configDigest == c.digest }.count
            var result: (Bool, String)?
            if resources.version != c.version || resources.digest != c.digest {
                result = (false, "superseded by version \(resources.version) before it was confirmed")
            } else if stored >= cluster.majority {
                result = (true, "applied as version \(c.version), stored on \(stored) of \(cluster.nodes.count) nodes")
            } else if now >= c.deadline {
                result = (false, "version \(c.version) is in force on the coordinator but only \(stored) of \(cluster.nodes.count) nodes confirmed storing it")
            }
            guard let (ok, msg) = result else {
                keep.append(c)
                continue
            }
            if c.origin == selfId {
                out.append(.reply(requestId: c.requestId, ok: ok, version: c.version, message: msg))
            } else {
                out.append(.send(to: c.origin, .configResult(requestId: c.requestId, ok: ok, version: c.version, message: msg)))
            }
        }
        pendingCommits = keep
        var fkeep: [ForwardedRequest] = []
        for f in forwarded {
            if now >= f.deadline {
                out.append(.reply(requestId: f.requestId, ok: false, version: resources.version, message: "no answer from the coordinator within 5 s; check 'hactl config show' before retrying"))
            } else {
                fkeep.append(f)
            }
        }
        forwarded = fkeep
    }

    // MARK: - authority (holder side)

    private mutating func handleAuthority(from sender: UInt32, _ h: Heartbeat, now: UInt64) {
        guard h.isCoordinator else {
            if authority == sender { authority = 0; authorityAssignments = [:] }
            return
        }
        guard !isCoordinator else { return }
        guard h.leaseMs > 0, h.echoIncarnation == incarnation else { return }
        let until = h.echo + UInt64(h.leaseMs)
        authority = sender
        authorityAssignments = h.assignments
        leaseUntil = until
    }

    // MARK: - the evaluation step

    private mutating func evaluate(now: UInt64, out: inout [Directive]) -> [Directive] {
        updateMembership(now: now, out: &out)
        updateVote(now: now, out: &out)
        updateCoordinator(now: now, out: &out)
        if isCoordinator { place(now: now, out: &out) }
        applyDesired(now: now, out: &out)
        checkCommits(now: now, out: &out)
        if now >= nextHeartbeatAt || urgent {
            urgent = false
            nextHeartbeatAt = now + timing.interval
            sendHeartbeats(now: now, out: &out)
        }
        return out
    }

    private mutating func updateMembership(now: UInt64, out: inout [Directive]) {
        let t = timing.timeout
        for id in peers.keys.sorted() {
            guard var p = peers[id] else { continue }
            let heard = p.lastHeard.map { now < $0 + t } ?? false
            for l in 0..<p.linkUp.count {
                let up = p.linkLastHeard[l].map { now < $0 + t } ?? false
                if up != p.linkUp[l] {
                    p.linkUp[l] = up
                    // A single dead link is worth telling; a whole node's loss is told once, below.
                    if up { out.append(.event(.linkUp(p.name, cluster.links[l].name))) } else if heard {
                        out.append(.event(.linkDown(p.name, cluster.links[l].name)))
                    }
                }
            }
            let echoed = p.report.map { $0.echoIncarnation == incarnation && now < $0.echo + t && $0.echo > 0 } ?? false
            let member = heard && echoed
            if member != p.member {
                p.member = member
                out.append(.event(member ? .peerJoined(p.name) : .peerLost(p.name)))
                if member {
                    // A partition healed: tell switches again where our addresses are.
                    for r in held.sorted() { out.append(.announce(r)) }
                }
                urgent = true
            }
            peers[id] = p
        }
    }

    private func isMember(_ id: UInt32) -> Bool { id == selfId || (peers[id]?.member ?? false) }

    private func candidate() -> UInt32 {
        var best = leaving ? UInt32.max : selfId
        for p in peers.values where p.member && !(p.report?.leaving ?? false) && p.id < best { best = p.id }
        return best == UInt32.max ? 0 : best
    }

    private mutating func updateVote(now: UInt64, out: inout [Directive]) {
        let cand = candidate()
        if votedFor != 0 && votedFor != selfId {
            let v = votedFor
            let p = peers[v]
            let alive = p?.member ?? false
            let theyCoordinate = p?.report?.isCoordinator ?? false
            // Stick to a living coordinator (or the candidate); otherwise release the vote, which
            // stays binding until the candidate can no longer count it.
            if !alive || (!theyCoordinate && cand != v) || (p?.report?.leaving ?? false) && !theyCoordinate {
                let lastRx = p?.peerSentAtReceivedAt ?? now
                voteBlockedUntil = max(voteBlockedUntil, lastRx + timing.lease + timing.guardTime)
                votedFor = 0
                urgent = true
            }
        } else if votedFor == selfId {
            // Our own vote is counted only by us, so it can move at once.
            // A coordinator keeps its own vote (also while leaving, so it can hand over).
            if cand != selfId && !isCoordinator {
                votedFor = 0
                urgent = true
            }
        }
        // A released vote stays binding until the candidate can no longer count it; this holds
        // for a vote for ourselves as much as for anyone else.
        if votedFor == 0 && now >= voteBlockedUntil {
            if cand == selfId {
                votedFor = selfId
                urgent = true
            } else if cand != 0 {
                votedFor = cand
                urgent = true
            }
        }
    }

    private mutating func updateCoordinator(now: UInt64, out: inout [Directive]) {
        var expiries: [UInt64] = []
        if votedFor == selfId {
            for p in peers.values {
                guard let r = p.report, r.vote == selfId, r.echoIncarnation == incarnation, p.member || (p.lastHeard.map { now < $0 + timing.timeout } ?? false) else { continue }
                let exp = r.echo + timing.lease
                let g = min(timing.guardTime, timing.lease)
                if exp - g > now { expiries.append(exp - g) }
            }
        }
        votesForSelf = votedFor == selfId ? 1 + expiries.count : 0
        let need = cluster.majority - 1
        let nowCoord = votedFor == selfId && expiries.count >= need
        if nowCoord {
            let sorted = expiries.sorted(by: >)
            coordinatorUntil = need == 0 ? UInt64.max : sorted[need - 1]
        }
        if nowCoord != isCoordinator {
            isCoordinator = nowCoord
            urgent = true
            if nowCoord {
                officeSince = now
                // Every lease the previous coordinator granted ended by its own term, which
                // ended before our majority could vote for us; the guard covers processing.
                startBarrier = now + timing.guardTime
                placement = [:]
                withdrawnAt = [:]
                out.append(.event(.becameCoordinator))
            } else {
                placement = [:]
                out.append(.event(.resignedCoordinator))
            }
        }
        if isCoordinator {
            authority = selfId
            leaseUntil = coordinatorUntil
        }
        let quorate = isCoordinator || now < leaseUntil
        if quorate != wasQuorate {
            wasQuorate = quorate
            out.append(.event(quorate ? .quorumGained : .quorumLost))
        }
        let coord = isCoordinator ? selfId : (now < leaseUntil ? authority : 0)
        if coord != lastCoordinatorSeen {
            lastCoordinatorSeen = coord
            out.append(.event(.coordinatorChanged(coord == 0 ? nil : name(of: coord))))
        }
    }

    /// Coordinator: can node `z` possibly run `r` right now?
    private func mayHold(_ z: UInt32, _ r: String, now: UInt64) -> Bool {
        if z == selfId { return held.contains(r) }
        guard let p = peers[z] else { return false }
        let leaseLive = now < max(p.leaseExpiry, startBarrier)
        guard leaseLive else {
            // No lease of ours or of a predecessor can still be valid there; if it reports the
            // resource anyway (a leftover after a restart) it is still counted.
            if p.member, let rep = p.report { return rep.held.contains(r) }
            return false
        }
        guard let rep = p.report else { return true }
        if rep.held.contains(r) { return true }
        let since = withdrawnAt[r].map { max($0, officeSince) } ?? officeSince
        return !(rep.echoIncarnation == incarnation && rep.echo >= since && p.member)
    }

    private func reportedHolders(_ r: String) -> [UInt32] {
        var out: [UInt32] = held.contains(r) ? [selfId] : []
        for p in peers.values where p.member && (p.report?.held.contains(r) ?? false) { out.append(p.id) }
        return out.sorted()
    }

    private func eligible(_ ip: FloatingIP) -> [UInt32] {
        var out: [UInt32] = []
        if !leaving && failed[ip.name] == nil && ip.interface(on: selfName) != nil { out.append(selfId) }
        for p in peers.values where p.member {
            guard let rep = p.report, !rep.leaving, !rep.failed.contains(ip.name), ip.interface(on: p.name) != nil else { continue }
            out.append(p.id)
        }
        return out
    }

    private func rank(_ id: UInt32, for ip: FloatingIP) -> (Int, UInt32) {
        let n = name(of: id)
        return (ip.preferred.firstIndex(of: n) ?? ip.preferred.count, id)
    }

    private mutating func place(now: UInt64, out: inout [Directive]) {
        var changed = false
        var reasons: [String: String] = [:]
        let names = Set(resourceSet.names)
        for r in placement.keys where !names.contains(r) {
            placement[r] = nil
            changed = true
        }
        for ip in resourceSet.ips {
            let r = ip.name
            let elig = eligible(ip)
            let holders = reportedHolders(r)
            let best = elig.min { rank($0, for: ip) < rank($1, for: ip) }
            var target: UInt32?
            if let c = placement[r], elig.contains(c) {
                target = c
            } else if let h = holders.filter({ elig.contains($0) }).min(by: { rank($0, for: ip) < rank($1, for: ip) }) {
                target = h  // keep it where it already runs
            } else {
                target = best
            }
            if ip.failback, let b = best, let t = target, rank(b, for: ip) < rank(t, for: ip) { target = b }

            if let c = placement[r], c != target {
                placement[r] = nil
                withdrawnAt[r] = now
                changed = true
                out.append(.event(.withdrawn(r, from: name(of: c))))
            }
            guard let t = target else {
                reasons[r] = "no eligible node"
                continue
            }
            if placement[r] == t { continue }
            let blockers = ([selfId] + Array(peers.keys)).filter { $0 != t && mayHold($0, r, now: now) }.sorted()
            let isNewStart = !holders.contains(t)
            if !blockers.isEmpty {
                let names = blockers.map { b -> String in
                    let exp = b == selfId ? 0 : max(peers[b]?.leaseExpiry ?? 0, startBarrier)
                    return exp > now ? "\(name(of: b)) (lease ends in \(exp - now) ms)" : name(of: b)
                }
                reasons[r] = "waiting for \(names.joined(separator: ", ")) to release it"
                continue
            }
            if isNewStart && now < startBarrier {
                reasons[r] = "new coordinator: waiting \(startBarrier - now) ms for earlier leases to end"
                continue
            }
            placement[r] = t
            changed = true
            out.append(.event(.placed(r, on: name(of: t))))
        }
        waitingReason = reasons
        if changed { urgent = true }
    }

    private mutating func applyDesired(now: UInt64, out: inout [Directive]) {
        let hasLease = now < leaseUntil
        if hasLease { everHadLease = true }
        if hasLease != hadLease {
            hadLease = hasLease
            if !hasLease { out.append(.event(.leaseLost(policy: cluster.noQuorumPolicy.rawValue))) }
        }
        var desired: Set<String>
        let assignments = isCoordinator ? placement : authorityAssignments
        if leaving {
            desired = []
        } else if hasLease {
            desired = Set(assignments.filter { $0.value == selfId }.map(\.key))
            desired.subtract(failed.keys)
            desired.formIntersection(resourceSet.names)
        } else if cluster.noQuorumPolicy == .freeze {
            desired = held  // start nothing, stop nothing
            desired.formIntersection(resourceSet.names)
        } else if !everHadLease && now < leftoverGraceUntil {
            desired = held.intersection(leftovers)  // start-up reconciliation window
            desired.formIntersection(resourceSet.names)
        } else {
            desired = []
        }
        // Stops first, so that a report of "not held" is only ever sent after the stop ran.
        for r in held.subtracting(desired).sorted() {
            held.remove(r)
            out.append(.stop(r))
            urgent = true
        }
        for r in desired.subtracting(held).sorted() {
            held.insert(r)
            out.append(.start(r))
            urgent = true
        }
    }

    private mutating func sendHeartbeats(now: UInt64, out: inout [Directive]) {
        let members = peers.values.filter(\.member).map(\.id).sorted()
        for id in peers.keys.sorted() {
            guard var p = peers[id] else { continue }
            // The lease never outlives our own term as coordinator.
            var leaseMs: UInt32 = 0
            if isCoordinator && p.member && coordinatorUntil > now {
                leaseMs = UInt32(min(timing.lease - min(timing.guardTime, timing.lease), coordinatorUntil - now))
            }
            if leaseMs > 0 {
                p.leaseExpiry = max(p.leaseExpiry, p.peerSentAtReceivedAt + timing.lease + timing.guardTime)
                peers[id] = p
            }
            let h = Heartbeat(
                sentAt: now, echoIncarnation: p.incarnation, echo: p.peerSentAt, vote: votedFor,
                isCoordinator: isCoordinator, leaseMs: leaseMs, leaving: leaving,
                configVersion: resources.version, configDigest: resources.digest,
                held: held.sorted(), failed: failed.keys.sorted(),
                assignments: isCoordinator ? placement : [:], members: members)
            out.append(.send(to: id, .heartbeat(h)))
        }
    }

    // MARK: - status

    public func status(now: UInt64) -> ClusterStatus {
        var nodes: [ClusterStatus.NodeStatus] = []
        for n in cluster.nodes {
            if n.id == selfId {
                nodes.append(.init(name: n.name, id: n.id, state: leaving ? "leaving" : "local",
                                   links: cluster.links.map { .init(name: $0.name, up: true, lastHeardMsAgo: nil) }, vote: votedFor))
                continue
            }
            guard let p = peers[n.id] else { continue }
            let links = cluster.links.enumerated().map { (i, l) in
                ClusterStatus.LinkStatus(name: l.name, up: p.linkUp[i], lastHeardMsAgo: p.linkLastHeard[i].map { now - $0 })
            }
            let state = p.member ? ((p.report?.leaving ?? false) ? "leaving" : "online") : (p.lastHeard.map { now < $0 + timing.timeout } ?? false ? "one-way" : "offline")
            nodes.append(.init(name: n.name, id: n.id, state: state, links: links, vote: p.report?.vote))
        }
        let assignments = isCoordinator ? placement : (now < leaseUntil ? authorityAssignments : [:])
        var res: [ClusterStatus.ResourceStatus] = []
        for ip in resourceSet.ips {
            let running = reportedHolders(ip.name).map { name(of: $0) }
            let assigned = assignments[ip.name].map { name(of: $0) }
            var state = "stopped"
            var detail = waitingReason[ip.name]
            if running.count > 1 { state = "moving" } else if let a = assigned, running == [a] { state = "started" } else if assigned != nil { state = "starting" } else if !running.isEmpty { state = "stopping" }
            if let f = failed[ip.name] {
                detail = "failed here: \(f)"
                if running.isEmpty && assigned == nil { state = "failed" }
            }
            let coordKnown = isCoordinator || now < leaseUntil
            if !coordKnown {
                state = running.isEmpty ? "stopped" : "unknown"
                detail = detail ?? "no quorum on this node"
            }
            res.append(.init(name: ip.name, kind: "ip", address: ip.prefix.description, assignedTo: assigned, runningOn: running, state: state, detail: detail))
        }
        let coordinator: String? = isCoordinator ? selfName : (now < leaseUntil && authority != 0 ? name(of: authority) : nil)
        return ClusterStatus(
            cluster: cluster.name, localNode: selfName, quorate: isCoordinator || now < leaseUntil,
            votesForLocal: votesForSelf, majority: cluster.majority, coordinator: coordinator,
            localIsCoordinator: isCoordinator, leaseRemainingMs: leaseUntil > now ? (leaseUntil == UInt64.max ? nil : leaseUntil - now) : 0,
            noQuorumPolicy: cluster.noQuorumPolicy.rawValue, configVersion: resources.version,
            nodes: nodes, resources: res, counters: .init(), incompatiblePeers: [])
    }
}

extension VersionedResources {
    func withDigest(_ d: UInt64) -> VersionedResources {
        var c = self
        c.digest = d
        return c
    }
}

/// Things worth a log line (and, later, a hook).
public enum EngineEvent: Equatable, Sendable, CustomStringConvertible {
    case peerJoined(String)
    case peerLost(String)
    case linkDown(String, String)
    case linkUp(String, String)
    case quorumGained
    case quorumLost
    case becameCoordinator
    case resignedCoordinator
    case placed(String, on: String)
    case withdrawn(String, from: String)
    case leaseLost(policy: String)
    case resourceStarted(String)
    case resourceFailed(String, String)
    case resourceRecovered(String)
    case foundLeftover(String)
    case leaving
    case coordinatorChanged(String?)
    case configAdopted(UInt64, from: String)
    case configRejected(UInt64, String)

    public var description: String {
        switch self {
        case .peerJoined(let n): return "member-joined node=\(n)"
        case .peerLost(let n): return "member-lost node=\(n)"
        case .linkDown(let n, let l): return "link-down node=\(n) link=\(l)"
        case .linkUp(let n, let l): return "link-up node=\(n) link=\(l)"
        case .quorumGained: return "quorum-gained"
        case .quorumLost: return "quorum-lost"
        case .becameCoordinator: return "coordinator-elected (this node)"
        case .resignedCoordinator: return "coordinator-resigned (this node)"
        case .placed(let r, let n): return "decided resource=\(r) node=\(n)"
        case .withdrawn(let r, let n): return "withdrawn resource=\(r) from=\(n)"
        case .leaseLost(let p): return "lease-lost policy=\(p)"
        case .resourceStarted(let r): return "resource-started resource=\(r)"
        case .resourceFailed(let r, let why): return "resource-failed resource=\(r) reason=\"\(why)\""
        case .resourceRecovered(let r): return "resource-recovered resource=\(r)"
        case .foundLeftover(let r): return "found-leftover resource=\(r)"
        case .coordinatorChanged(let n): return "coordinator-changed coordinator=\(n ?? "none")"
        case .leaving: return "leaving (graceful stop: handing resources over)"
        case .configAdopted(let v, let from): return "config-adopted version=\(v) from=\(from)"
        case .configRejected(let v, let why): return "config-rejected version=\(v) reason=\"\(why)\""
        }
    }
}
