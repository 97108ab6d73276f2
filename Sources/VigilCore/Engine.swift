/// The deterministic heart of a node: a thin type that composes the core's machines and turns
/// their results into `Directive`s. No I/O, no clock of its own: every input carries `now`
/// (milliseconds of this node's monotonic clock) and every effect is returned as a `Directive`
/// for the shell to carry out, in order; `nextDeadline(now:)` says when to call `tick` next.
///
/// The machines, each with its own argument and unit tests:
/// - `Membership`: two-way contact per peer and link.
/// - `Election`: exclusive, time-bounded votes; the coordinator's term.
/// - `SupportLedger` (Leases.swift): each node's lease, supported by a majority of its peers;
///   final withdrawals; epochs. The safety argument for "two nodes never run one address" is
///   written out there.
/// - `CoordinatorOffice`: the coordinator's placement work, only while in office.
/// - `Scheduler`: the pure placement function.
///
/// ## How they compose (and why it is safe)
///
/// 1. Keeping what runs needs only the node's lease (`leaseUntil`): a coordinator's death or a
///    lost heartbeat stops nothing while any majority keeps echoing the node.
/// 2. Starting something needs an assignment from a coordinator, valid only within its term and
///    only for the epoch the coordinator last heard from us (`handleAuthority`). Every earlier
///    coordinator's term, hence authority, ended before a new one took office.
/// 3. The coordinator starts a resource on Y only when every other node is clear of it
///    (`mayHold`): it reported not holding it in a heartbeat that answers one sent late enough
///    (`CoordinatorOffice.isFreshRelease`), or a majority withdrew its lease
///    (`withdrawnByMajority`). Keeping a resource where it runs, started, on exactly one node
///    starts nothing and is confirmed at once.
/// 4. A node that lost its lease stops everything (`no_quorum_policy = stop`; `freeze` keeps
///    applications but never addresses), and its guardian removes its addresses at
///    `guardianDeadline` whatever the daemon is doing.
public struct Engine: Sendable {
    public enum Directive: Equatable, Sendable {
        case send(to: NodeID, Message)
        case start(String)
        case stop(String)
        /// Live migration: migrate_to on the source, migrate_from on the target (node names).
        case migrateTo(String, source: String, target: String), migrateFrom(String, source: String, target: String)
        /// Ask the agent whether the resource already runs here (monitor), before anything starts.
        case probe(String)
        /// The recurring monitor of a started agent resource is due.
        case monitor(String)
        /// Re-announce a held address (partition healed).
        case announce(String)
        case persist(VersionedResources)
        case adoptResources(ResourceSet)
        case reply(requestId: UInt64, ok: Bool, version: UInt64, message: String)
        case event(EngineEvent)
        /// Coordinator: run the fence levels for a node; answer with `fenceFinished`.
        case fence(target: NodeID, name: String, reason: String)
    }

    public typealias PeerState = Membership.Peer

    public let cluster: ClusterConfig
    public let selfId: NodeID
    public let selfName: String
    public let incarnation: UInt64
    public var timing: Timing { cluster.timing }
    /// Nodes that vote and support leases but run nothing and never coordinate.
    public let witnesses: Set<NodeID>
    public var isWitness: Bool { witnesses.contains(selfId) }

    public internal(set) var membership: Membership
    public var peers: [NodeID: PeerState] { membership.peers }
    public internal(set) var resources: VersionedResources
    public internal(set) var resourceSet: ResourceSet { didSet { localSerial &+= 1 } }

    // Voting and coordination
    public internal(set) var election: Election
    public var votedFor: NodeID? { election.votedFor }
    public var isCoordinator: Bool { election.isCoordinator }
    public var votesForSelf: Int { election.votesForSelf }
    /// The coordinator's working state, only while in office.
    var office: CoordinatorOffice?
    /// Coordinator: the published assignments.
    public var placement: [String: NodeID] { office?.placement ?? [:] }
    public var waitingReason: [String: String] { office?.waitingReason ?? [:] }

    // Holder side
    /// Peer-supported leases: ours (holder side) and our promises to the others.
    public internal(set) var ledger: SupportLedger
    /// Our lease, minus the margin: we keep what runs here only before this instant.
    public internal(set) var leaseUntil: UInt64 = 0
    /// The membership engine's verdict (Corosync: connected and quorate), always true with the
    /// built-in heartbeat: necessary for a lease, never sufficient (see `membershipQuorate`).
    public internal(set) var engineQuorate = true
    /// When the membership engine last said quorate (this node's clock).
    var engineQuorateSince: UInt64 = 0
    /// A Corosync pair: the fence of the other node this node runs itself (EnginePair.swift).
    var pairFence: FenceJob?
    var pairFenceTarget: NodeID?
    /// Set by the shell from Corosync's settings (EnginePair.swift): how long votequorum may take
    /// to settle a split (the quorum device's sync_timeout), and the higher id's extra wait
    /// before fencing (15 s with `two_node` and no device; nil: half a lease).
    public var pairSettleMs: UInt64 = 0
    public var pairFenceDelayMs: UInt64?
    /// The coordinator whose assignments we follow, and until when we may start what it assigns.
    public internal(set) var authority: NodeID?
    public internal(set) var authorityUntil: UInt64 = 0
    var authorityAssignments: [String: NodeID] = [:] { didSet { if authorityAssignments != oldValue { localSerial &+= 1 } } }
    /// The incarnation of the coordinator `authorityAssignments` came from, and their revision.
    var authorityIncarnation: UInt64 = 0
    var authorityRev: UInt64 = 0

    /// `migrating`: migrate_to runs; `migrated`: it succeeded (the instance moved; see EngineMigration.swift).
    public enum LocalState: String, Equatable, Sendable { case starting, started, stopping, blocked, migrating, migrated }
    /// What runs here; absent means stopped.
    public internal(set) var local: [String: LocalState] = [:] { didSet { factsDirty = true; localSerial &+= 1 } }
    /// Everything that may run here (starting, started, stopping, blocked): reported as `held`.
    public var held: Set<String> { Set(local.keys) }
    /// Resources banned on this node (failed start, threshold reached, hard error, interface down).
    public internal(set) var failed: [String: String] = [:] { didSet { factsDirty = true; localSerial &+= 1 } }
    /// Agent said the configuration is wrong: banned everywhere until cleanup.
    public internal(set) var fatal: [String: String] = [:] { didSet { factsDirty = true; localSerial &+= 1 } }
    /// When each resource failed here (this node's clock); kept across restarts by the shell
    /// (`failureRecord`, `restoreFailures`). `failureSerial` grows with every change.
    var failureTimes: [String: [UInt64]] = [:] { didSet { failureSerial &+= 1 } }
    public private(set) var failureSerial: UInt64 = 0
    var thresholdBans: Set<String> = []
    var restartPending: Set<String> = [] { didSet { localSerial &+= 1 } }
    var migration = MigrationState() { didSet { localSerial &+= 1 } }
    var probeIssued: Set<String> = [] { didSet { localSerial &+= 1 } }
    /// When each started agent resource's next monitor is due, the earliest, and those running now.
    var monitorDue: [String: UInt64] = [:]
    var monitorNext: UInt64 = .max
    var monitorInFlight: Set<String> = []
    /// Set while the shell records a batch of results: evaluation waits for its `tick`.
    var deferEvaluation = false
    /// Set by `beginBatch` while the shell delivers a burst of results: one evaluation at `endBatch`.
    public internal(set) var batching = false
    var evaluationWanted = false
    var failureExpiry: [String: UInt64] = [:]  // when a transient failure is forgotten
    public internal(set) var probePending: Set<String> = [] { didSet { factsDirty = true; localSerial &+= 1 } }
    var leftoverGraceUntil: UInt64
    public internal(set) var leaving = false
    /// Nodes fenced: the incarnation each had then, and when we learned it (see EngineFencing.swift).
    public internal(set) var fenceMarks: [NodeID: FenceMark] = [:]
    /// This node learned it was fenced while it still ran: it runs nothing until `hactl cleanup` names it.
    public internal(set) var fencedOut = false { didSet { localSerial &+= 1; urgent = true } }
    var hadLease = false
    var everHadLease = false
    /// Resources found running at start-up; kept (not started, not stopped) until the first
    /// lease tells us whether they stay here, or until the grace period ends.
    var leftovers: Set<String> = [] { didSet { localSerial &+= 1 } }
    var wasQuorate = false
    /// Grows with every change of what `applyDesired` reads from this node's own state (what
    /// runs, fails, probes, restarts, the assignments followed, the configuration).
    var localSerial: UInt64 = 0
    public internal(set) var work = WorkCounters()
    /// `localSerial` when the set of recurring monitors was last brought up to date.
    var monitorsSerial: UInt64 = .max
    /// The inputs of the last `applyDesired` pass that changed nothing: a pass with the same
    /// inputs would change nothing either, so it is skipped (a settled node with a thousand
    /// resources does not walk them on every heartbeat).
    var settledDesired: DesiredInputs?
    var lastCoordinatorSeen: NodeID?

    // Heartbeats and config
    /// What this node tells its peers it holds, runs, blocks, fails and probes (the facts lists
    /// of a heartbeat, sorted) with their revision (`factsRev`); rebuilt only when `local`,
    /// `failed`, `fatal` or `probePending` changed.
    var facts = Heartbeat(sentAt: 0)
    var factsDirty = true
    /// The facts' size inline, and their pages (built when first needed).
    var factsSize = 0
    var factsPages: [StatePage] = []
    /// Pages being assembled, and the sets assembled but not yet taken by a heartbeat.
    var pageAssemblies: [PageKey: PageAssembly] = [:]
    var pagedFacts: [NodeID: PagedSet<Heartbeat>] = [:]
    var pagedAssignments: [NodeID: PagedSet<[String: NodeID]>] = [:]
    /// Revisions of the assignments this node sends as coordinator: unique within its incarnation.
    var assignmentSerial: UInt64 = 0
    var nextHeartbeatAt: UInt64 = 0, lastHeartbeatAt: UInt64 = 0
    /// How late after our heartbeat one of the phase reference may come and still re-anchor ours.
    static let phaseSlack: UInt64 = 2
    /// Tell the peers at once; place at once (`urgent`) or within `placementSpacing` (progress).
    var urgent = false, factsUrgent = false
    /// Peers that asked for an immediate heartbeat, and when we last answered or asked each.
    var replyDue: Set<NodeID> = []
    var lastReplyAt: [NodeID: UInt64] = [:]
    var lastAskedAt: [NodeID: UInt64] = [:]
    var configRequestedAt: UInt64 = 0
    var rejectedDigests: Set<UInt64> = []
    /// A change taken by this coordinator, waiting for a majority to store it; `previous` is what
    /// it replaced (put back if this node loses the coordinator role first).
    struct PendingCommit { var requestId: UInt64; var origin: NodeID; var version: UInt64; var digest: UInt64; var deadline: UInt64; var previous: VersionedResources }
    var pendingCommits: [PendingCommit] = []
    struct ForwardedRequest { var requestId: UInt64; var deadline: UInt64; var pieces: [Message] = []; var resendAt: UInt64 = UInt64.max; var to: NodeID? }
    var forwarded: [ForwardedRequest] = []
    /// A configuration arriving in pieces, and proposals arriving in pieces (coordinator).
    struct IncomingConfig { var version: UInt64; var digest: UInt64; var total: Int; var bytes: [UInt8]; var from: NodeID }
    /// The configuration last asked for: (version, digest, committed, from the coordinator).
    var configWanted: (version: UInt64, digest: UInt64, committed: Bool, fromCoordinator: Bool)?
    var incoming: IncomingConfig?
    struct ProposalKey: Hashable { var origin: NodeID; var incarnation: UInt64; var requestId: UInt64 }
    var proposalPieces: [ProposalKey: (total: Int, pieces: [Int: [UInt8]], deadline: UInt64)] = [:]
    var completedProposals: [ProposalKey: UInt64] = [:]
    /// Answers sent to forwarders, by (origin, request): sent again when a forwarder repeats a
    /// proposal whose answer it lost (kept as long as `completedProposals`).
    struct ResultKey: Hashable { var origin: NodeID; var requestId: UInt64 }
    var sentResults: [ResultKey: (answer: Message, until: UInt64)] = [:]

    public init(cluster: ClusterConfig, selfId: NodeID, incarnation: UInt64, resources: VersionedResources, resourceSet: ResourceSet, now: UInt64) {
        self.cluster = cluster
        self.selfId = selfId
        self.selfName = cluster.node(id: selfId)?.name ?? "node\(selfId)"
        self.incarnation = incarnation
        self.witnesses = cluster.witnesses
        self.resources = resources
        self.resourceSet = resourceSet
        self.leftoverGraceUntil = now + cluster.timing.timeout + cluster.timing.lease
        self.election = Election(selfId: selfId, majority: cluster.majority, lease: cluster.timing.lease, guardTime: cluster.timing.guardTime, now: now)
        self.ledger = SupportLedger(selfId: selfId, peers: cluster.nodes.map(\.id), incarnation: incarnation,
                                    params: .init(duration: cluster.timing.lease, startQuiet: cluster.timing.lease + cluster.timing.timeout), now: now)
        self.membership = Membership(selfId: selfId, incarnation: incarnation, nodes: cluster.nodes.map { ($0.id, $0.name) },
                                     links: cluster.links.count, timeout: cluster.timing.timeout)
        nextHeartbeatAt = now
        engineQuorateSince = now
    }

    func name(of id: NodeID) -> String { id == selfId ? selfName : (peers[id]?.name ?? "node\(id)") }

    // MARK: - inputs

    /// A packet that passed authentication and the replay window of its link.
    public mutating func receive(from sender: NodeID, link: Int, incarnation inc: UInt64, seq: UInt64, message: Message, now: UInt64) -> [Directive] {
        var out: [Directive] = []
        // The same packet arrives once per link: apply state only from the newest. A copy only
        // refreshes the link's liveness, which the next tick reports.
        let fresh = membership.heard(from: sender, link: link, incarnation: inc, seq: seq, now: now)
        if case .statePage(let p) = message { receivePage(p, from: sender, incarnation: inc); return out }
        guard fresh else { return out }
        if !fenceMarks.isEmpty { checkFenceTook(sender, incarnation: inc, now: now, out: &out) }
        switch message {
        case .heartbeat(var h):
            if h.wantsReply, now >= (lastReplyAt[sender] ?? 0) + timing.retry / 2 {
                lastReplyAt[sender] = now
                replyDue.insert(sender)
            }
            // Facts are sent only until we acknowledged their revision: take them from what we
            // hold. Without them (we hold another revision) the heartbeat counts only for the
            // link's liveness; our acknowledgement makes the peer send them again.
            let prior = membership.peers[sender]?.report  // (one copy, not one per question)
            if !h.factsIncluded {
                if let r = prior, r.factsRev == h.factsRev {
                    h.copyFacts(from: r)
                } else if let p = pagedFacts[sender], p.incarnation == inc, p.rev == h.factsRev {
                    h.copyFacts(from: p.value)
                } else {
                    return out
                }
            }
            // Echoes of our own clock from our future are corrupt: compute no deadline from them.
            if h.echoIncarnation == incarnation && (h.echo > now || h.supportEcho > now) { return evaluate(now: now, out: &out) }
            let sameFacts = prior.map { $0.samePlacementFacts(as: h) } ?? false
            // In office, a report also counts once it answers one of our heartbeats (fresh).
            let wasFresh = office.map { o in prior.map { $0.echoIncarnation == incarnation && $0.echo >= o.since } ?? false } ?? true
            let isFresh = office.map { o in h.echoIncarnation == incarnation && h.echo >= o.since } ?? true
            // A release we wait for rides on an echo: this heartbeat may confirm it.
            let confirms = office.map { o in
                o.awaitingEcho[sender].map { h.echoIncarnation == incarnation && h.echo >= $0 } ?? false
            } ?? false
            // (Only progress, see `Heartbeat.onlyProgress`, is placed within `placementSpacing`.)
            let progress = !sameFacts && (prior.map { $0.onlyProgress(to: h) } ?? false)
            if wasFresh != isFresh || confirms || (!sameFacts && !progress) { office?.dirty = true } else if !sameFacts { office?.factsChanged = true }
            // A routine heartbeat (a member's, saying nothing new, and from our coordinator the same
            // assignments) only refreshes echoes and promises; the next deadline evaluates them.
            // A coordinator evaluates a heartbeat that may confirm a release it waits for, and
            // one whose report became fresh.
            let quietOffice = !confirms && wasFresh == isFresh
            // (A migration's step, reported or ordered, is placement's business at once.)
            let migrationMoved = h.migration != (peers[sender]?.report?.migration ?? [])
            if migrationMoved { office?.dirty = true }
            let routine = quietOffice && sameFacts && !migrationMoved && membership.isMember(sender) && h.configVersion == resources.version
                && h.configDigest == resources.digest && h.configCommitted == resources.committed
                && (!h.isCoordinator || (authority == sender && h.assigneeEpoch == ledger.epoch
                    && (h.assignmentsIncluded ? h.assignments == authorityAssignments && h.assignmentsRev == authorityRev : h.assignmentsRev == authorityRev)))
            membership.record(h, from: sender, now: now)
            ledger.heard(from: sender, epoch: h.epoch, sentAt: h.sentAt, now: now)
            ledger.report(from: sender, supportEpoch: h.supportEpoch, supportEcho: h.supportEcho, refused: h.refusedEpoch,
                          withdrawals: h.withdrawals, epochsSeen: h.epochsSeen, now: now)
            handleAuthority(from: sender, h, now: now)
            considerConfig(h, from: sender, now: now, out: &out)
            // Heartbeats in step with our coordinator's (or, without one, the lowest-id member's):
            // a heartbeat of it pulls our next one forward when that is due within half an
            // interval, so every node wakes about once per interval for receiving and sending
            // alike. A node whose clock runs fast sends a little before the reference's heartbeats
            // arrive: one that comes within `phaseSlack` after ours re-anchors our schedule to it.
            // So no interval between two heartbeats is longer than `interval + phaseSlack`.
            if sender == phaseReference, !h.offBeat, nextHeartbeatAt > now {
                if nextHeartbeatAt - now <= timing.interval / 2 {
                    nextHeartbeatAt = now
                    return evaluate(now: now, out: &out)
                }
                if now > lastHeartbeatAt, now - lastHeartbeatAt <= Self.phaseSlack {
                    nextHeartbeatAt = now + timing.interval
                }
            }
            if routine && !urgent && !factsUrgent && replyDue.isEmpty { return out }
        case .configRequest(let version, let offset):
            out.append(.send(to: sender, configPiece(from: version == resources.version ? Int(offset) : 0)))
        case .configData(let version, let digest, let offset, let total, let chunk, let standby):
            receiveConfigPiece(version: version, digest: digest, offset: Int(offset), total: Int(total), chunk: chunk, standby: standby, from: sender, now: now, out: &out)
        case .standbyProposal(let requestId, let node, let on):
            handleStandby(requestId: requestId, origin: sender, node: node, on: on, out: &out)
        case .fenceRecord(let rec):
            receiveFenceRecord(rec, from: sender, now: now, out: &out)
        case .fenceDelegate(let node):
            receiveFenceDelegate(node: node, from: sender, out: &out)
        case .statePage, .historyRequest, .historyChunk:  // (history: the shell's, see DaemonHistory)
            return out
        case .fenceRequest(let requestId, let node, let confirm):
            if let n = cluster.node(named: node) {
                handleFenceRequest(requestId: requestId, origin: sender, target: n.id, confirm: confirm, now: now, out: &out)
            }
        case .configProposal(let requestId, let offset, let total, let chunk):
            receiveProposalPiece(requestId: requestId, origin: sender, incarnation: inc, offset: Int(offset), total: Int(total), chunk: chunk, now: now, out: &out)
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

    public mutating func beginBatch() {
        batching = true
        evaluationWanted = false
    }

    /// Ends a batch: evaluates once if any input of it asked for an evaluation.
    public mutating func endBatch(now: UInt64) -> [Directive] {
        batching = false
        var out: [Directive] = []
        guard evaluationWanted else { return out }
        evaluationWanted = false
        return evaluate(now: now, out: &out)
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
        /// Cannot work on this node for now (an address that vanished or could not be added):
        /// move now, and forget it after `transientFailureMs` unless it is reported again.
        case transient
    }

    public static let transientFailureMs: UInt64 = 30_000

    // MARK: - the evaluation step

    mutating func evaluate(now: UInt64, out: inout [Directive]) -> [Directive] {
        if batching { evaluationWanted = true }
        if deferEvaluation || batching { return out }
        work.evaluations += 1
        updateMembership(now: now, out: &out)
        updateLeases(now: now, out: &out)
        updateVote(now: now, out: &out)
        updateCoordinator(now: now, out: &out)
        if cluster.isCorosyncPair { updatePairFencing(now: now, out: &out) }
        // Placement runs when an input changed (see `CoordinatorOffice.dirty`), when a wait runs
        // out, and as a safety net every second while anything waits (ten once all is placed).
        if urgent { office?.dirty = true }
        if factsUrgent { office?.factsChanged = true }
        if var o = office, o.dirty || now >= o.nextRound || (o.factsChanged && now >= o.lastRound + placementSpacing) {
            office = nil  // mutate a unique copy
            o.dirty = false
            o.factsChanged = false
            o.nextRound = .max
            o.lastRound = now
            work.placementRounds += 1
            place(now: now, office: &o, out: &out)
            office = o
        }
        applyDesired(now: now, out: &out)
        scheduleMonitors(now: now, out: &out)
        checkCommits(now: now, out: &out)
        if now >= nextHeartbeatAt || urgent || factsUrgent {
            (urgent, factsUrgent) = (false, false)
            lastHeartbeatAt = now
            nextHeartbeatAt = now + timing.interval
            sendHeartbeats(now: now, out: &out)
        } else {
            sendOffBeat(now: now, out: &out)
        }
        return out
    }
}
