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

    /// Standby names that are not nodes of `cluster` (sorted).
    public func unknownStandby(in cluster: ClusterConfig) -> [String] {
        standby.filter { cluster.node(named: $0) == nil }
    }

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

/// The node's saved copy of the replicated configuration (`state_dir/resources.state`): a header
/// line, `version=`, `standby=`, `checksum=` (FNV-1a of version, standby and text, in hex), then
/// the text. The checksum makes a damaged or truncated file an error instead of a different
/// configuration.
extension VersionedResources {
    public static let stateHeader = "# vigil resource configuration (format 2: with a checksum), replicated by the coordinator; do not edit (use hactl apply)\n"
    /// The header of files written before the checksum (read without one, for the upgrade).
    static let legacyStateHeader = "# vigil resource configuration, replicated by the coordinator; do not edit (use hactl apply)\n"

    public struct DamagedState: Error, Equatable, CustomStringConvertible {
        public var description: String
    }

    /// Covers everything after the header but the checksum line: version, standby and text.
    var stateChecksum: UInt64 {
        fnv1a64(Array("version=\(version)\nstandby=\(standby.joined(separator: ","))\n".utf8) + Array(text.utf8))
    }

    public var stateFileText: String {
        Self.stateHeader + "version=\(version)\nstandby=\(standby.joined(separator: ","))\nchecksum=\(String(stateChecksum, radix: 16))\n" + text
    }

    public static func parseStateFile(_ file: String) throws(DamagedState) -> VersionedResources {
        let checked = file.hasPrefix(stateHeader)
        guard checked || file.hasPrefix(legacyStateHeader) else { throw DamagedState(description: "unrecognised format (no header line)") }
        var rest = Substring(file.dropFirst(checked ? stateHeader.count : legacyStateHeader.count))
        func line(_ key: String) -> Substring? {
            guard rest.hasPrefix(key + "="), let nl = rest.firstIndex(of: "\n") else { return nil }
            let value = rest[rest.index(rest.startIndex, offsetBy: key.count + 1)..<nl]
            rest = rest[rest.index(after: nl)...]
            return value
        }
        guard let v = line("version").flatMap({ UInt64($0) }) else { throw DamagedState(description: "missing or damaged version line") }
        let standby = line("standby").map { $0.split(separator: ",").map(String.init) } ?? []
        let stored = checked ? line("checksum") : nil
        let r = VersionedResources(version: v, text: String(rest), standby: standby)
        if checked {
            guard let stored, let d = UInt64(stored, radix: 16), d == r.stateChecksum else {
                throw DamagedState(description: "checksum mismatch (the file is damaged or truncated)")
            }
        }
        return r
    }
}
