import ArgumentParser
import Glibc
import VigilCore
import VigilDaemon
import VigilSystem
import VigilWire

@main
struct Clusterd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clusterd",
        abstract: "Vigil cluster daemon: membership, quorum, coordinator and floating addresses.")

    @Option(name: .long, help: "Cluster file (TOML).")
    var config: String = "/etc/vigil/cluster.toml"

    @Option(name: .long, help: "This node's name (default: the hostname, else the node whose address is configured here).")
    var node: String?

    @Flag(name: .long, help: "Validate the cluster file and key, print a summary, and exit.")
    var checkConfig = false

    @Flag(name: .long, help: "Remove every floating address Vigil left on this machine and exit (for ExecStopPost after a crash).")
    var cleanup = false

    @Flag(name: .long, help: .hidden)
    var guardian = false
    @Flag(name: .long, help: .hidden)
    var outputKeeper = false
    /// Speak the previous protocol version to every peer, as a node not yet upgraded does (for
    /// the rolling-upgrade test; see README, Upgrades).
    @Option(name: .long, help: .hidden)
    var speakProtocol: UInt16?
    @Option(name: .long, help: .hidden)
    var watchdogDevice: String?
    /// This node's wall clock runs this far off (the history test's stand-in for a machine
    /// whose clock is wrong; see WallClock.skewMs).
    @Option(name: .long, help: .hidden)
    var wallClockSkewMs: Int64?
    @Option(name: .long, help: .hidden)
    var watchdogTimeout: Int?

    func run() throws {
        if guardian {
            // Started by clusterd itself: see Guardian (VigilDaemon).
            let wd = watchdogDevice.map { Watchdog(device: $0, timeoutS: watchdogTimeout ?? 10) }
            let code = Guardian.run(node: node ?? "?", watchdog: wd)
            if code != 0 { throw ExitCode(code) }
            return
        }
        if outputKeeper {
            // Started by clusterd itself: see OutputKeeper (VigilDaemon).
            let code = OutputKeeper.run(node: node ?? "?")
            if code != 0 { throw ExitCode(code) }
            return
        }
        let setup: NodeSetup
        do {
            setup = try NodeSetup.load(configPath: config, nodeName: node)
        } catch {
            FileHandleOut.err("clusterd: configuration error: \(error)")
            throw ExitCode(2)
        }
        if checkConfig {
            print(ConfigSummary.describe(setup))
            return
        }
        if cleanup {
            let n = try Cleanup.afterExit(setup, log: EventLog(node: setup.node.name))
            print("removed \(n) floating address(es)")
            return
        }
        if let v = speakProtocol, v != Envelope.previousVersion && v != Envelope.protocolVersion {
            FileHandleOut.err("clusterd: --speak-protocol: \(v) is neither \(Envelope.protocolVersion) nor \(Envelope.previousVersion)")
            throw ExitCode(2)
        }
        if let s = wallClockSkewMs {
            guard abs(s) <= 86_400_000 else {
                FileHandleOut.err("clusterd: --wall-clock-skew-ms: \(s) is more than a day")
                throw ExitCode(2)
            }
            WallClock.skewMs.store(s, ordering: .relaxed)
        }
        let daemon: Daemon
        do {
            daemon = try Daemon(setup: setup)
            if let v = speakProtocol { daemon.ownProtocol = v }
        } catch {
            FileHandleOut.err("clusterd: cannot start: \(error)")
            throw ExitCode(1)
        }
        do {
            let code = try daemon.run()
            if code != 0 { throw ExitCode(code) }
        } catch let e as ExitCode {
            throw e
        } catch {
            FileHandleOut.err("clusterd: \(error)")
            throw ExitCode(1)
        }
    }
}

enum FileHandleOut {
    static func err(_ s: String) {
        let bytes = Array((s + "\n").utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}
