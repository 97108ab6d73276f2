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
        /// Ask the agent whether the resource already runs here (monitor), before anything starts.
        case probe(String)
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
    /// Coordinator: nodes each resource was assigned to during this term. Only those can have
    /// started it since our first heartbeat in office (every earlier coordinator's authority
    /// ended before our term began), so only they must confirm a release after a withdrawal.
    private var assignedInOffice: [String: Set<UInt32>] = [:]
    public private(set) var waitingReason: [String: String] = [:]

    // Holder side
    /// Peer-supported leases: ours (holder side) and our promises to the others.
    public private(set) var ledger: SupportLedger
    /// Our lease, minus the margin: we keep what runs here only before this instant.
    public private(set) var leaseUntil: UInt64 = 0
    /// The coordinator whose assignments we follow, and until when we may start what it assigns.
    public private(set) var authority: UInt32 = 0
    private var authorityUntil: UInt64 = 0
    private var authorityAssignments: [String: UInt32] = [:]

    public enum LocalState: String, Equatable, Sendable { case starting, started, stopping, blocked }
    /// What runs here; absent means stopped.
    public private(set) var local: [String: LocalState] = [:]
    /// Everything that may run here (starting, started, stopping, blocked): reported as `held`.
    public var held: Set<String> { Set(local.keys) }
    /// Resources banned on this node (failed start, threshold reached, hard error, interface down).
    public private(set) var failed: [String: String] = [:]
    /// Agent said the configuration is wrong: banned everywhere until cleanup.
    public private(set) var fatal: [String: String] = [:]
    private var failureTimes: [String: [UInt64]] = [:]
    private var thresholdBans: Set<String> = []
    private var restartPending: Set<String> = []
    private var probeIssued: Set<String> = []
    public private(set) var probePending: Set<String> = []
    /// Coordinator: failovers under way (resource: from node, reason).
    private var failovers: [String: (from: String, reason: String)] = [:]
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
    private var placementDirty = true
    private var nextPlacementAt: UInt64 = 0
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
        self.leftoverGraceUntil = now + cluster.timing.timeout + cluster.timing.lease
        // A node that restarts has forgotten whom it voted for: it votes for nobody until any
        // vote of its previous life can no longer be counted.
        self.voteBlockedUntil = now + cluster.timing.lease + cluster.timing.guardTime + cluster.timing.lease / 1000 + 1
        self.ledger = SupportLedger(selfId: selfId, peers: cluster.nodes.map(\.id), incarnation: incarnation,
                                    params: .init(duration: cluster.timing.lease, startQuiet: cluster.timing.lease + cluster.timing.timeout), now: now)
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
        // The same packet arrives once per link: apply state only from the newest. A copy only
        // refreshes the link's liveness, which the next tick reports.
        guard seq > p.lastSeq else {
            peers[sender] = p
            return out
        }
        p.lastSeq = seq
        peers[sender] = p
        switch message {
        case .heartbeat(let h):
            // Echoes of our own clock from our future are corrupt: ignore the whole heartbeat
            // rather than compute deadlines from it.
            if h.echoIncarnation == incarnation && (h.echo > now || h.supportEcho > now) { return evaluate(now: now, out: &out) }
            p.peerSentAt = h.sentAt
            p.peerSentAtReceivedAt = now
            if !(p.report.map { $0.samePlacementFacts(as: h) } ?? false) { placementDirty = true }
            p.report = h
            peers[sender] = p
            ledger.heard(from: sender, epoch: h.epoch, sentAt: h.sentAt, now: now)
            ledger.report(from: sender, supportEpoch: h.supportEpoch, supportEcho: h.supportEcho, refused: h.refusedEpoch,
                          withdrawals: h.withdrawals, epochsSeen: h.epochsSeen, now: now)
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
            out.append(.send(to: sender, .configData(version: resources.version, text: resources.text, standby: resources.standby)))
        case .configData(let version, let text, let standby):
            adoptConfig(VersionedResources(version: version, text: text, standby: standby), from: sender, out: &out)
        case .standbyProposal(let requestId, let node, let on):
            handleStandby(requestId: requestId, origin: sender, node: node, on: on, out: &out)
        case .configProposal(let requestId, let text):
            handleProposal(requestId: requestId, origin: sender, text: text, now: now, out: &out)
        case .cleanup(let r):
            applyCleanup(r, out: &out)
        case .configResult(let requestId, let ok, let version, let msg):
            if let i = forwarded.firstIndex(where: { $0.requestId == requestId }) {
                forwarded.remove(at: i)
                out.append(.reply(requestId: requestId, ok: ok, version: version, message: msg))
            }
        }
        return evaluate(now: now, out: &out)
    }

    /// The next instant at which `tick` has something to do: the next heartbeat, or earlier when
    /// a lease, a vote, a term, a membership or a withdrawal runs out. The shell sleeps until
    /// then (or until a packet arrives) instead of polling.
    public func nextDeadline(now: UInt64) -> UInt64 {
        var d = nextHeartbeatAt
        func consider(_ t: UInt64) { if t > now && t < d { d = t } }
        if !local.isEmpty { consider(leaseUntil) }
        consider(authorityUntil)
        consider(startBarrier)
        consider(voteBlockedUntil)
        consider(coordinatorUntil)
        consider(leftoverGraceUntil)
        consider(ledger.quietUntil)
        for p in peers.values {
            if let h = p.lastHeard { consider(h + timing.timeout) }
            for case let h? in p.linkLastHeard { consider(h + timing.timeout) }
            if let r = p.report, r.echoIncarnation == incarnation {
                consider(r.echo + timing.timeout)
                consider(r.echo + timing.lease - min(timing.guardTime, timing.lease))
            }
        }
        for p in ledger.peers.values where p.ceasing { consider(p.acceptedAt + ledger.params.promiseOnSupporter) }
        return max(d, now + 1)
    }

    public mutating func tick(now: UInt64) -> [Directive] {
        var out: [Directive] = []
        return evaluate(now: now, out: &out)
    }

    public enum FailureKind: Sendable, Equatable {
        /// Restart in place until `migration_threshold`, then move.
        case soft
        /// Cannot work on this node: move now.
        case hard
        /// The configuration is wrong: stop everywhere until cleanup.
        case fatal
    }

    /// The shell finished starting a resource.
    public mutating func resourceStarted(_ name: String, now: UInt64) -> [Directive] {
        var out: [Directive] = []
        if local[name] == .starting {
            local[name] = .started
            urgent = true
            out.append(.event(.resourceStarted(name)))
        }
        return evaluate(now: now, out: &out)
    }

    /// The shell finished stopping a resource.
    public mutating func resourceStopped(_ name: String, now: UInt64) -> [Directive] {
        var out: [Directive] = []
        if local[name] == .stopping {
            local[name] = nil
            restartPending.remove(name)
            urgent = true
            out.append(.event(.resourceStopped(name)))
        }
        return evaluate(now: now, out: &out)
    }

    /// A stop failed or timed out: the resource may still run here. It is never started
    /// elsewhere until the operator has checked it and run `hactl cleanup`.
    public mutating func stopFailed(_ name: String, reason: String, now: UInt64) -> [Directive] {
        var out: [Directive] = []
        if local[name] != nil {
            local[name] = .blocked
            restartPending.remove(name)
            failed[name] = "stop failed: \(reason)"
            urgent = true
            out.append(.event(.stopFailed(name, reason)))
        }
        return evaluate(now: now, out: &out)
    }

    /// A start failed, a monitor or probe found the resource broken, or its interface went down.
    public mutating func resourceFailed(_ name: String, reason: String, kind: FailureKind = .hard, now: UInt64) -> [Directive] {
        var out: [Directive] = []
        failureTimes[name, default: []].append(now)
        let opts = resourceSet.options(name)
        let count = failCount(name, now: now)
        switch kind {
        case .fatal:
            fatal[name] = reason
            failed[name] = reason
        case .hard:
            failed[name] = reason
        case .soft:
            if count >= opts.migrationThreshold {
                failed[name] = "\(reason) (\(count) failures, migration_threshold \(opts.migrationThreshold))"
                thresholdBans.insert(name)
            } else if local[name] == .started || local[name] == .starting {
                restartPending.insert(name)
            }
        }
        out.append(.event(.resourceFailed(name, reason, count: count)))
        urgent = true
        return evaluate(now: now, out: &out)
    }

    /// The condition behind a failure is gone (interface back up, failure expired).
    public mutating func resourceRecovered(_ name: String, now: UInt64) -> [Directive] {
        var out: [Directive] = []
        if failed.removeValue(forKey: name) != nil {
            urgent = true
            out.append(.event(.resourceRecovered(name)))
        }
        return evaluate(now: now, out: &out)
    }

    /// Failures of `name` on this node within its failure_timeout.
    public func failCount(_ name: String, now: UInt64) -> Int {
        let window = resourceSet.options(name).failureTimeoutMs
        let times = failureTimes[name] ?? []
        return window == 0 ? times.count : times.filter { now < $0 + window }.count
    }

    /// At start-up the shell found an address of ours still configured (left by a crash).
    public mutating func foundLeftover(_ name: String, now: UInt64) -> [Directive] {
        local[name] = .started
        leftovers.insert(name)
        var out: [Directive] = [.event(.foundLeftover(name))]
        return evaluate(now: now, out: &out)
    }

    /// Result of a probe (the agent's monitor before anything was started here).
    public mutating func probeResult(_ name: String, _ outcome: OperationOutcome, now: UInt64) -> [Directive] {
        var out: [Directive] = []
        guard probePending.remove(name) != nil else { return evaluate(now: now, out: &out) }
        urgent = true
        switch outcome {
        case .notRunning:
            break
        case .success:
            local[name] = .started
            leftovers.insert(name)
            out.append(.event(.foundLeftover(name)))
        case .softError(let why), .hardError(let why), .fatalError(let why):
            // It may run, but broken: count it as running here so that it is stopped before
            // anything starts it anywhere.
            local[name] = .started
            if case .fatalError = outcome {
                return resourceFailed(name, reason: "probe: \(why)", kind: .fatal, now: now)
            }
            return resourceFailed(name, reason: "probe: \(why)", kind: .hard, now: now)
        }
        return evaluate(now: now, out: &out)
    }

    /// `hactl cleanup RESOURCE` on this node: forget its failures everywhere.
    public mutating func cleanup(_ name: String, now: UInt64) -> [Directive] {
        var out: [Directive] = []
        applyCleanup(name, out: &out)
        for id in peers.keys.sorted() { out.append(.send(to: id, .cleanup(resource: name))) }
        return evaluate(now: now, out: &out)
    }

    private mutating func applyCleanup(_ name: String, out: inout [Directive]) {
        failureTimes[name] = nil
        failed[name] = nil
        fatal[name] = nil
        thresholdBans.remove(name)
        if local[name] == .blocked {
            // Retry the stop that failed; until it succeeds the resource stays blocked here.
            local[name] = .stopping
            out.append(.event(.resourceStopping(name)))
            out.append(.stop(name))
        }
        out.append(.event(.cleanedUp(name)))
        urgent = true
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
        for r in previouslyHeld where resourceSet.names.contains(r) {
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
        } else if authority != 0, authority != selfId {
            forwarded.append(ForwardedRequest(requestId: requestId, deadline: now + 5000))
            out.append(.send(to: authority, .configProposal(requestId: requestId, text: text)))
        } else {
            out.append(.reply(requestId: requestId, ok: false, version: resources.version,
                              message: "this node is not part of a quorate partition with a coordinator; nothing was changed"))
        }
        return evaluate(now: now, out: &out)
    }

    /// `hactl standby NODE` / `hactl unstandby NODE` on this node.
    public mutating func proposeStandby(requestId: UInt64, node: String, on: Bool, now: UInt64) -> [Directive] {
        var out: [Directive] = []
        guard cluster.node(named: node) != nil else {
            return [.reply(requestId: requestId, ok: false, version: resources.version,
                           message: "'\(node)' is not a node of cluster '\(cluster.name)' (nodes: \(cluster.nodes.map(\.name).joined(separator: ", ")))")]
        }
        if isCoordinator {
            handleStandby(requestId: requestId, origin: selfId, node: node, on: on, out: &out)
        } else if authority != 0, authority != selfId {
            forwarded.append(ForwardedRequest(requestId: requestId, deadline: now + 5000))
            out.append(.send(to: authority, .standbyProposal(requestId: requestId, node: node, on: on)))
        } else {
            out.append(.reply(requestId: requestId, ok: false, version: resources.version,
                              message: "this node is not part of a quorate partition with a coordinator; nothing was changed"))
        }
        return evaluate(now: now, out: &out)
    }

    private mutating func handleStandby(requestId: UInt64, origin: UInt32, node: String, on: Bool, out: inout [Directive]) {
        func reply(_ ok: Bool, _ msg: String) {
            if origin == selfId {
                out.append(.reply(requestId: requestId, ok: ok, version: resources.version, message: msg))
            } else {
                out.append(.send(to: origin, .configResult(requestId: requestId, ok: ok, version: resources.version, message: msg)))
            }
        }
        guard isCoordinator else { return reply(false, "\(selfName) is no longer the coordinator; retry") }
        guard isMember(origin) else { return }
        guard cluster.node(named: node) != nil else { return reply(false, "'\(node)' is not a node of this cluster") }
        let newestKnown = peers.values.filter(\.member).compactMap { $0.report?.configVersion }.max() ?? 0
        guard resources.version >= newestKnown else { return reply(false, "the coordinator is still synchronising; retry in a moment") }
        var set = Set(resources.standby)
        if on { set.insert(node) } else { set.remove(node) }
        if set == Set(resources.standby) { return reply(true, "\(node) is \(on ? "already" : "not") in standby; nothing changed") }
        let next = VersionedResources(version: max(resources.version, newestKnown) + 1, text: resources.text, standby: Array(set))
        resources = next
        out.append(.persist(next))
        out.append(.event(.configAdopted(next.version, from: name(of: origin))))
        out.append(.event(on ? .standby(node) : .unstandby(node)))
        reply(true, on ? "\(node) is in standby (version \(next.version)): its resources move away" : "\(node) is out of standby (version \(next.version))")
        urgent = true
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
        // Only from members: a packet of a node we have no two-way contact with is stale.
        guard isMember(origin) else { return }
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
        let next = VersionedResources(version: max(resources.version, newestKnown) + 1, text: text, standby: resources.standby)
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
            if candidate.standby != resources.standby { out.append(.event(.standbyChanged(candidate.standby))) }
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
            if authority == sender { authority = 0; authorityAssignments = [:]; authorityUntil = 0 }
            return
        }
        guard !isCoordinator else { return }
        guard h.leaseMs > 0, h.echoIncarnation == incarnation, h.echo <= now else { return }
        // A new coordinator counts only reports that answer its own heartbeats: answer at once.
        if authority != sender { urgent = true }
        authority = sender
        // Assignments made for an older epoch of ours are void: what a coordinator assigned to
        // that epoch may have been given away after a majority withdrew it.
        guard h.assigneeEpoch == ledger.epoch else {
            authorityAssignments = [:]
            authorityUntil = 0
            return
        }
        authorityAssignments = h.assignments
        authorityUntil = h.echo + UInt64(h.leaseMs)
    }

    /// When the guardian removes this node's addresses if the lease is not renewed: half the
    /// margin after `clusterd` itself should have let go, half the margin before the lease ends.
    public var guardianDeadline: UInt64 {
        leaseUntil == UInt64.max ? UInt64.max : leaseUntil + timing.guardTime / 2
    }

    /// We may start what a coordinator assigns: our own, or one whose term still covers us.
    func authorityValid(now: UInt64) -> Bool { isCoordinator || (authority != 0 && now < authorityUntil) }

    // MARK: - leases

    /// Nodes that a majority (ourselves included, by the latest reports of our members) has no
    /// two-way contact with. Only for those do we start withdrawing support: loss between one
    /// pair of nodes must not cost a node a supporter for good.
    func lostByMajority(_ x: UInt32) -> Bool {
        var count = isMember(x) ? 0 : 1
        for p in peers.values where p.id != x && p.member {
            guard let r = p.report else { continue }
            if !r.members.contains(x) || (r.withdrawals[x].map { $0 >= ledger.highestSeen(x) } ?? false) { count += 1 }
        }
        return count >= cluster.majority
    }

    private mutating func updateLeases(now: UInt64, out: inout [Directive]) {
        let members = Set(peers.values.filter(\.member).map(\.id))
        let lost = Set(peers.keys.filter { !members.contains($0) && lostByMajority($0) })
        for e in ledger.update(now: now, member: { members.contains($0) }, lostByMajority: { lost.contains($0) }) {
            switch e {
            case .ceasing(let id): out.append(.event(.supportCeasing(name(of: id))))
            case .resumed(let id): out.append(.event(.supportResumed(name(of: id))))
            case .withdrew(let id, let upTo): out.append(.event(.supportWithdrawn(name(of: id), epoch: upTo)))
            }
            urgent = true
        }
        let end = ledger.leaseEnd(majority: cluster.majority)
        leaseUntil = end == UInt64.max ? end : end - min(end, timing.guardTime)
        // A withdrawn epoch can never be supported again: take a new one once nothing runs here.
        if ledger.currentEpochWithdrawn && local.isEmpty && now >= leaseUntil {
            ledger.newEpoch()
            authorityAssignments = [:]
            authorityUntil = 0
            out.append(.event(.newEpoch(ledger.epoch)))
            urgent = true
        }
        // The coordinator we know stays known while it is a member; only its authority to
        // start things lapses with its term (so lost heartbeats are not coordinator changes).
        if authority != 0 && authority != selfId && !isMember(authority) {
            authority = 0
            authorityAssignments = [:]
            authorityUntil = 0
        }
    }

    /// Coordinator: a majority of nodes withdrew `z` up to the newest epoch of it anyone reported,
    /// counting only reports that answer something we sent while in office.
    func withdrawnByMajority(_ z: UInt32) -> Bool {
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

    // MARK: - the evaluation step

    private mutating func evaluate(now: UInt64, out: inout [Directive]) -> [Directive] {
        updateMembership(now: now, out: &out)
        updateLeases(now: now, out: &out)
        updateVote(now: now, out: &out)
        updateCoordinator(now: now, out: &out)
        // Placement is recomputed when an input it depends on changed (anything that makes a
        // heartbeat urgent, a peer's reported facts), while something waits, and once a second.
        if isCoordinator && (placementDirty || urgent || !waitingReason.isEmpty || now >= nextPlacementAt) {
            placementDirty = false
            nextPlacementAt = now + 1000
            place(now: now, out: &out)
        }
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
                assignedInOffice = [:]
                out.append(.event(.becameCoordinator))
            } else {
                placement = [:]
                out.append(.event(.resignedCoordinator))
            }
        }
        if isCoordinator {
            authority = selfId
            authorityUntil = coordinatorUntil
        } else if authority == selfId {
            authority = 0
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
            out.append(.event(.coordinatorChanged(coord == 0 ? nil : name(of: coord))))
        }
    }

    /// Coordinator: can node `z` possibly run `r` right now? `gone`: nodes a majority withdrew.
    private func mayHold(_ z: UInt32, _ r: String, gone: Set<UInt32>) -> Bool {
        if z == selfId { return held.contains(r) }
        guard let p = peers[z] else { return false }
        // Whatever a node ran under an epoch a majority withdrew is free (`gone` holds only
        // nodes that are not members; a member's own report decides below).
        if gone.contains(z) { return false }
        guard let rep = p.report else { return true }
        if rep.held.contains(r) { return true }
        // A release counts when the report answers a heartbeat we sent after the withdrawal.
        let assignedHere = assignedInOffice[r]?.contains(z) ?? false
        // Strictly after the withdrawal: a heartbeat sent in the same millisecond, before it,
        // may still have carried the assignment.
        let fresh = assignedHere ? rep.echo > (withdrawnAt[r] ?? 0) && rep.echo >= officeSince : rep.echo >= officeSince
        return !(rep.echoIncarnation == incarnation && fresh && p.member)
    }

    /// Nodes whose reports count for placement: members, and nodes we lost contact with whose
    /// lease a majority has not withdrawn (what they run stays theirs; membership may flap
    /// under loss without moving anything).
    private func reportingNodes(gone: Set<UInt32>) -> Set<UInt32> {
        var out: Set<UInt32> = [selfId]
        for p in peers.values where p.member || (p.report != nil && !gone.contains(p.id)) { out.insert(p.id) }
        return out
    }

    private func reportedHolders(_ r: String, among nodes: Set<UInt32>? = nil) -> [UInt32] {
        var out: [UInt32] = held.contains(r) ? [selfId] : []
        for p in peers.values where (nodes?.contains(p.id) ?? p.member) && (p.report?.held.contains(r) ?? false) { out.append(p.id) }
        return out.sorted()
    }

    /// Nodes where `r` is confirmed running.
    private func startedOn(_ r: String, among nodes: Set<UInt32>? = nil) -> [UInt32] {
        var out: [UInt32] = local[r] == .started ? [selfId] : []
        for p in peers.values where (nodes?.contains(p.id) ?? p.member) && (p.report?.started.contains(r) ?? false) { out.append(p.id) }
        return out.sorted()
    }

    private func peerIsLeaving(_ id: UInt32) -> Bool { id == selfId ? leaving : (peers[id]?.report?.leaving ?? false) }

    /// The scheduler's view of the cluster, from this coordinator's reports.
    private func schedulerInput(alive: Set<UInt32>) -> ([Scheduler.Node], Scheduler.State) {
        let nodes = cluster.nodes.map { n in
            Scheduler.Node(id: n.id, name: n.name, online: alive.contains(n.id) && !peerIsLeaving(n.id), standby: resources.standby.contains(n.name))
        }
        var st = Scheduler.State()
        for r in resourceSet.names {
            var h = Set(reportedHolders(r, among: alive))
            // Where we placed it counts as running: a restart in place must not move it.
            if let t = placement[r], alive.contains(t) { h.insert(t) }
            if !h.isEmpty { st.running[r] = h }
        }
        for r in failed.keys { st.banned[r, default: []].insert(selfId) }
        for (r, v) in local where v == .blocked { st.blocked[r, default: []].insert(selfId) }
        st.fatal = Set(fatal.keys)
        for p in peers.values {
            guard let rep = p.report else { continue }
            // Blocked resources count even from nodes we lost: they may still run there.
            for r in rep.blocked { st.blocked[r, default: []].insert(p.id) }
            guard alive.contains(p.id) else { continue }
            for r in rep.failed { st.banned[r, default: []].insert(p.id) }
            st.fatal.formUnion(rep.fatal)
        }
        return (nodes, st)
    }

    private mutating func place(now: UInt64, out: inout [Directive]) {
        var changed = false
        var reasons: [String: String] = [:]
        let names = Set(resourceSet.names)
        for r in placement.keys where !names.contains(r) {
            placement[r] = nil
            changed = true
        }
        let gone = Set(peers.keys.filter { !(peers[$0]?.member ?? false) && withdrawnByMajority($0) })
        let alive = reportingNodes(gone: gone)
        let (nodes, state) = schedulerInput(alive: alive)
        let plan = Scheduler.schedule(resourceSet, nodes: nodes, state: state)
        let anyProbing = (probePending.isEmpty ? false : true) || peers.values.contains { $0.member && ($0.report?.probing ?? false) }
        for r in resourceSet.startOrder {
            let holders = reportedHolders(r, among: alive)
            let target = plan.placement[r]
            if let c = placement[r], c != target {
                placement[r] = nil
                withdrawnAt[r] = now
                changed = true
                out.append(.event(.withdrawn(r, from: name(of: c))))
                if target != nil || !alive.contains(c) {
                    let why = !alive.contains(c) ? "node \(name(of: c)) lost" : (state.banned[r]?.contains(c) ?? false ? "failed on \(name(of: c))" : "placement changed")
                    failovers[r] = (name(of: c), why)
                    out.append(.event(.failoverBegun(r, from: name(of: c), reason: why)))
                }
            }
            if let f = failovers[r], let t = placement[r], startedOn(r) == [t] {
                failovers[r] = nil
                out.append(.event(.failoverCompleted(r, from: f.from, to: name(of: t), reason: f.reason)))
            }
            guard let t = target else {
                reasons[r] = plan.reasons[r] ?? "stopped"
                continue
            }
            if placement[r] == t { continue }
            let isNewStart = !holders.contains(t)
            // Keeping a resource where it runs, started, and nowhere else, starts nothing: a new
            // coordinator confirms it at once. Anything else (held while stopping, or by two
            // nodes after a partition healed) waits for every other node to be clear.
            let keep = holders == [t] && startedOn(r, among: alive) == [t]
            let blockers = keep ? [] : ([selfId] + Array(peers.keys)).filter { $0 != t && mayHold($0, r, gone: gone) }.sorted()
            if !blockers.isEmpty {
                let names = blockers.map { b -> String in
                    isMember(b) ? name(of: b) : "\(name(of: b)) (lost: waiting for a majority to withdraw its lease)"
                }
                reasons[r] = "waiting for \(names.joined(separator: ", ")) to release it"
                continue
            }
            if isNewStart && now < startBarrier {
                reasons[r] = "new coordinator: waiting \(startBarrier - now) ms before starting anything"
                continue
            }
            if isNewStart && anyProbing {
                reasons[r] = "waiting for nodes to finish probing what already runs"
                continue
            }
            // Order: everything it depends on must be confirmed running first.
            if isNewStart, let p = resourceSet.predecessors(of: r).first(where: { startedOn($0).isEmpty }) {
                reasons[r] = "waiting for \(p) to start"
                continue
            }
            placement[r] = t
            assignedInOffice[r, default: []].insert(t)
            changed = true
            out.append(.event(.placed(r, on: name(of: t))))
            // A new coordinator did not withdraw anything, yet this may still be a failover:
            // the last word of a node we lost says it ran the resource.
            if isNewStart && failovers[r] == nil,
                let lost = peers.values.filter({ !alive.contains($0.id) && $0.id != t && ($0.report?.held.contains(r) ?? false) }).map(\.id).min()
            {
                let why = "node \(name(of: lost)) lost"
                failovers[r] = (name(of: lost), why)
                out.append(.event(.failoverBegun(r, from: name(of: lost), reason: why)))
            }
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
        // Ask the agents what already runs here before anything is started.
        for a in resourceSet.agents where !probeIssued.contains(a.name) {
            probeIssued.insert(a.name)
            if local[a.name] == nil {
                probePending.insert(a.name)
                out.append(.probe(a.name))
            }
        }
        // Failures older than failure_timeout no longer keep a resource away.
        for r in thresholdBans where failCount(r, now: now) < resourceSet.options(r).migrationThreshold {
            thresholdBans.remove(r)
            if failed.removeValue(forKey: r) != nil { out.append(.event(.resourceRecovered(r))) }
            urgent = true
        }
        var desired: Set<String>
        let assignments = isCoordinator ? placement : authorityAssignments
        if leaving {
            desired = []
        } else if hasLease {
            let mine = Set(assignments.filter { $0.value == selfId }.map(\.key))
            let valid = authorityValid(now: now)
            // A coordinator in office (whose heartbeats reach only its members, so it saw what
            // we run) decides; without one, keep what runs and start nothing.
            desired = valid ? mine : held
            desired.subtract(failed.keys)
            desired.subtract(fatal.keys)
            desired.formIntersection(resourceSet.names)
        } else if cluster.noQuorumPolicy == .freeze {
            // Start nothing, stop no application. Addresses always follow the lease (the
            // guardian removes them at its end whatever the policy): two machines answering
            // for one address is never what an operator wants.
            desired = held.filter { resourceSet.ip(named: $0) == nil }
            desired.formIntersection(resourceSet.names)
        } else if !everHadLease && now < leftoverGraceUntil {
            desired = held.intersection(leftovers)  // start-up reconciliation window
            desired.formIntersection(resourceSet.names)
        } else {
            desired = []
        }
        if !probePending.isEmpty { desired.formIntersection(held) }
        let order = resourceSet.startOrder
        let unknown = held.subtracting(order).sorted()  // removed from the configuration
        // Stops: what must not run here, or must restart, and everything depending on it here.
        var toStop = Set(local.filter { ($0.value == .started || $0.value == .starting) && (!desired.contains($0.key) || restartPending.contains($0.key)) }.keys)
        var grew = true
        while grew {
            grew = false
            for r in toStop.union(local.filter { $0.value == .stopping }.keys) {
                for d in resourceSet.dependents(of: r) where (local[d] == .started || local[d] == .starting) && !toStop.contains(d) {
                    toStop.insert(d)
                    if desired.contains(d) { restartPending.insert(d) }
                    grew = true
                }
            }
        }
        for r in unknown + order.reversed() where toStop.contains(r) {
            // Dependents here stop first (a blocked dependent keeps it running).
            if resourceSet.dependents(of: r).contains(where: { local[$0] != nil }) { continue }
            local[r] = .stopping
            out.append(.event(.resourceStopping(r)))
            out.append(.stop(r))
            urgent = true
        }
        // Starts, in dependency order, once what they depend on runs.
        for r in order where desired.contains(r) && local[r] == nil {
            let ready = resourceSet.predecessors(of: r).allSatisfy { local[$0] == .started || !startedOn($0).isEmpty }
            guard ready else { continue }
            local[r] = .starting
            out.append(.event(.resourceStarting(r)))
            out.append(.start(r))
            urgent = true
        }
    }

    private mutating func sendHeartbeats(now: UInt64, out: inout [Directive]) {
        let members = peers.values.filter(\.member).map(\.id).sorted()
        let startedHere = local.filter { $0.value == .started }.keys.sorted()
        let blockedHere = local.filter { $0.value == .blocked }.keys.sorted()
        let withdrawals = ledger.withdrawals
        let seen = ledger.epochsSeen
        for id in peers.keys.sorted() {
            guard let p = peers[id] else { continue }
            // The authority to start what we assign never outlives our own term as coordinator.
            var leaseMs: UInt32 = 0
            if isCoordinator && p.member && coordinatorUntil > now {
                leaseMs = UInt32(min(timing.lease - min(timing.guardTime, timing.lease), coordinatorUntil - now))
            }
            var h = Heartbeat(
                sentAt: now, echoIncarnation: p.incarnation, echo: p.peerSentAt, vote: votedFor,
                isCoordinator: isCoordinator, leaseMs: leaseMs, leaving: leaving,
                configVersion: resources.version, configDigest: resources.digest,
                held: held.sorted(), failed: failed.keys.sorted(),
                assignments: isCoordinator ? placement : [:], members: members)
            h.started = startedHere
            h.blocked = blockedHere
            h.fatal = fatal.keys.sorted()
            h.probing = !probePending.isEmpty
            h.epoch = ledger.epoch
            let echo = ledger.echo(for: id)
            h.supportEpoch = echo.epoch
            h.supportEcho = echo.sentAt
            h.refusedEpoch = ledger.refused(id)
            if isCoordinator { h.assigneeEpoch = p.report?.epoch ?? 0 }
            h.withdrawals = withdrawals
            h.epochsSeen = seen
            out.append(.send(to: id, .heartbeat(h)))
        }
    }

    // MARK: - status

    public func status(now: UInt64) -> ClusterStatus {
        var nodes: [ClusterStatus.NodeStatus] = []
        for n in cluster.nodes {
            if n.id == selfId {
                var me = ClusterStatus.NodeStatus(name: n.name, id: n.id, state: leaving ? "leaving" : "local",
                                                  links: cluster.links.map { .init(name: $0.name, up: true, lastHeardMsAgo: nil) }, vote: votedFor)
                me.standby = resources.standby.contains(n.name)
                nodes.append(me)
                continue
            }
            guard let p = peers[n.id] else { continue }
            let links = cluster.links.enumerated().map { (i, l) in
                ClusterStatus.LinkStatus(name: l.name, up: p.linkUp[i], lastHeardMsAgo: p.linkLastHeard[i].map { now - $0 })
            }
            let state = p.member ? ((p.report?.leaving ?? false) ? "leaving" : "online") : (p.lastHeard.map { now < $0 + timing.timeout } ?? false ? "one-way" : "offline")
            var ns = ClusterStatus.NodeStatus(name: n.name, id: n.id, state: state, links: links, vote: p.report?.vote)
            ns.standby = resources.standby.contains(n.name)
            nodes.append(ns)
        }
        let coordKnown = isCoordinator || authority != 0
        let assignments = isCoordinator ? placement : (coordKnown ? authorityAssignments : [:])
        var res: [ClusterStatus.ResourceStatus] = []
        for r in resourceSet.names {
            let running = reportedHolders(r).map { name(of: $0) }
            let started = startedOn(r).map { name(of: $0) }
            let assigned = assignments[r].map { name(of: $0) }
            let blockedNodes = (local[r] == .blocked ? [selfName] : []) + peers.values.filter { $0.report?.blocked.contains(r) ?? false }.map(\.name)
            var state = "stopped"
            var detail = waitingReason[r]
            if !blockedNodes.isEmpty {
                state = "blocked"
                detail = "stop failed on \(blockedNodes.sorted().joined(separator: ", ")): check it, then hactl cleanup \(r)"
            } else if running.count > 1 {
                state = "moving"
            } else if let a = assigned, started == [a] {
                state = "started"
            } else if assigned != nil {
                state = "starting"
            } else if !running.isEmpty {
                state = "stopping"
            }
            if let f = fatal[r] {
                state = "failed"
                detail = "configuration error: \(f)"
            } else if let f = failed[r], blockedNodes.isEmpty {
                detail = "failed here (\(failCount(r, now: now)) failures): \(f)"
                if running.isEmpty && assigned == nil { state = "failed" }
            }
            if !coordKnown && blockedNodes.isEmpty {
                state = running.isEmpty ? "stopped" : "unknown"
                detail = detail ?? "no quorum on this node"
            }
            let kind: String
            let what: String
            if let ip = resourceSet.ip(named: r) {
                kind = "ip"
                what = ip.prefix.description
            } else {
                kind = "agent"
                what = resourceSet.agent(named: r)?.agent.description ?? "?"
            }
            var item = ClusterStatus.ResourceStatus(name: r, kind: kind, address: what, assignedTo: assigned, runningOn: running, state: state, detail: detail)
            item.group = resourceSet.group(of: r)?.name
            item.failCount = failCount(r, now: now)
            res.append(item)
        }
        let coordinator: String? = isCoordinator ? selfName : (authority != 0 ? name(of: authority) : nil)
        return ClusterStatus(
            cluster: cluster.name, localNode: selfName, quorate: now < leaseUntil,
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
    case resourceStarting(String)
    case resourceStarted(String)
    case resourceStopping(String)
    case resourceStopped(String)
    case stopFailed(String, String)
    case resourceFailed(String, String, count: Int)
    case cleanedUp(String)
    case failoverBegun(String, from: String, reason: String)
    case failoverCompleted(String, from: String, to: String, reason: String)
    case resourceRecovered(String)
    case foundLeftover(String)
    case leaving
    case coordinatorChanged(String?)
    case standby(String)
    case unstandby(String)
    case standbyChanged([String])
    case configAdopted(UInt64, from: String)
    case configRejected(UInt64, String)
    case supportCeasing(String)
    case supportResumed(String)
    case supportWithdrawn(String, epoch: UInt64)
    case newEpoch(UInt64)

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
        case .resourceStarting(let r): return "resource-starting resource=\(r)"
        case .resourceStarted(let r): return "resource-started resource=\(r)"
        case .resourceStopping(let r): return "resource-stopping resource=\(r)"
        case .resourceStopped(let r): return "resource-stopped resource=\(r)"
        case .stopFailed(let r, let why): return "resource-stop-failed resource=\(r) reason=\"\(why)\" (blocked: it is never started elsewhere until hactl cleanup)"
        case .resourceFailed(let r, let why, let n): return "resource-failed resource=\(r) failcount=\(n) reason=\"\(why)\""
        case .cleanedUp(let r): return "cleanup resource=\(r)"
        case .failoverBegun(let r, let from, let why): return "failover-begun resource=\(r) from=\(from) reason=\"\(why)\""
        case .failoverCompleted(let r, let from, let to, _): return "failover-completed resource=\(r) from=\(from) to=\(to)"
        case .resourceRecovered(let r): return "resource-recovered resource=\(r)"
        case .foundLeftover(let r): return "found-leftover resource=\(r)"
        case .standby(let n): return "standby node=\(n)"
        case .unstandby(let n): return "unstandby node=\(n)"
        case .standbyChanged(let l): return "standby-nodes nodes=\(l.isEmpty ? "none" : l.joined(separator: ","))"
        case .coordinatorChanged(let n): return "coordinator-changed coordinator=\(n ?? "none")"
        case .leaving: return "leaving (graceful stop: handing resources over)"
        case .configAdopted(let v, let from): return "config-adopted version=\(v) from=\(from)"
        case .configRejected(let v, let why): return "config-rejected version=\(v) reason=\"\(why)\""
        case .supportCeasing(let n): return "lease-support-ceasing node=\(n) (a majority lost contact)"
        case .supportResumed(let n): return "lease-support-resumed node=\(n)"
        case .supportWithdrawn(let n, let e): return "lease-withdrawn node=\(n) epoch=\(e)"
        case .newEpoch(let e): return "lease-epoch epoch=\(e)"
        }
    }
}
