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

/// Reads a resources file (or standard input for '-'), exiting 2 if it cannot.
func readResourcesFile(_ file: String) throws -> String {
    if file == "-" { return String(decoding: readStandardInput(), as: UTF8.self) }
    guard let d = FileManager.default.contents(atPath: file) else {
        printErr("hactl: cannot read \(file)")
        throw ExitCode(2)
    }
    guard let t = String(data: d, encoding: .utf8) else {
        printErr("hactl: \(file) is not UTF-8 text")
        throw ExitCode(2)
    }
    return t
}

enum ReportOutput: String, ExpressibleByArgument, CaseIterable { case table, json }

func printReport(_ r: WhatIf.Report, _ output: ReportOutput, dryRun: Bool) throws {
    switch output {
    case .table:
        print(WhatIfFormat.table(r, dryRun: dryRun))
    case .json:
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        writeAll(1, Array(try enc.encode(r)) + [10])
    }
}

struct Simulate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "What the cluster would do: its scheduler on the live state (or a snapshot) with changes imagined; prints the placement and the ordered actions, changes nothing.")
    @OptionGroup var connection: Connection
    @Option(name: .customLong("node-down"), help: "Imagine NODE lost (repeatable).")
    var nodeDown: [String] = []
    @Option(name: .customLong("node-up"), help: "Imagine NODE back, running nothing (repeatable).")
    var nodeUp: [String] = []
    @Option(name: .customLong("fail"), help: "Imagine RESOURCE@NODE failed there (banned until cleanup; repeatable).")
    var fail: [String] = []
    @Option(name: .customLong("standby"), help: "Imagine NODE in standby (repeatable).")
    var standby: [String] = []
    @Option(name: .customShort("f"), help: "Imagine this resources file in force (as hactl apply -f).")
    var file: String?
    @Option(help: "Simulate on a file written by 'hactl snapshot' instead of the live cluster.")
    var snapshot: String?
    @Option(name: .shortAndLong, help: "table or json.")
    var output: ReportOutput = .table

    func validate() throws {
        for f in fail where WhatIfFormat.parseFail(f) == nil { throw ValidationError("--fail '\(f)': expected RESOURCE@NODE") }
    }

    var changes: [WhatIf.Change] {
        nodeDown.map { .nodeDown($0) } + nodeUp.map { .nodeUp($0) } + fail.compactMap { WhatIfFormat.parseFail($0) } + standby.map { .standby($0) }
    }

    func run() throws {
        let text = try file.map(readResourcesFile)
        let report: WhatIf.Report
        if let path = snapshot {
            guard let d = FileManager.default.contents(atPath: path) else {
                printErr("hactl: cannot read \(path)")
                throw ExitCode(2)
            }
            let snap: Snapshot
            do { snap = try JSONDecoder().decode(Snapshot.self, from: d) } catch {
                printErr("hactl: \(path) is not a snapshot written by hactl snapshot: \(error)")
                throw ExitCode(2)
            }
            do { report = try WhatIfFormat.offline(snap, changes: changes, newText: text, file: file ?? "resources.toml") } catch {
                printErr("hactl: \(error)")
                throw ExitCode(1)
            }
        } else {
            var req = IPCRequest(command: text == nil ? .simulate : .dryRun, text: text)
            req.whatIf = changes
            req.resource = file
            let r = try connection.call(req)
            guard r.ok, let w = r.whatIf else {
                printErr("hactl: \(r.message ?? "no answer")")
                throw ExitCode(1)
            }
            report = w
        }
        try printReport(report, output, dryRun: false)
        if report.refused != nil { throw ExitCode(1) }
    }
}
