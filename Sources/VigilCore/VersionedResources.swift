/// A versioned resource configuration as replicated between nodes.
public struct VersionedResources: Sendable, Equatable {
    public var version: UInt64
    /// The operator's file as submitted (comments kept), so `hactl config show` prints it back.
    public var text: String
    /// Nodes in standby (`hactl standby NODE`): they run nothing.
    public var standby: [String]
    public var digest: UInt64

    public init(version: UInt64, text: String, standby: [String] = []) {
        self.version = version
        self.text = text
        self.standby = standby.sorted()
        self.digest = fnv1a64(Array(text.utf8) + [0] + Array(self.standby.joined(separator: ",").utf8))
    }

    public static let empty = VersionedResources(version: 0, text: "")

    /// Total order used when two nodes disagree: higher version wins, then the digest.
    public func isNewer(than other: VersionedResources) -> Bool {
        version != other.version ? version > other.version : digest > other.digest
    }
}

public func fnv1a64(_ bytes: [UInt8]) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in bytes {
        h ^= UInt64(b)
        h = h &* 0x0000_0100_0000_01B3
    }
    return h
}
