import Glibc
import VigilSystem

/// One line per event on stderr (the journal under systemd):
/// `mono=<ms since boot> node=<name> <level> <message>`.
/// The monotonic stamp is shared by every process of a machine, so lines of several nodes
/// (the namespace lab) can be merged into one timeline.
public struct EventLog: Sendable {
    public let node: String
    public init(node: String) { self.node = node }

    public func info(_ message: String) { write("info", message) }
    public func warning(_ message: String) { write("warn", message) }
    public func error(_ message: String) { write("error", message) }

    private func write(_ level: String, _ message: String) {
        let line = "mono=\(MonotonicClock.nowMs()) node=\(node) \(level) \(message)\n"
        let bytes = Array(line.utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}
