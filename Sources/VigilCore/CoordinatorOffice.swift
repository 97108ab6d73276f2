/// The coordinator's working state. It exists only while this node is in office: created when
/// a majority's votes make it coordinator, dropped when it resigns, so nothing of an earlier
/// term (assignments, withdrawals, release confirmations) can leak into a later one.
struct CoordinatorOffice: Sendable {
    /// When this term began: reports count as fresh only if they answer a heartbeat sent since.
    let since: UInt64
    /// Nothing new starts before this instant (every earlier coordinator's authority to start
    /// things ended before our majority voted for us; the guard covers processing).
    let startBarrier: UInt64
    /// The published assignments: resource to node.
    var placement: [String: NodeID] = [:] { didSet { placementChanged = true; placementSerial &+= 1 } }
    /// Grows with every change of `placement`.
    var placementSerial: UInt64 = 0
    var placementChanged = true
    /// What each peer is told it runs, with the revision (see `Heartbeat.assignmentsRev`).
    var sent: [NodeID: (rev: UInt64, assignments: [String: NodeID])] = [:]
    /// When each resource was last withdrawn from a node.
    var withdrawnAt: [String: UInt64] = [:]
    /// Nodes each resource was assigned to during this term. Only those can have started it since
    /// our first heartbeat in office, so only they must confirm a release after a withdrawal.
    var assignedInOffice: [String: Set<NodeID>] = [:]
    /// Failovers under way: resource to (from node, reason).
    var failovers: [String: (from: String, reason: String)] = [:]
    /// Live migrations in progress (see EngineMigration.swift).
    var migrations: [String: Migration] = [:] { didSet { placementSerial &+= 1 } }
    /// Why a resource is not (yet) where the scheduler wants it.
    var waitingReason: [String: String] = [:]
    /// Members whose release of something we wait for: the echo (of our clock) a heartbeat of
    /// theirs must carry to count as that release. Only such a heartbeat, changed facts, a
    /// membership change or `nextRound` make placement run again.
    var awaitingEcho: [NodeID: UInt64] = [:]
    /// Fences under way or waiting for a retry, and those an operator asked for.
    var fencing: [NodeID: FenceJob] = [:]
    var manualFences: Set<NodeID> = []
    /// Placement inputs changed since the last round: anything (`dirty`, placed at once), or only
    /// progress of what runs where (`factsChanged`, see `Heartbeat.onlyProgress`: placed
    /// within `Engine.placementSpacing`).
    var dirty = true
    var factsChanged = false
    var nextRound: UInt64 = 0
    /// When the last round ran (rounds that changed inputs ask for are spaced from it).
    var lastRound: UInt64 = 0
    /// The safety-net round of placement while something waits, and once everything is placed.
    static let waitingRoundMs: UInt64 = 1000
    static let settledRoundMs: UInt64 = 10_000

    init(since: UInt64, guardTime: UInt64) {
        self.since = since
        self.startBarrier = since + guardTime
    }

    /// Whether `z`'s report answers a heartbeat sent late enough to count as its word on `r`:
    /// after the last withdrawal of `r` if we assigned `r` to `z` this term, else since the term began.
    func isFreshRelease(of r: String, by z: NodeID, echo: UInt64) -> Bool {
        guard echo >= since else { return false }
        guard assignedInOffice[r]?.contains(z) ?? false else { return true }
        // Strictly after the withdrawal: a heartbeat sent in the same millisecond, before it,
        // may still have carried the assignment.
        return echo > (withdrawnAt[r] ?? 0)
    }

    /// Splits the placement by node when it changed; a peer's revision grows only when its own
    /// assignments changed, so a move between two nodes costs the others nothing.
    mutating func refreshSent(serial: inout UInt64, peers: some Collection<NodeID>) {
        guard placementChanged || sent.count != peers.count else { return }
        placementChanged = false
        var byNode: [NodeID: [String: NodeID]] = [:]
        for (r, n) in placement { byNode[n, default: [:]][r] = n }
        for id in peers {
            let mine = byNode[id] ?? [:]
            if let s = sent[id], s.assignments == mine { continue }
            serial += 1
            sent[id] = (serial, mine)
        }
    }

    /// The echo `z`'s report must carry to count as its release of `r` (see `isFreshRelease`).
    func releaseEcho(of r: String, by z: NodeID) -> UInt64 {
        guard assignedInOffice[r]?.contains(z) ?? false else { return since }
        return max(since, (withdrawnAt[r] ?? 0) + 1)
    }

    mutating func assign(_ r: String, to node: NodeID) {
        placement[r] = node
        assignedInOffice[r, default: []].insert(node)
    }

    mutating func withdraw(_ r: String, now: UInt64) {
        placement[r] = nil
        withdrawnAt[r] = now
    }
}
