import Foundation
import Glibc
import VigilCore
import VigilSystem

/// The node's state directory: the replicated resource configuration and the incarnation counter.
/// Every write is atomic (temporary file, fsync, rename).
public struct StateStore: Sendable {
    public let dir: String
    var resourcesPath: String { dir + "/resources.state" }
    var incarnationPath: String { dir + "/incarnation" }
    var fenceHistoryPath: String { dir + "/fence-history.json" }
    var failuresPath: String { dir + "/failures.json" }

    /// Fail counts kept over a restart: per resource, the wall-clock ms of each failure.
    struct Failures: Codable { var wallMs: [String: [UInt64]] }

    func loadFailures() throws -> [String: [UInt64]] {
        guard Files.exists(failuresPath) else { return [:] }
        let bytes = try Files.read(failuresPath, limit: 1 << 20)
        do {
            return try JSONDecoder().decode(Failures.self, from: Data(bytes)).wallMs
        } catch {
            throw SystemError("\(failuresPath) is damaged (\(error)); fail counts start at zero", errno: EINVAL)
        }
    }

    func saveFailures(_ wallMs: [String: [UInt64]]) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        try Files.writeAtomically(failuresPath, Array(try enc.encode(Failures(wallMs: wallMs))))
    }

    public init(dir: String) throws {
        self.dir = dir
        try Files.ensureDirectory(dir)
        if let problem = Files.privateDirectoryProblem(dir) {
            throw SystemError("state directory \(dir): \(problem); it holds the replicated configuration and the incarnation counter, so only the user running clusterd may change it", errno: EPERM)
        }
    }

    /// The next incarnation: strictly larger than any earlier start of this node, so peers
    /// can tell a restart from a replay.
    /// Unique among the nodes of the cluster file (see `Incarnation.next`); a damaged file stops
    /// the start with an error naming it.
    public func nextIncarnation(nodeIndex: Int) throws -> UInt64 {
        let stored = Files.exists(incarnationPath) ? try Files.readText(incarnationPath) : nil
        let next: UInt64
        do {
            next = try Incarnation.next(stored: stored, nowSeconds: WallClock.nowSeconds(), nodeIndex: nodeIndex)
        } catch {
            throw SystemError("\(incarnationPath) \(error.description): refusing to start, since a reused incarnation would let peers take new packets for replays; if this machine's clock is right, removing the file is safe (the counter restarts from the current time)", errno: EINVAL)
        }
        try Files.writeAtomically(incarnationPath, Array("\(next)\n".utf8))
        return next
    }

    public func loadResources() throws -> VersionedResources? {
        guard Files.exists(resourcesPath) else { return nil }
        let text = try Files.readText(resourcesPath)
        do {
            return try VersionedResources.parseStateFile(text)
        } catch {
            throw SystemError("\(resourcesPath): \(error.description)", errno: EINVAL)
        }
    }

    public func saveResources(_ r: VersionedResources) throws {
        try Files.writeAtomically(resourcesPath, Array(r.stateFileText.utf8))
    }

    /// The fencing history this node kept (oldest first, at most `Fencer.historyLimit`); a
    /// damaged file is an error for the caller to log, never a reason not to start.
    func loadFenceHistory() throws -> [FenceRecord] {
        guard Files.exists(fenceHistoryPath) else { return [] }
        let bytes = try Files.read(fenceHistoryPath, limit: 1 << 20)
        do {
            return Array(try JSONDecoder().decode([FenceRecord].self, from: Data(bytes)).suffix(Fencer.historyLimit))
        } catch {
            throw SystemError("\(fenceHistoryPath) is damaged (\(error)); the fencing history starts empty", errno: EINVAL)
        }
    }

    func saveFenceHistory(_ h: [FenceRecord]) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        try Files.writeAtomically(fenceHistoryPath, Array(try enc.encode(h)))
    }
}

extension String {
    func trimmingWhitespace() -> String {
        String(self.drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }
}
