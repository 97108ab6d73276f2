/// Peer-supported node leases: one lease per node, renewed by the echoes of any majority of
/// its peers, independent of the coordinator. Pure: every input carries `now` on this node's
/// own monotonic clock (milliseconds); timestamps of another node's clock are kept apart by name
/// (`sentAt`, `echo…`) and are only ever compared with that node's own clock.
///
/// ## Safety argument
///
/// Let `D` be the lease duration, `ρ` the bound on any clock's rate error (1/1000 by default),
/// `q` the majority of the `N` voters.
///
/// 1. **Promise.** Node P *supports* epoch `e` of node H when it accepts a heartbeat of H carrying
///    `e`, sent at `s` on H's clock. P promises not to *withdraw* `(H, e)` before `D·(1+ρ)` has
///    passed on its own clock since its latest such acceptance; in real time that is at least `D`
///    after H sent `s`, because P received it after H sent it.
/// 2. **Lease.** P echoes `(e, s)` of its latest accepted heartbeat. From that echo H knows P's
///    promise lasts at least until `s + D·(1−ρ)` on H's clock, which in real time is at most `D`
///    after H sent it. H's lease end is the time until which `q − 1` peers (H counts itself)
///    promised; H stops what it runs `margin` before it (and its guardian removes its addresses
///    then, whatever state `clusterd` is in).
/// 3. **Withdrawal is final.** P withdraws `(H, up to x)` only after it stopped accepting H's
///    heartbeats and the promise of its latest acceptance ran out; from then on P never
///    supports an epoch of H at or below `x` again, and reports the withdrawal in its heartbeats.
/// 4. **Moves.** What H ran may start elsewhere only when H confirmed its release, or `q` nodes
///    other than H withdrew H up to the newest epoch of H anyone reported. H's lease needs `q − 1`
///    supporters among the `N − 1` others and a move needs `q` withdrawers among them; since
///    `(q − 1) + q > N − 1`, some node both supported H and withdrew it, and its withdrawal came
///    after every promise it gave H, hence after H's lease ended (1, 2).
/// 5. **Epochs.** H takes a new epoch (higher than any earlier one, also across restarts: the epoch
///    embeds the persisted incarnation) only while it holds nothing. So whatever H runs, it runs
///    under one epoch, and a withdrawal of that epoch covers it.
/// 6. **Restarts.** A node that starts has forgotten the promises it gave: it neither supports nor
///    withdraws anything for `D·(1+ρ)` plus one failure timeout, long enough to have heard the
///    withdrawals the others report, which it adopts as refusals.
///
/// What the lease does *not* depend on: the coordinator. A coordinator's death or a lost
/// heartbeat changes nothing as long as some majority keeps echoing. Withdrawals are started only
/// when a majority of nodes (as far as this node knows) has lost contact with H, so loss on one
/// pair of nodes never costs H a supporter for good.
public struct SupportLedger: Sendable, Equatable {
    public struct Params: Sendable, Equatable {
        /// `D`: how long one acceptance is promised.
        public var duration: UInt64
        /// How long a node that has just started keeps out of supporting and withdrawing.
        public var startQuiet: UInt64
        /// Clock rate error bound, in parts per million.
        public var driftPPM: UInt64

        public init(duration: UInt64, startQuiet: UInt64, driftPPM: UInt64 = 1000) {
            self.duration = duration
            self.startQuiet = startQuiet
            self.driftPPM = driftPPM
        }

        /// `D·ρ`, rounded up.
        var slack: UInt64 { (duration * driftPPM + 999_999) / 1_000_000 }
        /// What a supporter waits after its latest acceptance before a withdrawal is final.
        public var promiseOnSupporter: UInt64 { duration + slack + 1 }
        /// What the holder counts from its own send time.
        public var promiseOnHolder: UInt64 { duration - min(duration, slack) }
    }

    /// Supporter side: what this node knows and promised about one other node.
    public struct Peer: Sendable, Equatable {
        /// Highest epoch of the node seen in any heartbeat or report.
        public var highestSeen: UInt64 = 0
        /// Epoch currently supported (0: none) and the latest accepted heartbeat of it.
        public var supported: UInt64 = 0
        public var acceptedAt: UInt64 = 0
        /// The node's send time of that heartbeat, on its clock: what we echo.
        public var echoSentAt: PeerTime = 0
        /// We stopped accepting its heartbeats; the withdrawal becomes final when the promise ran out.
        public var ceasing = false
        /// Our own final withdrawal: every epoch up to this one (nil: never withdrawn).
        public var withdrawnUpTo: UInt64?
        /// Epochs we refuse to support: our own withdrawals and those other nodes reported.
        public var refuseUpTo: UInt64 = 0
    }

    public enum Event: Sendable, Equatable {
        case ceasing(NodeID)
        case resumed(NodeID)
        case withdrew(NodeID, upTo: UInt64)
    }

    public let selfId: NodeID
    public let params: Params
    public let startedAt: UInt64
    public private(set) var epoch: UInt64
    /// Holder side: per peer, the end of its promise for our current epoch, on our clock.
    public private(set) var promises: [NodeID: UInt64] = [:]
    /// A peer reported withdrawing our current epoch.
    public private(set) var currentEpochWithdrawn = false
    public private(set) var peers: [NodeID: Peer] = [:]
    /// The peers' ids, ascending (fixed): `update` visits them in this order without sorting.
    let peerIds: [NodeID]
    /// Highest epoch seen of every node (ourselves included, peers once seen): reported so a
    /// coordinator can ask for withdrawals of the newest epoch anyone knows. Kept up to date
    /// where an epoch is seen or taken (it goes into every heartbeat: not rebuilt for each).
    public private(set) var epochsSeen: [NodeID: UInt64] = [:]

    /// `incarnation` is persisted and grows with every start, so epochs never repeat.
    public init(selfId: NodeID, peers ids: [NodeID], incarnation: UInt64, params: Params, now: UInt64) {
        self.selfId = selfId
        self.params = params
        self.startedAt = now
        self.epoch = Self.firstEpoch(incarnation: incarnation)
        for id in ids where id != selfId { peers[id] = Peer() }
        peerIds = peers.keys.sorted()
        epochsSeen[selfId] = epoch
    }

    /// The first epoch of an incarnation; a life can take 2^24 - 1 further epochs. Incarnations
    /// beyond 2^40 (one start a second for 34,000 years) wrap instead of trapping.
    public static func firstEpoch(incarnation: UInt64) -> UInt64 { (incarnation & 0xFF_FFFF_FFFF) << 24 | 1 }

    public var quietUntil: UInt64 { startedAt + params.startQuiet }

    // MARK: supporter side

    /// A fresh heartbeat of `node` (its epoch and send time).
    public mutating func heard(from node: NodeID, epoch e: UInt64, sentAt: PeerTime, now: UInt64) {
        guard var p = peers[node], e > 0 else { return }
        if e > p.highestSeen {
            p.highestSeen = e
            epochsSeen[node] = e
        }
        defer { peers[node] = p }
        guard now >= quietUntil, e > p.refuseUpTo, e >= p.supported else { return }
        if p.ceasing && e <= p.supported { return }
        if p.ceasing { p.ceasing = false }  // a new epoch after our decision: nothing of the old one runs under it
        p.supported = e
        p.acceptedAt = now
        p.echoSentAt = sentAt
    }

    /// What to echo to `node` in our next heartbeat: the epoch we support and its send time.
    public func echo(for node: NodeID) -> (epoch: UInt64, sentAt: PeerTime) {
        guard let p = peers[node], p.supported > 0, !p.ceasing else { return (0, 0) }
        return (p.supported, p.echoSentAt)
    }

    /// Decides ceasing and final withdrawals. `lost` are the nodes a majority (ourselves included,
    /// as far as the latest reports tell) has no two-way contact with; `member` our own view.
    public mutating func update(now: UInt64, member: (NodeID) -> Bool, lostByMajority: (NodeID) -> Bool) -> [Event] {
        var events: [Event] = []
        for id in peerIds {
            guard var p = peers[id] else { continue }
            let alreadyWithdrawn = p.withdrawnUpTo.map { $0 >= p.highestSeen && p.supported <= $0 } ?? false
            if !p.ceasing && !alreadyWithdrawn && !member(id) && lostByMajority(id) && now >= quietUntil {
                p.ceasing = true
                events.append(.ceasing(id))
            } else if p.ceasing && member(id) {
                p.ceasing = false
                events.append(.resumed(id))
            }
            if p.ceasing && now >= p.acceptedAt + params.promiseOnSupporter && now >= quietUntil {
                let upTo = max(p.highestSeen, p.supported)
                p.withdrawnUpTo = upTo
                p.refuseUpTo = max(p.refuseUpTo, upTo)
                p.supported = 0
                p.ceasing = false
                events.append(.withdrew(id, upTo: upTo))
            }
            peers[id] = p
        }
        return events
    }

    /// Our own final withdrawals, reported in every heartbeat.
    public var withdrawals: [NodeID: UInt64] {
        var out: [NodeID: UInt64] = [:]
        for (id, p) in peers { if let w = p.withdrawnUpTo { out[id] = w } }
        return out
    }

    public func withdrawn(_ node: NodeID) -> UInt64? { peers[node]?.withdrawnUpTo }
    /// The highest epoch of `node` we will not support (told to it in our heartbeats).
    public func refused(_ node: NodeID) -> UInt64 { peers[node]?.refuseUpTo ?? 0 }
    public func highestSeen(_ node: NodeID) -> UInt64 { node == selfId ? epoch : (peers[node]?.highestSeen ?? 0) }

    // MARK: holder side

    /// A peer's heartbeat: its echo of our epoch, its withdrawals and the epochs it has seen.
    /// `now` bounds the echo: our own send time cannot be in our future (a corrupt or hostile
    /// value is ignored rather than added to).
    public mutating func report(from peer: NodeID, supportEpoch: UInt64, supportEcho: UInt64, refused: UInt64,
                                withdrawals: [NodeID: UInt64], epochsSeen: [NodeID: UInt64], now: UInt64) {
        if (withdrawals[selfId] ?? 0) >= epoch || refused >= epoch {
            // Withdrawn, or refused because the peer learnt of a withdrawal: this epoch is dead
            // at that peer for good.
            promises[peer] = nil
            currentEpochWithdrawn = true
        } else if supportEpoch == epoch, supportEcho > 0, supportEcho <= now {
            let end = supportEcho + params.promiseOnHolder
            promises[peer] = max(promises[peer] ?? 0, end)
        }
        // Withdrawals other nodes made are refusals here too: a node that restarted and forgot
        // its own withdrawal must not bring a withdrawn epoch back to life.
        for (id, w) in withdrawals where id != selfId {
            guard var p = peers[id] else { continue }
            p.refuseUpTo = max(p.refuseUpTo, w)
            if p.supported <= p.refuseUpTo && !p.ceasing { p.supported = 0 }
            peers[id] = p
        }
        for (id, e) in epochsSeen where id != selfId {
            if var p = peers[id], e > p.highestSeen, e < UInt64.max {
                p.highestSeen = e
                peers[id] = p
                self.epochsSeen[id] = e
            }
        }
    }

    /// Until when (our clock) a majority of `voters` supports our current epoch.
    public func leaseEnd(majority: Int) -> UInt64 {
        let need = majority - 1
        if need <= 0 { return UInt64.max }
        // The need-th largest promise: the largest end that at least `need` promises reach (0 if
        // fewer than `need` peers promised). Without sorting into a new array: this runs every
        // loop round, over at most a few dozen peers.
        var best: UInt64 = 0
        for end in promises.values where end > best {
            var reaching = 0
            for other in promises.values where other >= end { reaching += 1 }
            if reaching >= need { best = end }
        }
        return best
    }

    /// A new epoch: only while nothing runs here (after a lease was lost or withdrawn).
    public mutating func newEpoch() {
        let bump = epoch & 0xFF_FFFF < 0xFF_FFFF ? epoch + 1 : epoch  // saturate within this life
        epoch = bump
        epochsSeen[selfId] = bump
        promises = [:]
        currentEpochWithdrawn = false
    }
}
