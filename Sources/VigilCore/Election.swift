/// Exclusive, time-bounded votes and the coordinator's term.
///
/// Each node votes for at most one candidate (the lowest-id member, sticking to a living
/// coordinator). A candidate counts a vote only until `echo + lease - guard` on its own clock,
/// `echo` being its own timestamp that the ballot (the voter's heartbeat) carried; the voter,
/// which received that timestamp no earlier than it was sent, refuses to vote for anyone else
/// until `lastReceivedFromCandidate + lease + guard`, so it always honours the vote for longer
/// than the candidate counts it. A node is coordinator while it counts a majority (its own vote
/// included); majorities intersect, so at any instant at most one node believes it is
/// coordinator. Asymmetric links can waste a vote, never double one. The term (`termEnd`) is the
/// time until which the majority's votes stay counted: no authority a coordinator hands out
/// outlives it, so every earlier coordinator's authority has ended when a new one takes office.
public struct Election: Sendable, Equatable {
    public let selfId: NodeID
    public let majority: Int
    public let lease: UInt64
    public let guardTime: UInt64
    public private(set) var votedFor: NodeID?
    public private(set) var blockedUntil: UInt64
    public private(set) var isCoordinator = false
    public private(set) var termEnd: UInt64 = 0
    public private(set) var votesForSelf = 0

    /// What the voter knows of the node it currently votes for.
    public struct Current: Sendable {
        public var member: Bool
        public var coordinates: Bool
        public var leaving: Bool
        /// When we last received a heartbeat from it (our clock).
        public var lastReceived: UInt64?
        public init(member: Bool, coordinates: Bool, leaving: Bool, lastReceived: UInt64?) {
            self.member = member
            self.coordinates = coordinates
            self.leaving = leaving
            self.lastReceived = lastReceived
        }
    }

    public enum Change: Sendable, Equatable { case none, elected, resigned }

    /// A node that starts has forgotten whom it voted for: it votes for nobody until any vote
    /// of its previous life can no longer be counted.
    public init(selfId: NodeID, majority: Int, lease: UInt64, guardTime: UInt64, now: UInt64) {
        self.selfId = selfId
        self.majority = majority
        self.lease = lease
        self.guardTime = guardTime
        self.blockedUntil = now + lease + guardTime + lease / 1000 + 1
    }

    /// Moves the vote if it must; `candidate` is the lowest-id member not leaving (nil: none).
    /// Returns true when the vote changed.
    public mutating func updateVote(now: UInt64, candidate cand: NodeID?, current: Current?) -> Bool {
        var changed = false
        if votedFor != nil && votedFor != selfId {
            let c = current ?? Current(member: false, coordinates: false, leaving: false, lastReceived: nil)
            // Stick to a living coordinator (or the candidate); otherwise release the vote, which
            // stays binding until the candidate can no longer count it.
            if !c.member || (!c.coordinates && cand != votedFor) || (c.leaving && !c.coordinates) {
                blockedUntil = max(blockedUntil, (c.lastReceived ?? now) + lease + guardTime)
                votedFor = nil
                changed = true
            }
        } else if votedFor == selfId && cand != selfId && !isCoordinator {
            // Our own vote is counted only by us, so it can move at once; a coordinator keeps
            // its own vote (also while leaving, so it can hand over).
            votedFor = nil
            changed = true
        }
        if votedFor == nil && now >= blockedUntil && cand != nil {
            votedFor = cand
            changed = true
        }
        return changed
    }

    /// Counts the ballots for us: for every peer whose latest heartbeat votes for us, the echo of
    /// our own timestamp it carried. Returns whether we were elected or resigned.
    public mutating func updateTerm(now: UInt64, ballotEchoes: [UInt64]) -> Change {
        var expiries: [UInt64] = []
        if votedFor == selfId {
            let g = min(guardTime, lease)
            for echo in ballotEchoes where echo + lease - g > now { expiries.append(echo + lease - g) }
        }
        votesForSelf = votedFor == selfId ? 1 + expiries.count : 0
        let need = majority - 1
        let nowCoordinator = votedFor == selfId && expiries.count >= need
        if nowCoordinator {
            termEnd = need == 0 ? UInt64.max : expiries.sorted(by: >)[need - 1]
        }
        guard nowCoordinator != isCoordinator else { return .none }
        isCoordinator = nowCoordinator
        return nowCoordinator ? .elected : .resigned
    }
}
