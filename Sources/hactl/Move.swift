import Glibc
import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import VigilCore
import VigilIPC

/// `hactl move`, `ban`, `clear`: location constraints the cluster keeps until `clear` or until
/// their lifetime ends (README "hactl").
struct Move: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "move",
        abstract: "Move a resource (or its group) to NODE, or away from where it runs; the constraint stays until 'hactl clear' or --lifetime ends.")
    @OptionGroup var connection: Connection
    @Argument(help: "Resource or group.")
    var resource: String
    @Argument(help: "Node to move it to (default: away from the node it runs on).")
    var node: String?
    @Option(help: "How long the constraint lasts, e.g. 90s, 30m, 2h, 1d (default: until hactl clear).")
    var lifetime: String?
    @Option(help: "Wait up to this many seconds for the move to finish.")
    var wait: Double?

    func run() throws {
        let before = node == nil ? try runningOn(connection, resource) : []
        try changeCall(connection, IPCRequest(command: .move, resource: resource, node: node, lifetimeMs: try lifetimeMs(lifetime)))
        if let w = wait { try waitForMove(connection, resource, to: node, awayFrom: before, seconds: w) }
    }
}

struct Ban: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ban", abstract: "Keep a resource (or its group) off NODE until 'hactl clear' or --lifetime ends.")
    @OptionGroup var connection: Connection
    @Argument(help: "Resource or group.")
    var resource: String
    @Argument(help: "Node.")
    var node: String
    @Option(help: "How long the ban lasts, e.g. 90s, 30m, 2h, 1d (default: until hactl clear).")
    var lifetime: String?
    @Option(help: "Wait up to this many seconds for the resource to leave NODE.")
    var wait: Double?

    func run() throws {
        try changeCall(connection, IPCRequest(command: .ban, resource: resource, node: node, lifetimeMs: try lifetimeMs(lifetime)))
        if let w = wait { try waitForMove(connection, resource, to: nil, awayFrom: [node], seconds: w) }
    }
}

struct Clear: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "clear", abstract: "Drop what 'hactl move' and 'hactl ban' added for a resource (or its group).")
    @OptionGroup var connection: Connection
    @Argument(help: "Resource or group.")
    var resource: String

    func run() throws {
        try changeCall(connection, IPCRequest(command: .clear, resource: resource, node: nil, lifetimeMs: nil))
    }
}

/// "90s", "30m", "2h", "1d", "500ms" as milliseconds.
func lifetimeMs(_ text: String?) throws -> UInt64? {
    guard let t = text else { return nil }
    let units: [(String, UInt64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
    for (suffix, factor) in units where t.hasSuffix(suffix) {
        let n = t.dropLast(suffix.count)
        if suffix == "s" && n.hasSuffix("m") { continue }
        guard let v = UInt64(n), v > 0, v <= 3650 * 86_400_000 / factor else { break }
        return v * factor
    }
    throw ValidationError("--lifetime '\(t)' is not a duration: a whole number with ms, s, m, h or d (e.g. 30m)")
}

/// The members a name stands for in a status (a group: its members; a member: its group's).
private func members(_ st: ClusterStatus, _ name: String) -> [ClusterStatus.ResourceStatus] {
    let group = st.resources.first { $0.name == name }?.group ?? name
    let m = st.resources.filter { $0.group == group || $0.name == group }
    return m.isEmpty ? st.resources.filter { $0.name == name } : m
}

private func runningOn(_ c: Connection, _ name: String) throws -> [String] {
    guard let st = try c.call(IPCRequest(command: .status)).status else { return [] }
    return Array(Set(members(st, name).flatMap(\.runningOn))).sorted()
}

/// Polls the status until every member runs, started, on `to` (or anywhere but `awayFrom`);
/// exits 1 with the reason when one failed, or when the time is up.
private func waitForMove(_ c: Connection, _ name: String, to: String?, awayFrom: [String], seconds: Double) throws {
    let end = Date().addingTimeInterval(seconds)
    var last = ""
    while true {
        if let st = try c.call(IPCRequest(command: .status)).status {
            let m = members(st, name)
            if let bad = m.first(where: { $0.state == "failed" || $0.state == "blocked" }) {
                printErr("hactl: \(bad.name) \(bad.state): \(bad.detail ?? "no detail")")
                throw ExitCode(1)
            }
            let done = !m.isEmpty && m.allSatisfy { r in
                r.state == "started" && (to.map { r.runningOn == [$0] } ?? (!r.runningOn.isEmpty && Set(r.runningOn).isDisjoint(with: awayFrom)))
            }
            if done {
                print("\(name) runs on \(Array(Set(m.flatMap(\.runningOn))).sorted().joined(separator: ", "))")
                return
            }
            last = m.map { "\($0.name) \($0.state)\($0.runningOn.isEmpty ? "" : " on \($0.runningOn.joined(separator: ","))")\($0.detail.map { ": \($0)" } ?? "")" }.joined(separator: "; ")
        }
        if Date() >= end {
            printErr("hactl: the move did not finish within \(seconds) s: \(last)")
            throw ExitCode(1)
        }
        sleepSeconds(0.05)
    }
}
