import Glibc
import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import VigilControl
import VigilCore
import VigilIPC

struct Connection: ParsableArguments {
    @Option(name: .long, help: "IPC service name of the local clusterd (default: $VIGIL_IPC or 'vigil').")
    var ipc: String?

    var service: String { ipc ?? ProcessInfo.processInfo.environment["VIGIL_IPC"] ?? "vigil" }

    func call(_ req: IPCRequest) throws -> IPCResponse {
        // libqb's connect has no timeout: a clusterd whose loop is stuck would hang hactl for
        // good. 20 s (above the 15 s answer timeout) for each exchange, then exit 3.
        signal(SIGALRM) { _ in
            let m = "hactl: clusterd did not answer within 20 s (is it stopped or stuck?)\n"
            _ = m.withCString { write(2, $0, strlen($0)) }
            _exit(3)
        }
        alarm(20)
        defer { alarm(0) }
        do {
            return try IPCClient.call(service: service, req)
        } catch {
            printErr("hactl: \(error)")
            throw ExitCode(3)
        }
    }
}

func printErr(_ s: String) {
    writeAll(2, Array((s + "\n").utf8))
}

/// Writes every byte to `fd` (hactl links FoundationEssentials only, which has no FileHandle:
/// the whole of Foundation costs start-up time on every call).
func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
    var off = 0
    while off < bytes.count {
        let n = bytes[off...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { return }
        off += n
    }
}

func sleepSeconds(_ s: Double) { usleep(UInt32(max(0, s) * 1_000_000)) }

/// Standard input to its end.
func readStandardInput() -> [UInt8] {
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65_536)
    while true {
        let n = buf.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { return out }
        out += buf[0..<n]
    }
}

@main
struct Hactl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hactl",
        abstract: "Operate a Vigil cluster through the local clusterd.",
        subcommands: [Status.self, Apply.self, Simulate.self, HistoryCommand.self, Config.self, Cleanup.self, Standby.self, Unstandby.self, Move.self, Ban.self, Clear.self, Maintenance.self, Unmanage.self, Manage.self, Refresh.self, SnapshotCommand.self, Fence.self, Agent.self])
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Nodes, links, quorum, coordinator and resources.")
    enum Output: String, ExpressibleByArgument, CaseIterable { case table, json }
    @OptionGroup var connection: Connection
    @Option(name: .shortAndLong, help: "table or json.")
    var output: Output = .table
    @Flag(help: "One line and an exit code for scripts and monitoring: 0 healthy, 1 degraded, 2 no quorum, 3 clusterd unreachable.")
    var check = false
    @Flag(help: "Redraw on every change clusterd reports (events, not polling) until interrupted; with --output json, one JSON line per change.")
    var watch = false

    func validate() throws {
        if watch && check { throw ValidationError("--watch and --check exclude each other") }
    }

    func run() throws {
        if watch { return try watchStatus() }
        let r: IPCResponse
        do {
            r = try connection.call(IPCRequest(command: .status))
        } catch {
            if check { print("UNKNOWN: clusterd unreachable (IPC service '\(connection.service)')") }
            throw error
        }
        guard r.ok, let s = r.status else {
            printErr("hactl: \(r.message ?? "no status")")
            if check { print("UNKNOWN: clusterd gave no status") }
            throw ExitCode(check ? StatusCheck.Verdict.unreachable.rawValue : 1)
        }
        if check {
            let (verdict, line) = StatusCheck.evaluate(s)
            print(line)
            if verdict != .healthy { throw ExitCode(verdict.rawValue) }
            return
        }
        print(output == .json ? StatusFormatter.json(s) : StatusFormatter.table(s))
    }
}

struct Apply: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Replace the cluster's resource definitions with a file (validated by the coordinator, all or nothing).")
    @OptionGroup var connection: Connection
    @Option(name: .customShort("f"), help: "Resources file (TOML); '-' for standard input.")
    var file: String
    @Flag(name: .customLong("dry-run"), help: "Change nothing: show what the file adds, removes and changes, the actions it would cause, or why it would be refused.")
    var dryRun = false
    @Option(name: .shortAndLong, help: "With --dry-run: table or json.")
    var output: ReportOutput = .table

    func run() throws {
        let text = try readResourcesFile(file)
        // Agent parameters are checked here, against the agents installed on this node.
        let problems = AgentCatalog.checkParameters(in: text, file: file) + FenceCatalog.checkDevices(in: text, file: file)
        if !problems.isEmpty {
            printErr(dryRun ? "hactl: apply would be refused:" : "hactl: apply refused, nothing changed:")
            for p in problems { printErr("  " + p) }
            throw ExitCode(1)
        }
        if dryRun {
            var req = IPCRequest(command: .dryRun, text: text)
            req.resource = file
            let r = try connection.call(req)
            guard r.ok, let w = r.whatIf else {
                printErr("hactl: \(r.message ?? "no answer")")
                throw ExitCode(1)
            }
            try printReport(w, output, dryRun: true)
            if w.refused != nil { throw ExitCode(1) }
            return
        }
        let r = try connection.call(IPCRequest(command: .apply, text: text))
        if r.ok {
            print(r.message ?? "applied")
        } else {
            printErr("hactl: apply refused, nothing changed: \(r.message?.replacingAll("resources:", with: "\(file):") ?? "unknown error")")
            throw ExitCode(1)
        }
    }
}

struct Config: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "config", abstract: "Resource configuration in force.", subcommands: [Show.self])

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "Print the resource configuration in force, with its version.")
        @OptionGroup var connection: Connection
        func run() throws {
            let r = try connection.call(IPCRequest(command: .configShow))
            guard r.ok else {
                printErr("hactl: \(r.message ?? "error")")
                throw ExitCode(1)
            }
            print("# version \(r.configVersion ?? 0)")
            if let s = r.standby, !s.isEmpty { print("# standby: \(s.joined(separator: ", "))") }
            print(r.configText ?? "", terminator: (r.configText ?? "").hasSuffix("\n") ? "" : "\n")
        }
    }
}

struct Cleanup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cleanup",
        abstract: "Forget a resource's failures on every node (and retry a stop that failed, once you checked it); with a node's name, let a node that was fenced while running run resources again.")
    @OptionGroup var connection: Connection
    @Argument(help: "Resource or node name.")
    var resource: String

    func run() throws {
        let r = try connection.call(IPCRequest(command: .cleanup, text: resource))
        guard r.ok else {
            printErr("hactl: \(r.message ?? "cleanup failed")")
            throw ExitCode(1)
        }
        print(r.message ?? "done")
    }
}

struct Agent: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "agent", abstract: "Resource agents installed on this node.", subcommands: [List.self, Info.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List OCF agents, LSB init scripts and fence agents.")
        func run() throws {
            for a in AgentCatalog.list() { print(a) }
            for a in FenceCatalog.list() { print(a) }
        }
    }

    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "info", abstract: "Show an agent's parameters and actions (from its own meta-data).")
        @Argument(help: "ocf:PROVIDER:TYPE, lsb:NAME, script:/PATH or a fence agent (fence_NAME)")
        var agent: String

        func run() throws {
            if FenceCatalog.isFenceAgent(agent) {
                do {
                    print(AgentCatalog.describe(name: agent, try FenceCatalog.metadata(agent)))
                } catch {
                    printErr("hactl: \(error)")
                    throw ExitCode(1)
                }
                return
            }
            guard case .success(let spec) = AgentSpec.parse(agent) else {
                // A malformed agent name is a bad argument (64, as for any other).
                if case .failure(let e) = AgentSpec.parse(agent) { printErr("hactl: \(e.message)") }
                throw ExitCode(64)
            }
            do {
                print(AgentCatalog.describe(spec, try AgentCatalog.metadata(spec)))
            } catch {
                printErr("hactl: \(error)")
                throw ExitCode(1)
            }
        }
    }
}

struct Standby: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "standby", abstract: "Put a node in standby: its resources move away and nothing starts there.")
    @OptionGroup var connection: Connection
    @Argument(help: "Node name.")
    var node: String
    @Option(help: "Wait up to this many seconds for the node to run nothing.")
    var wait: Double?
    func run() throws {
        try nodeCall(connection, .standby, node)
        guard let w = wait else { return }
        let end = Date().addingTimeInterval(w)
        var left: [String] = []
        while true {
            if let st = try connection.call(IPCRequest(command: .status)).status {
                let here = st.resources.filter { $0.runningOn.contains(node) }
                if let b = here.first(where: { $0.state == "blocked" }) {
                    printErr("hactl: \(b.name) cannot leave \(node): \(b.detail ?? "blocked")")
                    throw ExitCode(1)
                }
                if here.isEmpty {
                    print("\(node) runs nothing")
                    return
                }
                left = here.map(\.name)
            }
            if Date() >= end {
                printErr("hactl: \(node) still runs \(left.joined(separator: ", ")) after \(w) s")
                throw ExitCode(1)
            }
            sleepSeconds(0.05)
        }
    }
}

struct Refresh: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "refresh",
        abstract: "Forget a resource's failures and probe it again on every reachable node (all resources without an argument).")
    @OptionGroup var connection: Connection
    @Argument(help: "Resource (default: every resource).")
    var resource: String?
    func run() throws {
        var names: [String]
        if let r = resource {
            names = [r]
        } else {
            guard let st = try connection.call(IPCRequest(command: .status)).status else { throw ExitCode(3) }
            names = st.resources.map(\.name)
        }
        for n in names {
            let r = try connection.call(IPCRequest(command: .cleanup, text: n))
            guard r.ok else {
                printErr("hactl: \(n): \(r.message ?? "refused")")
                throw ExitCode(1)
            }
        }
        print("refreshed \(names.count) resource\(names.count == 1 ? "" : "s"): failures forgotten, probed again where not running, on every reachable node")
    }
}

struct Unstandby: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "unstandby", abstract: "Take a node out of standby (resources move back only where scores say so).")
    @OptionGroup var connection: Connection
    @Argument(help: "Node name.")
    var node: String
    func run() throws { try nodeCall(connection, .unstandby, node) }
}

/// A change that names a node (standby, unstandby, fence, fence confirm): prints the answer.
func nodeCall(_ c: Connection, _ cmd: IPCRequest.Command, _ node: String) throws {
    try changeCall(c, IPCRequest(command: cmd, text: node))
}

struct SnapshotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "Write the state this node knows (status, configuration with secrets masked, constraints, every node's holdings and failures, fail counts, fencing history) to a JSON file.")
    @OptionGroup var connection: Connection
    @Option(name: .shortAndLong, help: "File to write (atomically); '-' for standard output.")
    var output: String

    func run() throws {
        let st = try connection.call(IPCRequest(command: .status))
        let cfg = try connection.call(IPCRequest(command: .configShow))
        let facts = try connection.call(IPCRequest(command: .facts))
        let fences = try connection.call(IPCRequest(command: .fenceHistory))
        guard let status = st.status, let text = cfg.configText else {
            printErr("hactl: clusterd answered without its status or configuration")
            throw ExitCode(1)
        }
        let snap = Snapshot(takenAt: WallTime.format(UInt64(Date().timeIntervalSince1970 * 1000)), node: status.localNode, status: status,
                            configVersion: cfg.configVersion ?? status.configVersion, config: text, standby: cfg.standby ?? [],
                            nodes: facts.facts ?? [], fenceHistory: fences.fenceHistory ?? [])
        let bytes = try snap.json()
        if output == "-" {
            writeAll(1, bytes + [10])
            return
        }
        do {
            try snap.write(to: output)
        } catch {
            printErr("hactl: cannot write \(output): \(error)")
            throw ExitCode(2)
        }
        print("snapshot of \(status.localNode) (configuration version \(snap.configVersion), \(snap.nodes.count) nodes) written to \(output)")
    }
}

extension Status {
    /// `--watch`: the status now, then again at every change clusterd pushes.
    func watchStatus() throws {
        do {
            try IPCClient.watch(service: connection.service, IPCRequest(command: .watch)) { r in
                guard r.ok, var s = r.status else {
                    printErr("hactl: \(r.message ?? "no status")")
                    return false
                }
                var ts = timespec()
                clock_gettime(CLOCK_MONOTONIC, &ts)
                s.watchedAtMonoMs = UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
                if output == .json {
                    let enc = JSONEncoder()
                    enc.outputFormatting = [.sortedKeys]
                    guard let line = try? enc.encode(s) else { return false }
                    writeAll(1, Array(line) + [10])
                } else {
                    // Home, clear, the table, and when it was drawn.
                    writeAll(1, Array(("\u{1B}[H\u{1B}[2J" + StatusFormatter.table(s) + "\n\n(watching: redrawn on every change; Ctrl-C to stop)\n").utf8))
                }
                return true
            }
        } catch {
            printErr("hactl: \(error)")
            throw ExitCode(3)
        }
        throw ExitCode(1)
    }
}
