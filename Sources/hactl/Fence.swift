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

struct Fence: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fence",
        abstract: "Fence a node by hand (power it off or reset it through its fence levels), confirm one is off, or show the history.",
        subcommands: [Now.self, Confirm.self, History.self], defaultSubcommand: Now.self)

    struct Now: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "node", abstract: "Fence NODE through its levels (run by the coordinator; admin only).")
        @OptionGroup var connection: Connection
        @Argument(help: "Node name.")
        var node: String
        @Flag(help: "Do not ask for confirmation.")
        var yes = false
        @Option(help: "Seconds to wait for the outcome (0: return once requested).")
        var wait: Int = 120

        func run() throws {
            try askUnlessYes(yes, "Fence \(node)? It will be powered off or reset, and everything it runs stops.")
            let since = (try? connection.call(IPCRequest(command: .fenceHistory)))?.fenceHistory?.count ?? 0
            try nodeCall(connection, .fence, node)
            guard wait > 0 else { return }
            // The outcome arrives in the history (from the coordinator, which ran the agents).
            let deadline = Date().addingTimeInterval(TimeInterval(wait))
            while Date() < deadline {
                sleepSeconds(0.2)
                let h = (try? connection.call(IPCRequest(command: .fenceHistory)))?.fenceHistory ?? []
                if let r = h.dropFirst(min(since, h.count)).first(where: { $0.target == node && ($0.outcome == .succeeded || $0.outcome == .failed) }) {
                    print(FenceFormat.line(r))
                    if r.outcome == .failed { throw ExitCode(1) }
                    return
                }
            }
            printErr("hactl: no outcome within \(wait) s; see hactl fence history")
            throw ExitCode(1)
        }
    }

    struct Confirm: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "confirm", abstract: "Say that NODE is off (powered off by hand): what it ran is recovered elsewhere (admin only).")
        @OptionGroup var connection: Connection
        @Argument(help: "Node name.")
        var node: String
        @Flag(help: "Do not ask for confirmation.")
        var yes = false

        func run() throws {
            try askUnlessYes(yes, "Confirm that \(node) is powered off? If it still runs, its resources will run twice.")
            try nodeCall(connection, .fenceConfirm, node)
        }
    }

    struct History: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "history", abstract: "Fencing actions this node ran or learned of: time, node, device, outcome.")
        @OptionGroup var connection: Connection
        @Option(name: .shortAndLong, help: "table or json.")
        var output: Status.Output = .table

        func run() throws {
            let r = try connection.call(IPCRequest(command: .fenceHistory))
            let h = r.fenceHistory ?? []
            if output == .json {
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: (try? enc.encode(h)) ?? Data("[]".utf8), as: UTF8.self))
                return
            }
            if h.isEmpty { print("No fencing recorded since this node's clusterd started.") }
            for x in h { print(FenceFormat.line(x)) }
        }
    }
}

enum FenceFormat {
    static func line(_ r: FenceRecord) -> String {
        // YYYY-MM-DD HH:MM:SS.mmmZ, in UTC.
        let ms = r.wallMs % 1000
        let t = String(WallTime.format(r.wallMs).replacingAll("T", with: " ").dropLast()) + "." + String(String(ms + 1000).dropFirst())
        return "\(t)Z  \(r.outcome.rawValue.uppercased())  node=\(r.target) by=\(r.by)\(r.device.isEmpty ? "" : " device=\(r.device)")  \(r.reason)"
    }
}

func askUnlessYes(_ yes: Bool, _ question: String) throws {
    guard !yes else { return }
    guard isatty(0) != 0 else {
        printErr("hactl: \(question) Not asked on a non-interactive input: add --yes.")
        throw ExitCode(2)
    }
    writeAll(2, Array("\(question) [y/N] ".utf8))
    guard let answer = readLine(), ["y", "yes"].contains(answer.lowercased()) else { throw ExitCode(1) }
}
