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

struct HistoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "Cluster events of every reachable node merged into one timeline (wall clocks corrected by the offsets heartbeats measure), with each failover's steps.")
    @OptionGroup var connection: Connection
    @Option(help: "Only events of the last DURATION (30s, 15m, 1h, 2d).")
    var since: String?
    @Option(help: "Only events about this resource.")
    var resource: String?
    @Option(help: "Only events recorded on this node or naming it.")
    var node: String?
    @Option(name: .shortAndLong, help: "table or json.")
    var output: ReportOutput = .table

    func validate() throws {
        if let s = since, History.duration(s) == nil { throw ValidationError("--since '\(s)': expected a duration such as 30s, 15m, 1h or 2d") }
    }

    func run() throws {
        var req = IPCRequest(command: .history)
        req.sinceMs = since.flatMap(History.duration)
        req.resource = resource
        req.node = node
        let r = try connection.call(req)
        guard r.ok, let report = r.history else {
            printErr("hactl: \(r.message ?? "no history in the answer")")
            throw ExitCode(1)
        }
        switch output {
        case .table:
            print(HistoryFormat.text(report))
        case .json:
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            writeAll(1, Array(try enc.encode(report)) + [10])
        }
    }
}
