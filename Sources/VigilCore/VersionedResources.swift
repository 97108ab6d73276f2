/// A versioned resource configuration as replicated between nodes.
public struct VersionedResources: Sendable, Equatable {
    public var version: UInt64
    /// The operator's file as submitted (comments kept), so `hactl config show` prints it back.
    public var text: String
    /// Nodes in standby (`hactl standby NODE`): they run nothing.
    public var standby: [String]
    public var digest: UInt64
    /// A majority of the nodes stored this version (the coordinator saw it, and said so in its
    /// heartbeats). Not part of the digest: the content is the same before and after.
    ///
    /// Why it matters: a coordinator cut off (or crashed) right after a change may leave that
    /// change on itself and a minority, while the majority elects another coordinator that makes
    /// a different change under the same or a lower version number. Version numbers alone would
    /// then let the stale change win when the nodes meet again. So an unconfirmed version is
    /// taken only from the coordinator in office, and from anyone else only once confirmed; a
    /// confirmed version from the coordinator replaces an unconfirmed one whatever their numbers.
    public var committed: Bool

    public init(version: UInt64, text: String, standby: [String] = [], committed: Bool = false) {
        self.version = version
        self.text = text
        self.standby = standby.sorted()
        self.committed = committed
        self.digest = fnv1a64(Array(text.utf8) + [0] + Array(self.standby.joined(separator: ",").utf8))
    }

    /// Where every cluster starts (the same on every node, so confirmed by definition).
    public static let empty = VersionedResources(version: 0, text: "", committed: true)

    /// Standby names that are not nodes of `cluster` (sorted).
    public func unknownStandby(in cluster: ClusterConfig) -> [String] {
        standby.filter { cluster.node(named: $0) == nil }
    }

    /// Whether a node holding this configuration takes the one another node announces
    /// (`version`, `digest`, `committed`); `fromCoordinator`: announced by the coordinator in
    /// office. See `committed` for why.
    public func yields(to version: UInt64, digest: UInt64, committed: Bool, fromCoordinator: Bool) -> Bool {
        guard version != self.version || digest != self.digest else { return false }
        if fromCoordinator {
            // The coordinator's word, unless it is still behind a confirmed version of ours (it
            // takes ours then).
            return committed || !self.committed || version > self.version
        }
        // From anyone else only a confirmed version, and only a higher one: majorities
        // intersect, so the coordinator that made the later of two confirmed versions knew the
        // earlier and numbered it higher. A lower confirmed version does not replace an
        // unconfirmed one of ours: that may be the coordinator's own change on its way to a
        // majority (a stale one is replaced by the coordinator's word). At equal numbers the
        // confirmed one wins; the digest only makes the order total.
        guard committed else { return false }
        if version != self.version { return version > self.version }
        return !self.committed || digest > self.digest
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
/// line, `version=`, `standby=`, `committed=` (0 or 1), `checksum=` (FNV-1a of the lines before it
/// and the text, in hex), then the text. The checksum makes a damaged or truncated file an error
/// instead of a different configuration.
extension VersionedResources {
    public static let stateHeader = "# vigil resource configuration (format 3: confirmation and checksum), replicated by the coordinator; do not edit (use hactl apply)\n"
    /// Format 2 (a checksum, no confirmation flag) and the format before it (neither): read for
    /// the upgrade, as confirmed (those versions did not know the difference).
    public static let format2StateHeader = "# vigil resource configuration (format 2: with a checksum), replicated by the coordinator; do not edit (use hactl apply)\n"
    static let legacyStateHeader = "# vigil resource configuration, replicated by the coordinator; do not edit (use hactl apply)\n"

    public struct DamagedState: Error, Equatable, CustomStringConvertible {
        public var description: String
    }

    /// Covers everything after the header but the checksum line. (Format 2 had no `committed=`.)
    public func stateChecksum(format: Int = 3) -> UInt64 {
        let flag = format >= 3 ? "committed=\(committed ? 1 : 0)\n" : ""
        return fnv1a64(Array("version=\(version)\nstandby=\(standby.joined(separator: ","))\n\(flag)".utf8) + Array(text.utf8))
    }

    public var stateFileText: String {
        Self.stateHeader + "version=\(version)\nstandby=\(standby.joined(separator: ","))\ncommitted=\(committed ? 1 : 0)\n"
            + "checksum=\(String(stateChecksum(), radix: 16))\n" + text
    }

    public static func parseStateFile(_ file: String) throws(DamagedState) -> VersionedResources {
        let format = file.hasPrefix(stateHeader) ? 3 : file.hasPrefix(format2StateHeader) ? 2 : file.hasPrefix(legacyStateHeader) ? 1 : 0
        guard format > 0 else { throw DamagedState(description: "unrecognised format (no header line)") }
        let checked = format >= 2
        var rest = Substring(file.dropFirst([0, legacyStateHeader.count, format2StateHeader.count, stateHeader.count][format]))
        func line(_ key: String) -> Substring? {
            guard rest.hasPrefix(key + "="), let nl = rest.firstIndex(of: "\n") else { return nil }
            let value = rest[rest.index(rest.startIndex, offsetBy: key.count + 1)..<nl]
            rest = rest[rest.index(after: nl)...]
            return value
        }
        guard let v = line("version").flatMap({ UInt64($0) }) else { throw DamagedState(description: "missing or damaged version line") }
        let standby = line("standby").map { $0.split(separator: ",").map(String.init) } ?? []
        var committed = true
        if format >= 3 {
            switch line("committed") {
            case "0": committed = false
            case "1": committed = true
            default: throw DamagedState(description: "missing or damaged committed line")
            }
        }
        let stored = checked ? line("checksum") : nil
        let r = VersionedResources(version: v, text: String(rest), standby: standby, committed: committed)
        if checked {
            guard let stored, let d = UInt64(stored, radix: 16), d == r.stateChecksum(format: format) else {
                throw DamagedState(description: "checksum mismatch (the file is damaged or truncated)")
            }
        }
        return r
    }
}
