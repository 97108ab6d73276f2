import Glibc
import ArgumentParser
import VigilIPC

/// `hactl maintenance on|off`, `hactl unmanage|manage RESOURCE` (README "hactl").
struct Maintenance: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "maintenance",
        abstract: "Cluster maintenance: nothing is started, stopped or recovered; what runs keeps running, also when clusterd stops (an upgrade).")
    enum Mode: String, ExpressibleByArgument, CaseIterable { case on, off }
    @OptionGroup var connection: Connection
    @Argument(help: "on or off.")
    var mode: Mode

    func run() throws { try changeCall(connection, IPCRequest(command: .maintenance, text: mode.rawValue)) }
}

struct Unmanage: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "unmanage", abstract: "Leave a resource (or its group) alone: monitored and reported, never started, stopped or moved.")
    @OptionGroup var connection: Connection
    @Argument(help: "Resource or group.")
    var resource: String

    func run() throws { try changeCall(connection, IPCRequest(command: .unmanage, resource: resource, node: nil, lifetimeMs: nil)) }
}

struct Manage: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "manage", abstract: "Manage a resource (or its group) again: probed first, then handled as usual.")
    @OptionGroup var connection: Connection
    @Argument(help: "Resource or group.")
    var resource: String

    func run() throws { try changeCall(connection, IPCRequest(command: .manage, resource: resource, node: nil, lifetimeMs: nil)) }
}

/// Sends a change and prints the answer (exit 1 when refused).
func changeCall(_ c: Connection, _ req: IPCRequest) throws {
    let r = try c.call(req)
    guard r.ok else {
        printErr("hactl: \(r.message ?? "refused")")
        throw ExitCode(1)
    }
    print(r.message ?? "done")
}
