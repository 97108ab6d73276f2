import ArgumentParser
import Foundation
import Glibc
import VigilLab

@main
struct VigilLabCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vigil-lab",
        abstract: "Three Vigil nodes and a client in network namespaces on this machine (needs root).",
        subcommands: [Demo.self, Bench.self, AppBench.self, HTTPProbeCommand.self, Inject.self])
}

struct Common: ParsableArguments {
    @Option(help: "Directory holding clusterd and hactl (default: next to vigil-lab).")
    var bin: String?

    @Option(help: "Node preferred for the floating IP (1 is the coordinator by default; 2 is not).")
    var preferred: Int = 2

    var binDir: String {
        if let bin { return bin }
        let exe = CommandLine.arguments[0]
        let resolved = exe.contains("/") ? exe : "./\(exe)"
        return URL(fileURLWithPath: resolved).deletingLastPathComponent().path
    }

    func requireRoot() throws {
        guard geteuid() == 0 else {
            print("vigil-lab needs root: it creates network namespaces, veth pairs and bridges.")
            throw ExitCode(2)
        }
    }
}

func fmt(_ v: Double) -> String { String(format: "%.0f", v) }

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Kill the owner of a floating IP while a client probes it; print the outage and a timeline.")
    @OptionGroup var common: Common

    func run() throws {
        try common.requireRoot()
        let lab = try Lab(.init(binDir: common.binDir))
        defer { lab.teardown() }
        print("Vigil demo: work directory \(lab.workDir)")
        let r = try Scenarios.unplannedFailover(lab: lab, preferred: common.preferred) { print("  " + $0) }
        print("")
        print("Timeline (ms after the kill):")
        for (label, t) in r.timeline {
            print("  " + String(format: "%+7.0f", t - r.killAt) + "  " + label)
        }
        print("")
        let owner = r.newOwner.map { lab.nodeName($0) } ?? "nobody"
        print("Address \(Scenarios.vip) moved from \(lab.nodeName(r.victim)) to \(owner).")
        print("Client-side outage: \(fmt(r.outageMs)) ms (longest gap between answers to a ping every 10 ms)")
        let st = lab.hactl(r.newOwner ?? 1, ["status"])
        print("")
        print("hactl status on \(owner):")
        print(st.out)
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Repeat the unplanned failover and print outage statistics.")
    @OptionGroup var common: Common
    @Option(help: "Number of failovers.")
    var runs: Int = 5

    func run() throws {
        try repeatFailover(runs: runs, common: common) { lab in try Scenarios.unplannedFailover(lab: lab, preferred: common.preferred) }
    }
}

/// Runs a failover scenario `runs` times, each in a fresh lab; prints one line per run and the summary.
func repeatFailover(runs: Int, common: Common, _ scenario: (Lab) throws -> Scenarios.FailoverResult) throws {
    try common.requireRoot()
    guard runs >= 1 else { throw ValidationError("--runs must be at least 1") }
    var outages: [Double] = []
    for i in 1...runs {
        let lab = try Lab(.init(binDir: common.binDir))
        defer { lab.teardown() }
        let r = try scenario(lab)
        outages.append(r.outageMs)
        let steps = r.timeline.map { "\($0.0.split(separator: " ").first ?? "")=\(fmt($0.1 - r.killAt))" }.joined(separator: " ")
        print("run \(i): outage_ms=\(fmt(r.outageMs)) \(steps)")
    }
    print(summary(outages))
}

func summary(_ outages: [Double]) -> String {
    let s = outages.sorted()
    let median = s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    return "outage_ms min=\(fmt(s.first ?? 0)) median=\(fmt(median)) max=\(fmt(s.last ?? 0)) runs=\(s.count)"
}

struct AppBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "app-bench",
        abstract: "Kill the node running the web service group (address + HTTP server + Dummy) while an HTTP client fetches every 20 ms.")
    @OptionGroup var common: Common
    @Option(help: "Number of failovers.")
    var runs: Int = 5
    @Option(help: "Source tree holding Examples/web-service (default: current directory).")
    var root: String = FileManager.default.currentDirectoryPath

    func run() throws {
        try repeatFailover(runs: runs, common: common) { lab in
            try Scenarios.appFailover(lab: lab, binDir: common.binDir, root: root, preferred: common.preferred)
        }
    }
}

struct HTTPProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "http-probe", abstract: "HTTP client used by app-bench (runs in the client namespace).")
    @Option var host: String
    @Option var port: UInt16
    @Option var intervalMs: Int = 20
    @Option var timeoutMs: Int32 = 200
    @Option var out: String
    @Option var seconds: Int = 120
    func run() throws {
        HTTPProbe.run(host: host, port: port, intervalMs: intervalMs, timeoutMs: timeoutMs, out: out, maxSeconds: seconds)
    }
}

/// Test helper: sends one UDP datagram (hex payload) from the current network namespace.
struct Inject: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Send one UDP datagram (used by the tests to forge and replay packets).")
    @Option var to: String
    @Option var port: UInt16
    @Option var hex: String

    func run() throws {
        var bytes: [UInt8] = []
        var it = hex.makeIterator()
        while let a = it.next(), let b = it.next() {
            guard let v = UInt8(String([a, b]), radix: 16) else { throw ValidationError("bad hex") }
            bytes.append(v)
        }
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        guard inet_pton(AF_INET, to, &sin.sin_addr) == 1 else { throw ValidationError("bad IPv4 address \(to)") }
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw ExitCode(1) }
        defer { close(fd) }
        let n = bytes.withUnsafeBytes { raw in
            withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, raw.baseAddress, raw.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
        guard n == bytes.count else { throw ExitCode(1) }
    }
}
