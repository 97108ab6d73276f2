import ArgumentParser
import Foundation
import Glibc
import VigilCore
import VigilLab

@main
struct VigilLabCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vigil-lab",
        abstract: "Three Vigil nodes and a client in network namespaces on this machine (needs root).",
        subcommands: [Demo.self, Bench.self, AppBench.self, Loss.self, Stall.self, Scale.self, ArpWatchCommand.self, HTTPProbeCommand.self, Inject.self, IPCProbe.self, SquatIPC.self, ImpostorIPC.self, CorosyncProbe.self, Flood.self, CoreBench.self, Switchover.self, StatusLatency.self, TimeCommand.self])
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
    @Flag(help: "Instead: measure an idle settled cluster (CPU and RSS of each clusterd over --seconds).")
    var idle = false
    @Option(help: "With --idle: how long to measure.")
    var seconds: Int = 30
    @Option(help: "With --idle: heartbeat links (1 or 2).")
    var links: Int = 2
    @Flag(help: "Two data nodes (node1, node2) and a witness (node3) instead of three data nodes.")
    var witness = false
    @Option(help: "Membership engine: builtin, corosync, or all (builtin, then Corosync at its default token, then at --corosync-token, side by side).")
    var membership: String = "builtin"
    @Option(help: "With --membership corosync: Corosync's token in ms (0: Corosync's default, 3000 plus 650 per node above two).")
    var corosyncToken: Int = 0
    @Option(help: "With --idle: heartbeat_interval_ms (0: the default); failure_timeout_ms stays at its default.")
    var interval: Int = 0

    func run() throws {
        if idle {
            try common.requireRoot()
            guard (1...2).contains(links) else { throw ValidationError("--links must be 1 or 2") }
            var o = Lab.Options(binDir: common.binDir)
            o.heartbeatLinks = links
            if interval > 0 { o.timing = (interval, Int(Timing.defaultTimeout)) }
            let lab = try Lab(o)
            defer { lab.teardown() }
            try Scenarios.startWithPerNodeAddresses(lab: lab) { print("  " + $0) }
            Thread.sleep(forTimeInterval: 3)
            let r = try Scenarios.idle(lab: lab, seconds: Double(seconds))
            for (i, n) in r.perNode.enumerated() { print("node\(i + 1): cpu_pct=\(String(format: "%.2f", n.cpuPct)) rss_kb=\(n.rssKB) wakeups_per_s=\(String(format: "%.1f", n.wakeupsPerSecond))") }
            print(r.description)
            return
        }
        if witness && !(1...2).contains(common.preferred) { throw ValidationError("with --witness the owner must be a data node: --preferred 1 or 2") }
        guard ["builtin", "corosync", "all"].contains(membership) else { throw ValidationError("--membership must be builtin, corosync or all") }
        guard corosyncToken >= 0 else { throw ValidationError("--corosync-token must be 0 (Corosync's default) or a number of ms") }
        if membership != "builtin" && witness { throw ValidationError("--witness is a Vigil witness: not with Corosync") }
        let variants: [(label: String, token: Int?)] = switch membership {
        case "corosync": [("corosync", corosyncToken)]
        case "all": [("builtin", nil), ("corosync-default", 0), ("corosync-token\(corosyncToken == 0 ? 1000 : corosyncToken)", corosyncToken == 0 ? 1000 : corosyncToken)]
        default: [("builtin", nil)]
        }
        var medians: [String] = []
        for v in variants {
            if variants.count > 1 { print("== \(v.label)") }
            let m = try repeatFailover(runs: runs, common: common, witnesses: witness ? [3] : [], corosyncToken: v.token) { lab in
                let r = try Scenarios.unplannedFailover(lab: lab, preferred: common.preferred)
                if v.token != nil, let line = lab.events(1).first(where: { $0.text.hasPrefix("corosync membership:") }) {
                    // The effective values, as clusterd read them from cmap (runtime.config.totem).
                    print("  \(line.text)")
                }
                return r
            }
            medians.append("\(v.label)=\(fmt(m))")
        }
        if variants.count > 1 { print("failover_median_ms \(medians.joined(separator: " ")) runs=\(runs)") }
    }
}

/// Runs a failover scenario `runs` times, each in a fresh lab; prints one line per run and the summary.
@discardableResult
func repeatFailover(runs: Int, common: Common, witnesses: Set<Int> = [], corosyncToken: Int? = nil, _ scenario: (Lab) throws -> Scenarios.FailoverResult) throws -> Double {
    try common.requireRoot()
    guard runs >= 1 else { throw ValidationError("--runs must be at least 1") }
    var outages: [Double] = []
    for i in 1...runs {
        var o = Lab.Options(binDir: common.binDir)
        o.witnesses = witnesses
        o.corosyncToken = corosyncToken
        let lab = try Lab(o)
        defer { lab.teardown() }
        let r = try scenario(lab)
        outages.append(r.outageMs)
        let steps = r.timeline.map { "\($0.0.split(separator: " ").first ?? "")=\(fmt($0.1 - r.killAt))" }.joined(separator: " ")
        print("run \(i): outage_ms=\(fmt(r.outageMs)) \(steps)")
    }
    print(summary(outages))
    let s = outages.sorted()
    return s.isEmpty ? 0 : (s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2)
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

struct Loss: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Drop node-to-node frames at random in the lab's switch and count lease losses, restarts, owner changes and member flaps.")
    @OptionGroup var common: Common
    @Option(help: "Percentage of frames dropped.")
    var loss: Int = 5
    @Option(help: "How long, in minutes.")
    var minutes: Double = 10
    @Option(help: "Heartbeat links in the cluster (1 or 2).")
    var links: Int = 1
    @Option(help: "Links the loss applies to (comma-separated, 0 and/or 1).")
    var lossyLinks: String = "0,1"

    func run() throws {
        try common.requireRoot()
        guard (0...100).contains(loss), minutes > 0, (1...2).contains(links) else { throw ValidationError("--loss 0...100, --minutes > 0, --links 1 or 2") }
        let lossy = lossyLinks.split(separator: ",").compactMap { Int($0) }.filter { $0 == 0 || $0 == 1 }
        guard !lossy.isEmpty else { throw ValidationError("--lossy-links: 0, 1 or 0,1") }
        var opts = Lab.Options(binDir: common.binDir)
        opts.heartbeatLinks = links
        let lab = try Lab(opts)
        defer { lab.teardown() }
        let r = try Scenarios.loss(lab: lab, percent: loss, seconds: minutes * 60, links: lossy) { print("  " + $0) }
        print(r.description)
    }
}

struct Scale: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Many addresses and Dummy resources on many nodes: placement time, quiet after settling, idle CPU, recovery of a killed node.")
    @OptionGroup var common: Common
    @Option(help: "Nodes.") var nodes: Int = 9
    @Option(help: "Floating addresses.") var addresses: Int = 200
    @Option(help: "ocf:heartbeat:Dummy resources.") var resources: Int = 40
    @Option(help: "How long to sample after settling, in seconds.") var sample: Int = 60

    func run() throws {
        try common.requireRoot()
        guard (3...20).contains(nodes), addresses >= 0, resources >= 0 else { throw ValidationError("--nodes 3...20") }
        var opts = Lab.Options(binDir: common.binDir)
        opts.nodes = nodes
        let lab = try Lab(opts)
        defer { lab.teardown() }
        let r = try Scenarios.scale(lab: lab, addresses: addresses, agents: resources, sampleSeconds: Double(sample)) { print("  " + $0) }
        print(r.description)
    }
}

struct Stall: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "SIGSTOP the owner's clusterd with its network up while an ARP watcher counts requests answered by two MACs.")
    @OptionGroup var common: Common
    @Option(help: "How long the daemon stays stopped, in seconds.")
    var seconds: Int = 5

    func run() throws {
        try common.requireRoot()
        let lab = try Lab(.init(binDir: common.binDir))
        defer { lab.teardown() }
        let r = try Scenarios.stalledOwner(lab: lab, seconds: Double(seconds)) { print("  " + $0) }
        print("guardian_removed_ms=\(r.guardianMs.map(fmt) ?? "never") takeover_ms=\(r.takeoverMs.map(fmt) ?? "never") owners_after=\(r.ownersAfter)")
        print(r.arp.description)
    }
}

struct ArpWatchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "arp-watch", abstract: "ARP watcher used by the stall test (runs in the client namespace).")
    @Option var interface: String = "eth0"
    @Option var address: String
    @Option var seconds: Double = 10
    @Option var intervalMs: Int = 10
    func run() throws {
        print(try ARPWatch.run(interface: interface, address: address, seconds: seconds, intervalMs: intervalMs).description)
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
        let bytes = try hexBytes(hex)
        var sin = try ipv4Target(to, port: port)
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw ExitCode(1) }
        defer { close(fd) }
        let n = bytes.withUnsafeBytes { raw in
            withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, raw.baseAddress, raw.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
        guard n == bytes.count else { throw ExitCode(1) }
    }
}

/// Bytes from hex text (for packets the tests build and pass on the command line).
func hexBytes(_ hex: String) throws -> [UInt8] {
    var bytes: [UInt8] = []
    var it = hex.makeIterator()
    while let a = it.next(), let b = it.next() {
        guard let v = UInt8(String([a, b]), radix: 16) else { throw ValidationError("bad hex") }
        bytes.append(v)
    }
    return bytes
}

func ipv4Target(_ address: String, port: UInt16) throws -> sockaddr_in {
    var sin = sockaddr_in()
    sin.sin_family = sa_family_t(AF_INET)
    sin.sin_port = port.bigEndian
    guard inet_pton(AF_INET, address, &sin.sin_addr) == 1 else { throw ValidationError("bad IPv4 address \(address)") }
    return sin
}

struct Switchover: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Move the floating IP back and forth with 'hactl move --wait' while a client pings it every 10 ms; print the longest gap per move.")
    @OptionGroup var common: Common
    @Option(help: "Number of planned moves.")
    var runs: Int = 10

    func run() throws {
        try common.requireRoot()
        guard (1...1000).contains(runs) else { throw ValidationError("--runs 1...1000") }
        let lab = try Lab(Lab.Options(binDir: common.binDir))
        defer { lab.teardown() }
        let r = try Scenarios.switchover(lab: lab, runs: runs) { print("  " + $0) }
        let s = r.gapsMs.sorted()
        func f(_ v: Double) -> String { String(format: "%.0f", v) }
        print("switchover_gap_ms min=\(f(s.first ?? 0)) median=\(f(s[s.count / 2])) max=\(f(s.last ?? 0)) runs=\(s.count)")
    }
}

struct StatusLatency: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status-latency",
        abstract: "Time 'hactl status' as a whole process (spawn to exit) against a settled three-node cluster.")
    @OptionGroup var common: Common
    @Option(help: "Number of calls.")
    var runs: Int = 30
    @Option(help: "The hactl binary to time (default: the one beside vigil-lab).")
    var hactl: String?

    func run() throws {
        try common.requireRoot()
        guard (1...1000).contains(runs) else { throw ValidationError("--runs 1...1000") }
        let binary = hactl ?? common.binDir + "/hactl"
        guard FileManager.default.isExecutableFile(atPath: binary) else { throw ValidationError("no executable hactl at \(binary)") }
        let lab = try Lab(Lab.Options(binDir: common.binDir))
        defer { lab.teardown() }
        let r = try Scenarios.statusLatency(lab: lab, hactl: binary, runs: runs) { print("  " + $0) }
        let s = r.callsMs.sorted()
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        print("hactl_status_ms min=\(f(s.first ?? 0)) median=\(f(s[s.count / 2])) max=\(f(s.last ?? 0)) runs=\(s.count)")
    }
}

struct TimeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "time-command",
        abstract: "Run a command N times and print each run's wall time in ms (used by status-latency inside a namespace).")
    @Option(help: "Number of runs.")
    var runs: Int = 30
    @Argument(parsing: .captureForPassthrough, help: "The command (absolute path) and its arguments.")
    var command: [String] = []

    func run() throws {
        guard (1...1000).contains(runs) else { throw ValidationError("--runs 1...1000") }
        let cmd = command.first == "--" ? Array(command.dropFirst()) : command
        for ms in try Scenarios.timeCommand(cmd, runs: runs) { print(String(format: "%.3f", ms)) }
    }
}
