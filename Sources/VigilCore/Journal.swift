/// One entry of a node's journal of cluster events (`hactl history`): every hook event and
/// decision the node saw, with both of its clocks.
///
/// The wall clock orders events across machines once corrected by the offsets heartbeat echoes
/// measure (see `ClockOffsets`, `History`); the monotonic reading is kept for the node's own
/// order and for support. `seq` grows by one per record on a node, over restarts too (a start
/// continues after the last record in its journal file), so a fetch can resume after any record.
public struct JournalRecord: Codable, Sendable, Equatable {
    public var seq: UInt64
    /// Milliseconds since 1970 on the recording node's wall clock.
    public var wallMs: Int64
    /// The recording node's monotonic clock (ms).
    public var monoMs: UInt64
    /// The event as the log words it: its kind, then `key=value` fields (values with spaces quoted).
    public var text: String

    public init(seq: UInt64, wallMs: Int64, monoMs: UInt64, text: String) {
        self.seq = seq
        self.wallMs = wallMs
        self.monoMs = monoMs
        self.text = Self.clean(text)
    }

    /// Bounds every reading from a file or a peer is held to (far beyond any real clock), so
    /// that no arithmetic on them can overflow.
    public static let maxWall: Int64 = 1 << 53
    public static let maxSeq: UInt64 = 1 << 62
    public static let maxMono: UInt64 = 1 << 62

    /// The longest text a record keeps (a reason from an agent can be long; a record must fit a
    /// datagram of `Message.heartbeatBudget` with room to spare).
    public static let maxText = 400

    /// One line, no line breaks or control characters, at most `maxText` bytes.
    static func clean(_ s: String) -> String {
        var out = ""
        var n = 0
        for ch in s {
            let c: Character = ch.isNewline || (ch.asciiValue.map { $0 < 0x20 || $0 == 0x7F } ?? false) ? " " : ch
            let k = c.utf8.count
            if n + k > maxText { break }
            out.append(c)
            n += k
        }
        return out
    }

    /// The journal file's line: `v1 SEQ WALL MONO TEXT`.
    public var line: String { "v1 \(seq) \(wallMs) \(monoMs) \(text)\n" }

    /// Reads one line of a journal file; nil for anything else (a torn last line after a crash,
    /// a damaged or planted file): such lines are skipped and counted, never trusted.
    public static func parse(line: Substring) -> JournalRecord? {
        let parts = line.split(separator: " ", maxSplits: 4, omittingEmptySubsequences: false)
        guard parts.count == 5, parts[0] == "v1", let seq = UInt64(parts[1]), let wall = Int64(parts[2]), let mono = UInt64(parts[3]),
              seq > 0, seq < maxSeq, (0...maxWall).contains(wall), mono < maxMono,
              !parts[4].isEmpty, parts[4].utf8.count <= maxText else { return nil }
        let r = JournalRecord(seq: seq, wallMs: wall, monoMs: mono, text: String(parts[4]))
        return r.text == parts[4] ? r : nil
    }

    /// The event's kind (its first word).
    public var kind: String { String(text.prefix { $0 != " " }) }

    /// The event's `key=value` fields (a quoted value may hold spaces; `\"` inside is kept).
    public var fields: [String: String] { Self.fields(of: text) }

    public static func fields(of text: String) -> [String: String] {
        var out: [String: String] = [:]
        var rest = Substring(text)
        rest = rest.drop { $0 != " " }
        while !rest.isEmpty {
            rest = rest.drop { $0 == " " }
            guard let eq = rest.firstIndex(of: "=") else { break }
            let key = rest[rest.startIndex..<eq]
            var after = rest[rest.index(after: eq)...]
            var value = ""
            if after.first == "\"" {
                after = after.dropFirst()
                var escaped = false
                var end = after.endIndex
                for i in after.indices {
                    let c = after[i]
                    if escaped { value.append(c); escaped = false; continue }
                    if c == "\\" { escaped = true; continue }
                    if c == "\"" { end = i; break }
                    value.append(c)
                }
                rest = end < after.endIndex ? after[after.index(after: end)...] : ""
            } else {
                let end = after.firstIndex(of: " ") ?? after.endIndex
                value = String(after[after.startIndex..<end])
                rest = after[end...]
            }
            if !key.isEmpty, !key.contains(" "), out[String(key)] == nil { out[String(key)] = value }
        }
        return out
    }
}

extension JournalRecord {
    /// The bytes one record takes in a `historyChunk`.
    var wireSize: Int { 8 + 8 + 8 + 4 + text.utf8.count }

    func encode(_ w: inout ByteWriter) {
        w.u64(seq)
        w.u64(UInt64(bitPattern: wallMs))
        w.u64(monoMs)
        w.string(text, max: Self.maxText)
    }

    static func decode(_ r: inout ByteReader) throws(DecodeError) -> JournalRecord {
        let seq = try r.u64(), wall = Int64(bitPattern: try r.u64()), mono = try r.u64()
        guard seq > 0, seq < maxSeq, (0...maxWall).contains(wall), mono < maxMono else { throw DecodeError("history record out of range") }
        let text = try r.string(max: maxText)
        return JournalRecord(seq: seq, wallMs: wall, monoMs: mono, text: text)
    }
}

/// A piece of a node's journal as it travels (`Message.historyChunk`): records after `after`,
/// the responder's clocks at sending (`wallMinusMono`, `monoAt` for the asker's echo
/// sample), and where to continue. Each piece fits one unfragmented datagram.
public struct HistoryChunk: Sendable, Equatable {
    public var requestId: UInt64
    /// The asker's monotonic time its request carried, echoed.
    public var echo: UInt64
    /// The responder's monotonic clock when it answered.
    public var monoAt: UInt64
    /// The responder's wall clock minus its monotonic clock (ms), when it answered.
    public var wallMinusMono: Int64
    /// The records follow the one with this seq (the request's cursor).
    public var after: UInt64
    public var records: [JournalRecord]
    /// The responder has nothing after these; else ask again after the last record.
    public var done: Bool
    /// The last piece of this answer (a request is answered with up to `HistoryChunk.perRequest`).
    public var lastOfBatch: Bool

    public init(requestId: UInt64, echo: UInt64, monoAt: UInt64, wallMinusMono: Int64, after: UInt64, records: [JournalRecord], done: Bool, lastOfBatch: Bool) {
        self.requestId = requestId
        self.echo = echo
        self.monoAt = monoAt
        self.wallMinusMono = wallMinusMono
        self.after = after
        self.records = records
        self.done = done
        self.lastOfBatch = lastOfBatch
    }

    /// Pieces sent for one request before the asker asks for more.
    public static let perRequest = 16
    /// Records of at most this many bytes per piece: the chunk's own 45 bytes and the envelope
    /// stay inside `Message.heartbeatBudget`, so a piece is never fragmented.
    public static let recordBudget = Message.heartbeatBudget - 64

    static let maxRecords = 64

    /// Splits `records` (sorted by seq, all after `after`) into pieces of the budget, at most
    /// `perRequest` of them; the last says whether anything is left.
    public static func pieces(_ records: ArraySlice<JournalRecord>, after: UInt64, requestId: UInt64, echo: UInt64, monoAt: UInt64,
                              wallMinusMono: Int64) -> [HistoryChunk] {
        var out: [HistoryChunk] = []
        var rest = records
        var cursor = after
        while out.count < perRequest {
            var size = 0
            var take: [JournalRecord] = []
            while let r = rest.first, take.count < maxRecords, size + r.wireSize <= recordBudget {
                take.append(r)
                size += r.wireSize
                rest.removeFirst()
            }
            out.append(HistoryChunk(requestId: requestId, echo: echo, monoAt: monoAt, wallMinusMono: wallMinusMono, after: cursor,
                                    records: take, done: rest.isEmpty, lastOfBatch: false))
            cursor = take.last?.seq ?? cursor
            if rest.isEmpty { break }
        }
        if !out.isEmpty { out[out.count - 1].lastOfBatch = true }
        return out
    }

    func encode(_ w: inout ByteWriter) {
        w.u64(requestId)
        w.u64(echo)
        w.u64(monoAt)
        w.u64(UInt64(bitPattern: wallMinusMono))
        w.u64(after)
        w.u8((done ? 1 : 0) | (lastOfBatch ? 2 : 0))
        w.u16(UInt16(records.count))
        for r in records { r.encode(&w) }
    }

    static func decode(_ r: inout ByteReader) throws(DecodeError) -> HistoryChunk {
        let id = try r.u64(), echo = try r.u64(), mono = try r.u64(), d = Int64(bitPattern: try r.u64()), after = try r.u64()
        guard echo < JournalRecord.maxMono, mono < JournalRecord.maxMono, (-JournalRecord.maxWall...JournalRecord.maxWall).contains(d), after < JournalRecord.maxSeq else {
            throw DecodeError("history piece out of range")
        }
        let flags = try r.u8()
        guard flags <= 3 else { throw DecodeError("history piece flags \(flags)") }
        let n = try r.count(max: maxRecords)
        var records: [JournalRecord] = []
        records.reserveCapacity(n)
        var last = after
        for _ in 0..<n {
            let rec = try JournalRecord.decode(&r)
            guard rec.seq > last else { throw DecodeError("history records out of order (\(rec.seq) after \(last))") }
            last = rec.seq
            records.append(rec)
        }
        return HistoryChunk(requestId: id, echo: echo, monoAt: mono, wallMinusMono: d, after: after, records: records,
                            done: flags & 1 != 0, lastOfBatch: flags & 2 != 0)
    }
}
