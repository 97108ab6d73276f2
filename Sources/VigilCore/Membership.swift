/// Membership: two-way contact with every peer, per link.
///
/// Heartbeats go to every peer on every link and carry the sender's monotonic timestamp and the
/// latest timestamp it received from the recipient (the echo). A peer is a member only if we
/// heard it within `timeout` on some link *and* its latest heartbeat echoes one of our own
/// timestamps from within `timeout`: if A hears B but B does not hear A, neither counts the other.
/// A link that goes quiet while another still works is reported and changes nothing else.
public struct Membership: Sendable {
    public struct Peer: Sendable {
        public var id: NodeID
        public var name: String
        public var linkLastHeard: [UInt64?]
        public var linkUp: [Bool]
        public var lastHeard: UInt64?
        public var incarnation: UInt64 = 0
        public var lastSeq: UInt64 = 0
        /// Peer's latest `sentAt` (its clock) and when we received it (ours).
        public var peerSentAt: PeerTime = 0
        public var peerSentAtReceivedAt: UInt64 = 0
        /// Behind one reference (`Shared`): scans over the peers copy each peer, and a report
        /// holds a dozen lists and maps that would each be retained and released per copy.
        @Shared public var report: Heartbeat? = nil
        public var member = false
        /// `report.held` and `report.started` as sets: the coordinator looks every resource up
        /// in them; rebuilt only when the lists change.
        public internal(set) var heldSet: Set<String> = []
        public internal(set) var startedSet: Set<String> = []
    }

    public enum Change: Sendable, Equatable {
        case linkUp(peer: String, link: Int)
        case linkDown(peer: String, link: Int)
        case joined(String)
        case lost(String)
    }

    public let selfIncarnation: UInt64
    public let timeout: UInt64
    public internal(set) var peers: [NodeID: Peer] = [:]
    /// Every peer's id, ascending (fixed by the configuration): scans visit the peers in this
    /// order without sorting (or allocating) on every round.
    public let peerIds: [NodeID]
    /// The members, ascending; kept up to date by `update` (read by every heartbeat sent).
    public private(set) var members: [NodeID] = []
    /// Grows whenever what peers hold or run (`heldSet`, `startedSet`) or who is a member changes.
    public internal(set) var serial: UInt64 = 0

    public init(selfId: NodeID, incarnation: UInt64, nodes: [(id: NodeID, name: String)], links: Int, timeout: UInt64) {
        self.selfIncarnation = incarnation
        self.timeout = timeout
        var peers: [NodeID: Peer] = [:]
        for n in nodes where n.id != selfId {
            peers[n.id] = Peer(id: n.id, name: n.name, linkLastHeard: Array(repeating: nil, count: links),
                               linkUp: Array(repeating: false, count: links))
        }
        self.peers = peers
        // (From the keys: an id listed twice is one peer, as validation requires anyway.)
        self.peerIds = peers.keys.sorted()
    }

    /// An authenticated packet of `sender` arrived on `link`. Returns false when its content must
    /// not be applied: an older life of the sender, or a copy already received on another link
    /// (which only refreshes that link's liveness).
    public mutating func heard(from sender: NodeID, link: Int, incarnation inc: UInt64, seq: UInt64, now: UInt64) -> Bool {
        // Taken out and put back (here and below), not copied: a copy would retain each of the
        // peer's lists and copy the per-link one on every packet.
        guard var p = peers.removeValue(forKey: sender) else { return false }
        defer { peers[sender] = p }
        guard inc >= p.incarnation else { return false }
        if inc > p.incarnation {
            // The peer restarted: forget what its previous life told us.
            p.incarnation = inc
            p.lastSeq = 0
            p.report = nil
            p.heldSet = []
            p.startedSet = []
            p.peerSentAt = 0
            serial &+= 1
        }
        if link >= 0 && link < p.linkLastHeard.count { p.linkLastHeard[link] = now }
        p.lastHeard = now
        guard seq > p.lastSeq else { return false }
        p.lastSeq = seq
        return true
    }

    /// Records a heartbeat's content (after `heard` accepted it).
    public mutating func record(_ h: Heartbeat, from sender: NodeID, now: UInt64) {
        guard var p = peers.removeValue(forKey: sender) else { return }
        p.peerSentAt = h.sentAt
        p.peerSentAtReceivedAt = now
        if p.report?.held != h.held { p.heldSet = Set(h.held); serial &+= 1 }
        if p.report?.started != h.started { p.startedSet = Set(h.started); serial &+= 1 }
        p.report = h
        peers[sender] = p
    }

    /// Re-evaluates every peer at `now` (every loop round).
    public mutating func update(now: UInt64) -> [Change] {
        var changes: [Change] = []
        var membersChanged = false
        for id in peerIds {
            guard var p = peers.removeValue(forKey: id) else { continue }
            let heard = p.lastHeard.map { now < $0 + timeout } ?? false
            for l in 0..<p.linkUp.count {
                let up = p.linkLastHeard[l].map { now < $0 + timeout } ?? false
                guard up != p.linkUp[l] else { continue }
                p.linkUp[l] = up
                // A single dead link is worth telling; a whole node's loss is told once, below.
                if up { changes.append(.linkUp(peer: p.name, link: l)) } else if heard { changes.append(.linkDown(peer: p.name, link: l)) }
            }
            let echoed = p.report.map { $0.echoIncarnation == selfIncarnation && $0.echo > 0 && now < $0.echo + timeout } ?? false
            let member = heard && echoed
            if member != p.member {
                p.member = member
                serial &+= 1
                membersChanged = true
                changes.append(member ? .joined(p.name) : .lost(p.name))
            }
            peers[id] = p
        }
        if membersChanged { members = peerIds.filter { peers[$0]?.member ?? false } }
        return changes
    }

    public func isMember(_ id: NodeID) -> Bool { peers[id]?.member ?? false }
}
