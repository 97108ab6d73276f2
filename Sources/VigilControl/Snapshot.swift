#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import VigilCore
import VigilSystem

/// `hactl snapshot -o FILE`: the whole state one node knows, for support and for simulation:
/// its status, the configuration in force (secrets masked as `hactl config show` masks them for
/// the caller), standby nodes, move/ban constraints, every node's holdings and failures as this
/// node last heard them, this node's fail counts, and the fencing history.
public struct Snapshot: Codable, Sendable {
    public static let formatVersion = 1
    public var format: Int = Snapshot.formatVersion
    /// UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    public var takenAt: String
    public var node: String
    public var status: ClusterStatus
    public var configVersion: UInt64
    public var config: String
    public var standby: [String]
    public var nodes: [ClusterStatus.NodeFacts]
    public var fenceHistory: [FenceRecord]

    public init(takenAt: String, node: String, status: ClusterStatus, configVersion: UInt64, config: String,
                standby: [String], nodes: [ClusterStatus.NodeFacts], fenceHistory: [FenceRecord]) {
        self.takenAt = takenAt
        self.node = node
        self.status = status
        self.configVersion = configVersion
        self.config = config
        self.standby = standby
        self.nodes = nodes
        self.fenceHistory = fenceHistory
    }

    /// Written atomically (temporary file, fsync, rename), readable by the caller only.
    public func write(to path: String) throws {
        try Files.writeAtomically(path, try json() + [10], mode: 0o600)
    }

    public func json() throws -> [UInt8] {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        return Array(try enc.encode(self))
    }
}
