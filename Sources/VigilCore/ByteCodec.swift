/// Big-endian byte writer.
public struct ByteWriter {
    public private(set) var bytes: [UInt8] = []
    public init() { bytes.reserveCapacity(512) }
    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u16(_ v: UInt16) { bytes.append(UInt8(v >> 8)); bytes.append(UInt8(v & 0xFF)) }
    public mutating func u32(_ v: UInt32) {
        bytes.append(UInt8(truncatingIfNeeded: v >> 24))
        bytes.append(UInt8(truncatingIfNeeded: v >> 16))
        bytes.append(UInt8(truncatingIfNeeded: v >> 8))
        bytes.append(UInt8(truncatingIfNeeded: v))
    }
    public mutating func u64(_ v: UInt64) {
        u32(UInt32(truncatingIfNeeded: v >> 32))
        u32(UInt32(truncatingIfNeeded: v))
    }
    public mutating func bool(_ v: Bool) { u8(v ? 1 : 0) }
    public mutating func raw(_ b: [UInt8]) { bytes.append(contentsOf: b) }
    public mutating func string(_ s: String) {
        let u = Array(s.utf8)
        u32(UInt32(u.count))
        bytes.append(contentsOf: u)
    }
    /// A string cut to at most `max` bytes, on a character boundary (for free text such as
    /// errors, which the reader bounds: a longer one would make the whole message undecodable).
    public mutating func string(_ s: String, max: Int) {
        guard s.utf8.count > max else { return string(s) }
        var cut = ""
        var n = 0
        for ch in s {
            let k = ch.utf8.count
            if n + k > max { break }
            cut.append(ch)
            n += k
        }
        string(cut)
    }
    /// A name of at most 255 bytes, with a one-byte length (longer ones are cut; names are
    /// validated to be shorter long before they are sent).
    public mutating func shortString(_ s: String) {
        let u = s.utf8.prefix(255)
        u8(UInt8(u.count))
        bytes.append(contentsOf: u)
    }
    public mutating func reserve(_ n: Int) { bytes.reserveCapacity(n) }
}

/// Big-endian byte reader with bounds checks: malformed input throws, never traps.
public struct ByteReader {
    private let bytes: [UInt8]
    private let end: Int
    public private(set) var offset: Int
    /// Reads `bytes[offset..<end]` (`end` defaults to the whole array).
    public init(_ bytes: [UInt8], offset: Int = 0, end: Int? = nil) {
        self.bytes = bytes
        self.offset = offset
        self.end = min(bytes.count, end ?? bytes.count)
    }
    public var remaining: Int { end - offset }

    private mutating func take(_ n: Int) throws(DecodeError) -> ArraySlice<UInt8> {
        guard n >= 0, remaining >= n else { throw DecodeError("truncated message (needed \(n) bytes, \(remaining) left)") }
        defer { offset += n }
        return bytes[offset..<(offset + n)]
    }
    public mutating func u8() throws(DecodeError) -> UInt8 { try take(1).first ?? 0 }
    public mutating func u16() throws(DecodeError) -> UInt16 { try take(2).reduce(0) { $0 << 8 | UInt16($1) } }
    public mutating func u32() throws(DecodeError) -> UInt32 { try take(4).reduce(0) { $0 << 8 | UInt32($1) } }
    public mutating func u64() throws(DecodeError) -> UInt64 { try take(8).reduce(0) { $0 << 8 | UInt64($1) } }
    public mutating func bool() throws(DecodeError) -> Bool {
        let v = try u8()
        guard v <= 1 else { throw DecodeError("invalid boolean \(v)") }
        return v == 1
    }
    public mutating func raw(_ n: Int) throws(DecodeError) -> [UInt8] { Array(try take(n)) }
    public mutating func string(max: Int = 65_536) throws(DecodeError) -> String {
        let n = Int(try u32())
        guard n <= max else { throw DecodeError("string of \(n) bytes exceeds \(max)") }
        let b = try take(n)
        guard let s = String(validating: b, as: UTF8.self) else { throw DecodeError("string is not valid UTF-8") }
        return s
    }
    public mutating func shortString() throws(DecodeError) -> String {
        let n = Int(try u8())
        let b = try take(n)
        guard let s = String(validating: b, as: UTF8.self) else { throw DecodeError("name is not valid UTF-8") }
        return s
    }
    public mutating func count(max: Int) throws(DecodeError) -> Int {
        let n = Int(try u16())
        guard n <= max else { throw DecodeError("list of \(n) entries exceeds \(max)") }
        return n
    }
}

public struct DecodeError: Error, Equatable, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension Message {
    /// The largest piece of a configuration in one message, and the largest configuration.
    public static let maxChunk = 16_384
    public static let maxConfigBytes = 1 << 20

    static func readChunk(_ r: inout ByteReader) throws(DecodeError) -> (UInt32, UInt32, [UInt8]) {
        let offset = try r.u32()
        let total = try r.u32()
        let n = Int(try r.u32())
        // Pieces sit on chunk boundaries and are full but for the last: a peer cannot make us
        // keep more than the file's size.
        guard n <= maxChunk, Int(total) <= maxConfigBytes, Int(offset) % maxChunk == 0,
              n == min(maxChunk, Int(total) - min(Int(total), Int(offset))), Int(offset) + n <= Int(total) else {
            throw DecodeError("configuration piece \(offset)+\(n) of \(total) bytes is out of bounds")
        }
        return (offset, total, try r.raw(n))
    }
}
