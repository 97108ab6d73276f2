/// A heartbeat stays within one small datagram whatever the configuration holds: the facts of a
/// node and the assignments of a coordinator, which grow with the resources, travel inline only
/// while they fit `Message.heartbeatBudget`; otherwise in pages of the same bound sent just
/// before the heartbeat (and again with every heartbeat until the recipient acknowledged their
/// revision). The recipient assembles the pages of one (sender incarnation, revision) across
/// resends, so a lost page costs a resend of the set, not a restart of the transfer.
public struct StatePage: Sendable, Equatable {
    public enum Part: UInt8, Sendable {
        /// The sender's facts: name and flags (see `Message.encodeFacts`).
        case facts = 0
        /// A coordinator's assignments to the recipient: name and node id.
        case assignments = 1
    }

    public struct Entry: Sendable, Equatable {
        public var name: String
        /// Facts: the flags byte. Assignments: the node id.
        public var value: UInt32
        public init(name: String, value: UInt32) {
            self.name = name
            self.value = value
        }
    }

    public var part: Part
    public var rev: UInt64
    public var index: UInt16
    public var count: UInt16
    /// Strictly ascending by name, and every page's names after the previous page's.
    public var entries: [Entry]

    public init(part: Part, rev: UInt64, index: UInt16, count: UInt16, entries: [Entry]) {
        self.part = part
        self.rev = rev
        self.index = index
        self.count = count
        self.entries = entries
    }

    static let headerBytes = 1 + 8 + 2 + 2 + 2
    /// At most this many pages to one set (4096 names of 255 bytes do not need more).
    static let maxPages = 1024

    func entryBytes(_ e: Entry) -> Int { 1 + min(255, e.name.utf8.count) + (part == .facts ? 1 : 4) }

    func encode(_ w: inout ByteWriter) {
        w.u8(part.rawValue)
        w.u64(rev)
        w.u16(index)
        w.u16(count)
        w.u16(UInt16(entries.count))
        for e in entries {
            w.shortString(e.name)
            if part == .facts { w.u8(UInt8(truncatingIfNeeded: e.value)) } else { w.u32(e.value) }
        }
    }

    static func decode(_ r: inout ByteReader) throws(DecodeError) -> StatePage {
        guard let part = Part(rawValue: try r.u8()) else { throw DecodeError("unknown state page part") }
        let rev = try r.u64()
        let index = try r.u16()
        let count = try r.u16()
        guard count > 0, Int(count) <= maxPages, index < count else { throw DecodeError("state page \(index) of \(count) is out of bounds") }
        var entries: [Entry] = []
        var last: String?
        for _ in 0..<(try r.count(max: Message.maxNames)) {
            let name = try r.shortString()
            if let l = last, !(l < name) { throw DecodeError("state page names not in ascending order at '\(name)'") }
            last = name
            if part == .facts {
                let f = try r.u8()
                guard f != 0, f & ~63 == 0 else { throw DecodeError("invalid resource flags \(f) for '\(name)'") }
                entries.append(Entry(name: name, value: UInt32(f)))
            } else {
                entries.append(Entry(name: name, value: try r.node().rawValue))
            }
        }
        return StatePage(part: part, rev: rev, index: index, count: count, entries: entries)
    }

    /// Cuts `entries` (sorted) into pages whose payload fits `Message.heartbeatBudget`.
    public static func paginate(_ part: Part, rev: UInt64, entries: [Entry]) -> [StatePage] {
        var pages: [[Entry]] = [[]]
        var size = headerBytes
        let probe = StatePage(part: part, rev: rev, index: 0, count: 1, entries: [])
        for e in entries {
            let n = probe.entryBytes(e)
            if size + n > Message.heartbeatBudget, !(pages.last?.isEmpty ?? true) {
                pages.append([])
                size = headerBytes
            }
            pages[pages.count - 1].append(e)
            size += n
        }
        let count = UInt16(min(pages.count, maxPages))
        return pages.prefix(maxPages).enumerated().map { StatePage(part: part, rev: rev, index: UInt16($0.offset), count: count, entries: $0.element) }
    }
}

/// The pages of one set received so far from one sender.
struct PageAssembly: Sendable {
    var incarnation: UInt64
    var rev: UInt64
    var count: UInt16
    var pages: [UInt16: [StatePage.Entry]] = [:]

    /// The whole set once every page arrived and the names ascend across pages (nil otherwise).
    var complete: [StatePage.Entry]? {
        guard pages.count == Int(count) else { return nil }
        var all: [StatePage.Entry] = []
        for i in 0..<count {
            guard let p = pages[i] else { return nil }
            if let l = all.last, let f = p.first, !(l.name < f.name) { return nil }
            all += p
        }
        guard all.count <= Message.maxNames else { return nil }
        return all
    }
}

extension Heartbeat {
    /// The facts lists as page entries (name, flags), sorted.
    var factEntries: [StatePage.Entry] {
        var flags: [String: UInt8] = [:]
        flags.reserveCapacity(held.count + failed.count + fatal.count)
        for (bit, list) in [(UInt8(1), held), (2, started), (4, blocked), (8, failed), (16, fatal), (32, probingResources)] {
            for n in list { flags[n, default: 0] |= bit }
        }
        return flags.keys.sorted().map { StatePage.Entry(name: $0, value: UInt32(flags[$0] ?? 0)) }
    }

    /// Sets the facts lists from entries (name, flags) in ascending order.
    mutating func setFacts(_ entries: [StatePage.Entry]) {
        held = []; started = []; blocked = []; failed = []; fatal = []; probingResources = []
        for e in entries {
            if e.value & 1 != 0 { held.append(e.name) }
            if e.value & 2 != 0 { started.append(e.name) }
            if e.value & 4 != 0 { blocked.append(e.name) }
            if e.value & 8 != 0 { failed.append(e.name) }
            if e.value & 16 != 0 { fatal.append(e.name) }
            if e.value & 32 != 0 { probingResources.append(e.name) }
        }
    }

    /// Bytes the facts take inline.
    var factsWireSize: Int { 2 + factEntries.reduce(0) { $0 + 2 + min(255, $1.name.utf8.count) } }

    static func assignmentsWireSize(_ a: [String: NodeID]) -> Int { 2 + a.keys.reduce(0) { $0 + 5 + min(255, $1.utf8.count) } }
}

extension Message {
    /// The largest payload of a heartbeat or a state page: with the envelope's 80 bytes and an
    /// encryption tag's 16, a datagram of at most 1,232 bytes, which IPv6 (whose minimum MTU is
    /// 1,280 with 48 bytes of IPv6 and UDP headers) and tunnels such as WireGuard (1,420) carry
    /// unfragmented.
    public static let heartbeatBudget = 1_232 - 80 - 16
    /// The largest payload of any message (a configuration piece with the standby list); the
    /// envelope drops longer datagrams before computing their MAC.
    public static let maxPayload = 20_000

    /// A node's facts, compactly: every resource it holds, fails, probes or has a fatal error for,
    /// once, with a byte of flags (held, started, blocked, failed, fatal, probing). Each list
    /// comes out sorted.
    static func encodeFacts(_ h: Heartbeat, _ w: inout ByteWriter) {
        let entries = h.factEntries
        w.u16(UInt16(entries.count))
        for e in entries {
            w.shortString(e.name)
            w.u8(UInt8(truncatingIfNeeded: e.value))
        }
    }

    static func decodeFacts(_ h: inout Heartbeat, _ r: inout ByteReader) throws(DecodeError) {
        let n = try r.count(max: maxNames)
        var last: String?
        var entries: [StatePage.Entry] = []
        entries.reserveCapacity(n)
        for _ in 0..<n {
            let name = try r.shortString()
            // Strictly ascending: each name once, and every list comes out sorted.
            if let l = last, !(l < name) { throw DecodeError("resource facts not in ascending order at '\(name)'") }
            last = name
            let f = try r.u8()
            guard f != 0, f & ~63 == 0 else { throw DecodeError("invalid resource flags \(f) for '\(name)'") }
            entries.append(StatePage.Entry(name: name, value: UInt32(f)))
        }
        h.setFacts(entries)
    }
}
