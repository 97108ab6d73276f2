/// Messages exchanged between nodes. The envelope (authentication, sequence numbers)
/// lives in VigilWire; these are the payloads the engine understands.

/// Sent every heartbeat interval on every link to every peer, and at once when
/// something the peers must know changes.
public struct Heartbeat: Sendable, Equatable {
    /// Sender's monotonic clock (ms) when sent: to the recipient a `PeerTime`, which it only
    /// echoes back.
    public var sentAt: PeerTime
    /// The recipient's incarnation and the latest `sentAt` the sender received from it, echoed:
    /// the recipient's own clock again (as is `supportEcho`), so leases and two-way contact are
    /// measured on one clock.
    public var echoIncarnation: UInt64
    public var echo: UInt64
    /// Node id the sender votes for as coordinator (0: none, e.g. while its previous vote is still binding).
    public var vote: NodeID?
    /// The sender holds a majority of votes.
    public var isCoordinator: Bool
    /// Coordinator only: the recipient may act on `assignments` (start what they give it) until
    /// `echo + leaseMs` on its own clock (0: none). Never longer than the coordinator's own
    /// remaining term, so every such authority has run out before any successor is elected.
    /// Keeping what already runs needs no coordinator: that is the node's own lease.
    public var leaseMs: UInt32
    /// The sender is shutting down gracefully and hands its resources over.
    public var leaving: Bool
    public var configVersion: UInt64
    public var configDigest: UInt64
    /// A majority stored that version (see `VersionedResources.committed`).
    public var configCommitted = false
    /// Resources the sender currently runs (including ones it is starting).
    public var held: [String]
    /// Resources that failed on the sender and must not be placed there.
    public var failed: [String]
    /// Coordinator only: resource name to node id.
    public var assignments: [String: NodeID]
    /// Peers the sender has bidirectional contact with.
    public var members: [NodeID]
    /// Resources confirmed running on the sender (a subset of `held`).
    public var started: [String] = []
    /// Resources whose stop failed on the sender: they may still run there.
    public var blocked: [String] = []
    /// Resources whose agent reported a configuration error on the sender.
    public var fatal: [String] = []
    /// The sender is still asking its agents what already runs (start-up or new resources).
    public var probing = false
    /// Which resources it is still probing (part of the facts).
    public var probingResources: [String] = []
    /// The sender's lease epoch (see `SupportLedger`): peers support it by echoing `sentAt`.
    public var epoch: UInt64 = 0
    /// The recipient's epoch the sender supports, and the recipient's `sentAt` it accepted last
    /// (0: no support). The recipient's lease rests on these echoes, not on the coordinator.
    public var supportEpoch: UInt64 = 0
    public var supportEcho: UInt64 = 0
    /// Coordinator: the recipient's epoch the coordinator last heard. The recipient starts what
    /// `assignments` give it only under that epoch (an assignment never outlives the epoch it
    /// was made for). Everyone: the highest epoch of the recipient the sender refuses to support
    /// (its own withdrawals and those it learnt of), so the recipient knows to take a new one.
    public var assigneeEpoch: UInt64 = 0
    public var refusedEpoch: UInt64 = 0
    /// The sender's final withdrawals: node id to the highest epoch withdrawn.
    public var withdrawals: [NodeID: UInt64] = [:]
    /// The highest epoch the sender has seen of every node.
    public var epochsSeen: [NodeID: UInt64] = [:]
    /// Revision of the sender's facts (`held`, `started`, `failed`, `blocked`, `fatal`) within its
    /// incarnation; it grows whenever one of them changes. The facts travel only to a peer that
    /// has not acknowledged this revision (`factsIncluded`); otherwise they are the facts of that
    /// revision, which the recipient holds. A heartbeat's size does not grow with what the sender
    /// runs, except until every peer has its latest facts.
    public var factsRev: UInt64 = 0
    public var factsIncluded = true
    /// The recipient's `factsRev` whose facts the sender holds (for the recipient's incarnation
    /// `echoIncarnation`; 0: none).
    public var factsAck: UInt64 = 0
    /// Coordinator: the revision of `assignments` for the recipient (unique within the
    /// coordinator's incarnation); sent only until the recipient acknowledged it.
    public var assignmentsRev: UInt64 = 0
    public var assignmentsIncluded = true
    /// The sender has not heard from, or been echoed by, the recipient for longer than the
    /// heartbeats' rhythm explains: answer at once with a heartbeat of your own (`offBeat`). A lost
    /// heartbeat so costs a round trip of delay, not an interval, without a faster rhythm.
    public var wantsReply = false
    /// Sent outside the sender's rhythm (a reply, or a question to a late peer): it does not pull
    /// the recipient's schedule.
    public var offBeat = false
    /// To the sender's coordinator: the revision of its assignments the sender holds (0: none).
    public var assignmentsAck: UInt64 = 0
    /// Live migrations: the coordinator's orders for the recipient, the sender's own progress
    /// (see `MigrationEntry`). On the wire only when not empty, after everything else.
    public var migration: [MigrationEntry] = []

    public init(
        sentAt: PeerTime, echoIncarnation: UInt64 = 0, echo: UInt64 = 0, vote: NodeID? = nil, isCoordinator: Bool = false,
        leaseMs: UInt32 = 0, leaving: Bool = false, configVersion: UInt64 = 0, configDigest: UInt64 = 0,
        held: [String] = [], failed: [String] = [], assignments: [String: NodeID] = [:], members: [NodeID] = []
    ) {
        self.sentAt = sentAt
        self.echoIncarnation = echoIncarnation
        self.echo = echo
        self.vote = vote
        self.isCoordinator = isCoordinator
        self.leaseMs = leaseMs
        self.leaving = leaving
        self.configVersion = configVersion
        self.configDigest = configDigest
        self.held = held
        self.failed = failed
        self.assignments = assignments
        self.members = members
    }
}

extension Heartbeat {
    /// Takes the facts lists of `other` (`held`, `started`, `blocked`, `failed`, `fatal`,
    /// `probingResources`), as of its `factsRev`.
    public mutating func copyFacts(from other: Heartbeat) {
        held = other.held
        started = other.started
        blocked = other.blocked
        failed = other.failed
        fatal = other.fatal
        probingResources = other.probingResources
    }

    /// The same facts lists as `other`.
    public func sameFacts(as o: Heartbeat) -> Bool {
        held == o.held && started == o.started && blocked == o.blocked && failed == o.failed && fatal == o.fatal
            && probingResources == o.probingResources
    }

    /// Equal in everything placement depends on (timestamps and echoes aside).
    public func samePlacementFacts(as o: Heartbeat) -> Bool {
        factsRev == o.factsRev && probing == o.probing && sameFacts(as: o) && sameStanding(as: o)
    }

    /// Whether `n`, the same node's next report, differs from this one only by progress: what a
    /// probe storm or a mass start produces (probes answered, resources starting or started).
    /// Nothing released, failed or blocked, and the same standing (see `sameStanding`): the
    /// coordinator may wait `placementSpacing` before placing again.
    public func onlyProgress(to n: Heartbeat) -> Bool {
        sameStanding(as: n) && failed == n.failed && fatal == n.fatal && blocked == n.blocked && Set(n.held).isSuperset(of: held)
    }

    /// Equal in what placement depends on apart from what runs where: votes, membership,
    /// epochs, withdrawals, leaving, configuration.
    public func sameStanding(as o: Heartbeat) -> Bool {
        vote == o.vote && isCoordinator == o.isCoordinator && leaving == o.leaving
            && configVersion == o.configVersion && configDigest == o.configDigest && configCommitted == o.configCommitted
            && members == o.members && epoch == o.epoch && withdrawals == o.withdrawals && epochsSeen == o.epochsSeen
    }
}

public enum Message: Sendable, Equatable {
    case heartbeat(Heartbeat)
    /// Ask a peer for its resource configuration (it announced a newer one), from byte `offset`.
    case configRequest(version: UInt64, offset: UInt32)
    /// One piece of a configuration: `chunk` holds bytes `offset..<offset+chunk.count` of `total`
    /// (a file larger than one datagram travels in pieces, each asked for in turn).
    case configData(version: UInt64, digest: UInt64, offset: UInt32, total: UInt32, chunk: [UInt8], standby: [String])
    /// A node forwards an operator's `hactl apply` to the coordinator, in pieces.
    case configProposal(requestId: UInt64, offset: UInt32, total: UInt32, chunk: [UInt8])
    case configResult(requestId: UInt64, ok: Bool, version: UInt64, message: String)
    /// `hactl cleanup`: forget failures of a resource (and retry a failed stop).
    case cleanup(resource: String)
    /// A node forwards `hactl standby/unstandby NODE` to the coordinator.
    case standbyProposal(requestId: UInt64, node: String, on: Bool)
    /// A fence outcome, sent to every node by the node that ran it.
    case fenceRecord(FenceRecord)
    /// `hactl fence NODE` forwarded to the coordinator (`confirm`: the operator says it is off).
    case fenceRequest(requestId: UInt64, node: String, confirm: Bool)
    /// The coordinator, whose own stop of a `fencing` resource failed, asks a member to fence it.
    case fenceDelegate(node: String)
    /// A page of the sender's facts or of a coordinator's assignments (see `StatePage`).
    case statePage(StatePage)
    /// `hactl history`: the asker's request for the records after `after` with wall time from
    /// `sinceWallMs` (the responder's clock) on, carrying its monotonic clock for the echo.
    case historyRequest(requestId: UInt64, after: UInt64, sinceWallMs: Int64, sentAt: UInt64)
    /// A piece of the responder's journal (see `HistoryChunk`).
    case historyChunk(HistoryChunk)

    public var kind: UInt8 {
        switch self {
        case .heartbeat: return 1
        case .configRequest: return 2
        case .configData: return 3
        case .configProposal: return 4
        case .configResult: return 5
        case .cleanup: return 6
        case .standbyProposal: return 7
        case .fenceRecord: return 8
        case .fenceRequest: return 9
        case .fenceDelegate: return 10
        case .statePage: return 11
        case .historyRequest: return 12
        case .historyChunk: return 13
        }
    }
}

extension Message {
    static let maxNames = 4096
    static let maxNameBytes = 255

    public func encodePayload() -> [UInt8] {
        var w = ByteWriter()
        switch self {
        case .heartbeat(let h):
            w.u64(h.sentAt.ms)
            w.u64(h.echoIncarnation)
            w.u64(h.echo)
            w.node(h.vote)
            var flags: UInt8 = 0
            if h.isCoordinator { flags |= 1 }
            if h.probing { flags |= 2 }
            if h.leaving { flags |= 4 }
            if h.factsIncluded { flags |= 8 }
            if h.assignmentsIncluded { flags |= 16 }
            if h.wantsReply { flags |= 32 }
            if h.offBeat { flags |= 64 }
            if h.configCommitted { flags |= 128 }
            w.u8(flags)
            w.u32(h.leaseMs)
            w.u64(h.configVersion)
            w.u64(h.configDigest)
            w.u64(h.factsRev)
            w.u64(h.factsAck)
            w.u64(h.assignmentsRev)
            w.u64(h.assignmentsAck)
            if h.factsIncluded { Self.encodeFacts(h, &w) }
            if h.assignmentsIncluded {
                let keys = h.assignments.keys.sorted()
                w.u16(UInt16(keys.count))
                for k in keys {
                    w.shortString(k)
                    w.node(h.assignments[k])
                }
            }
            w.u16(UInt16(h.members.count))
            for m in h.members { w.node(m) }
            w.u64(h.epoch)
            w.u64(h.supportEpoch)
            w.u64(h.supportEcho)
            w.u64(h.assigneeEpoch)
            w.u64(h.refusedEpoch)
            w.nodeMap(h.withdrawals)
            w.nodeMap(h.epochsSeen)
            if !h.migration.isEmpty { MigrationEntry.encode(h.migration, &w) }
        case .configRequest(let v, let offset):
            w.u64(v)
            w.u32(offset)
        case .configData(let v, let digest, let offset, let total, let chunk, let standby):
            w.u64(v)
            w.u64(digest)
            w.u32(offset)
            w.u32(total)
            w.u32(UInt32(chunk.count))
            w.raw(chunk)
            w.u16(UInt16(standby.count))
            for n in standby { w.string(n) }
        case .configProposal(let id, let offset, let total, let chunk):
            w.u64(id)
            w.u32(offset)
            w.u32(total)
            w.u32(UInt32(chunk.count))
            w.raw(chunk)
        case .configResult(let id, let ok, let v, let msg):
            w.u64(id)
            w.bool(ok)
            w.u64(v)
            w.string(msg, max: 4096)
        case .cleanup(let r):
            w.string(r)
        case .standbyProposal(let id, let node, let on):
            w.u64(id)
            w.string(node)
            w.bool(on)
        case .fenceRecord(let rec):
            rec.encode(&w)
        case .fenceRequest(let id, let node, let confirm):
            w.u64(id)
            w.string(node)
            w.bool(confirm)
        case .fenceDelegate(let node):
            w.string(node)
        case .historyRequest(let id, let after, let since, let sentAt):
            w.u64(id)
            w.u64(after)
            w.u64(UInt64(bitPattern: since))
            w.u64(sentAt)
        case .historyChunk(let c):
            c.encode(&w)
        case .statePage(let p):
            p.encode(&w)
        }
        return w.bytes
    }

    public static func decode(kind: UInt8, payload: [UInt8]) throws(DecodeError) -> Message {
        var r = ByteReader(payload)
        let m: Message
        switch kind {
        case 1:
            var h = Heartbeat(sentAt: PeerTime(ms: try r.u64()))
            h.echoIncarnation = try r.u64()
            h.echo = try r.u64()
            h.vote = try r.optionalNode()
            let flags = try r.u8()
            h.isCoordinator = flags & 1 != 0
            h.probing = flags & 2 != 0
            h.leaving = flags & 4 != 0
            h.factsIncluded = flags & 8 != 0
            h.assignmentsIncluded = flags & 16 != 0
            h.wantsReply = flags & 32 != 0
            h.offBeat = flags & 64 != 0
            h.configCommitted = flags & 128 != 0
            h.leaseMs = try r.u32()
            h.configVersion = try r.u64()
            h.configDigest = try r.u64()
            h.factsRev = try r.u64()
            h.factsAck = try r.u64()
            h.assignmentsRev = try r.u64()
            h.assignmentsAck = try r.u64()
            if h.factsIncluded { try decodeFacts(&h, &r) }
            if h.assignmentsIncluded {
                let n = try r.count(max: maxNames)
                h.assignments = Dictionary(minimumCapacity: n)
                for _ in 0..<n {
                    let k = try r.shortString()
                    guard h.assignments.updateValue(try r.node(), forKey: k) == nil else { throw DecodeError("resource '\(k)' assigned twice") }
                }
            }
            // (Sized up front: a heartbeat is decoded on every arrival, nine peers ten times a second.)
            let memberCount = try r.count(max: 64)
            h.members.reserveCapacity(memberCount)
            for _ in 0..<memberCount { h.members.append(try r.node()) }
            h.epoch = try r.u64()
            h.supportEpoch = try r.u64()
            h.supportEcho = try r.u64()
            h.assigneeEpoch = try r.u64()
            h.refusedEpoch = try r.u64()
            // (Maps made at their size, not grown with `reserveCapacity`: that one is not
            // specialised and looks up the map's type metadata in the runtime on every call.)
            let withdrawalCount = try r.count(max: 64)
            if withdrawalCount > 0 { h.withdrawals = Dictionary(minimumCapacity: withdrawalCount) }
            for _ in 0..<withdrawalCount { h.withdrawals[try r.node()] = try r.u64() }
            let seenCount = try r.count(max: 64)
            if seenCount > 0 { h.epochsSeen = Dictionary(minimumCapacity: seenCount) }
            for _ in 0..<seenCount { h.epochsSeen[try r.node()] = try r.u64() }
            if r.remaining > 0 { h.migration = try MigrationEntry.decodeList(&r) }
            m = .heartbeat(h)
        case 2:
            m = .configRequest(version: try r.u64(), offset: try r.u32())
        case 3:
            let v = try r.u64()
            let digest = try r.u64()
            let (offset, total, chunk) = try readChunk(&r)
            var standby: [String] = []
            for _ in 0..<(try r.count(max: 64)) { standby.append(try r.string(max: maxNameBytes)) }
            m = .configData(version: v, digest: digest, offset: offset, total: total, chunk: chunk, standby: standby)
        case 4:
            let id = try r.u64()
            let (offset, total, chunk) = try readChunk(&r)
            m = .configProposal(requestId: id, offset: offset, total: total, chunk: chunk)
        case 5:
            m = .configResult(requestId: try r.u64(), ok: try r.bool(), version: try r.u64(), message: try r.string(max: 4096))
        case 6:
            m = .cleanup(resource: try r.string(max: maxNameBytes))
        case 7:
            m = .standbyProposal(requestId: try r.u64(), node: try r.string(max: maxNameBytes), on: try r.bool())
        case 8:
            m = .fenceRecord(try FenceRecord.decode(&r))
        case 9:
            m = .fenceRequest(requestId: try r.u64(), node: try r.string(max: maxNameBytes), confirm: try r.bool())
        case 10:
            m = .fenceDelegate(node: try r.string(max: maxNameBytes))
        case 11:
            m = .statePage(try StatePage.decode(&r))
        case 12:
            m = .historyRequest(requestId: try r.u64(), after: try r.u64(), sinceWallMs: Int64(bitPattern: try r.u64()), sentAt: try r.u64())
        case 13:
            m = .historyChunk(try HistoryChunk.decode(&r))
        default:
            throw DecodeError("unknown message kind \(kind)")
        }
        guard r.remaining == 0 else { throw DecodeError("\(r.remaining) trailing bytes after message") }
        return m
    }
}
