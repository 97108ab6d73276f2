/// A reading of another node's monotonic clock (its milliseconds), as its heartbeat carried it.
///
/// Clocks of different machines have different origins and rates, so a peer time is only
/// stored, compared with other readings of the same peer, and echoed back to that peer, where
/// it is local time again. It has no arithmetic and does not compare with this node's own clock
/// (the `UInt64` milliseconds every input's `now` carries): the two cannot be mixed by mistake.
/// The conversions are explicit and exist only where a heartbeat is built or read.
public struct PeerTime: Hashable, Comparable, Sendable, CustomStringConvertible, ExpressibleByIntegerLiteral {
    /// The milliseconds as they travel on the wire.
    public let ms: UInt64

    public init(ms: UInt64) { self.ms = ms }
    public init(integerLiteral value: UInt64) { ms = value }

    /// Sending: our own clock, which the recipient holds as a peer time.
    public init(sentBy localNow: UInt64) { ms = localNow }

    /// The reading handed back to the node whose clock it is: to that node it is local time.
    public var echoed: UInt64 { ms }

    public static func < (a: PeerTime, b: PeerTime) -> Bool { a.ms < b.ms }
    public var description: String { "peer:\(ms)" }
}
