import Foundation
import Glibc

/// A cluster of real `clusterd` processes on one machine, each node in its own network
/// namespace, wired by two bridges (link 0 also carries the service network) that live in a
/// switch namespace of their own, plus a client namespace on link 0. Used by the integration
/// tests, the demo and the benchmarks. Random frame loss is an nftables bridge rule in the
/// switch namespace (this kernel has no netem).
///
/// Everything it creates carries a per-run prefix and is removed by `teardown()`, which
/// also runs from `deinit`. Only processes it started are killed, by PID.
public final class Lab: @unchecked Sendable {
    public struct Options: Sendable {
        public var nodes = 3
        public var binDir: String
        public var workDir: String? = nil
        public var timing: (interval: Int, timeout: Int)? = nil
        public var extraClusterLines = ""
        /// Heartbeat links in the cluster file (1: ring0 only; both bridges exist either way).
        public var heartbeatLinks = 2
        /// Nodes started as witnesses (a vote, no resources).
        public var witnesses: Set<Int> = []
        /// `membership = "corosync"`: every node runs a Corosync (token in ms, 0: Corosync's
        /// default; see LabCorosync.swift) and clusterd takes membership from it; nil: Vigil's
        /// own heartbeats.
        public var corosyncToken: Int? = nil
        /// With `corosyncToken`: a `corosync-qnetd` in the client namespace and a
        /// `corosync-qdevice` (model net, algorithm ffsplit, TLS off) beside every Corosync: the
        /// tiebreak of a two-node Corosync cluster.
        public var corosyncQDevice = false
        public init(binDir: String) { self.binDir = binDir }
    }

    public let prefix: String
    public let options: Options
    public let workDir: String
    public let configPath: String
    /// CLOCK_MONOTONIC minus CLOCK_REALTIME, to put ping's wall-clock stamps on the daemons' clock.
    public let monoMinusReal: Double
    public private(set) var pids: [Int: pid_t] = [:]
    /// Corosync daemons the lab started (see LabCorosync.swift), by node.
    var corosyncs: [Int: Process] = [:]
    /// The qdevice daemons (by node) and the qnetd the lab started (see LabCorosync.swift).
    var qdevices: [Int: Process] = [:]
    var qnetd: Process?
    /// More arguments for one node's clusterd (the next time it is started).
    public var extraArguments: [Int: [String]] = [:]
    /// Per node: clocks of its own, as separate machines have (nodes of one kernel otherwise
    /// share both): its monotonic clock `monotonicS` seconds ahead (a time namespace: the
    /// kernel's own, for clusterd and all it runs) and its wall clock `wallS` seconds off
    /// (clusterd's hidden `--wall-clock-skew-ms`, since CLOCK_REALTIME has no namespace).
    public var clocks: [Int: (monotonicS: Int, wallS: Int)] = [:]
    /// Every node gets a private systemd (see LabSystemd.swift), started before its clusterd.
    public var privateSystemd = false
    var systemdPids: [Int: pid_t] = [:]
    var systemdLaunchers: [Int: Process] = [:]
    private var processes: [Int: Process] = [:]
    private var tornDown = false
    private(set) var namespaces: [String] = []
    private(set) var bridges: [String] = []

    nonisolated(unsafe) private static var serial = 0
    private static let serialLock = NSLock()
    static func nextSerial() -> Int {
        serialLock.lock()
        defer { serialLock.unlock() }
        serial += 1
        return serial
    }

    public static let serviceV6 = "fd00:18::"

    public init(_ options: Options) throws {
        self.options = options
        prefix = "vl\(getpid() % 1000)x\(Lab.nextSerial() % 100)"
        let base = options.workDir ?? NSTemporaryDirectory() + "vigil-lab-\(prefix)"
        workDir = base
        try? FileManager.default.removeItem(atPath: base)
        // From here an interrupt removes what this lab makes (see LabSignals).
        LabSignals.register(prefix: prefix, workDir: base)
        configPath = base + "/cluster.toml"
        var r = timespec()
        var m = timespec()
        clock_gettime(CLOCK_REALTIME, &r)
        clock_gettime(CLOCK_MONOTONIC, &m)
        monoMinusReal = (Double(m.tv_sec) + Double(m.tv_nsec) / 1e9) - (Double(r.tv_sec) + Double(r.tv_nsec) / 1e9)
        do {
            try build()
        } catch {
            teardown()
            throw error
        }
    }

    deinit { teardown() }

    public func ns(_ node: Int) -> String { "\(prefix)-n\(node)" }
    public var clientNS: String { "\(prefix)-c" }
    public var switchNS: String { "\(prefix)-sw" }
    public func nodeName(_ i: Int) -> String { "node\(i)" }
    func hostVeth(_ node: Int, _ link: Int) -> String { "\(prefix)n\(node)l\(link)" }

    private func build() throws {
        try FileManager.default.createDirectory(atPath: workDir, withIntermediateDirectories: true)
        chmod(workDir, 0o700)
        try sh("ip", "netns", "add", switchNS)
        namespaces.append(switchNS)
        // A switch does not run the host's iptables over the frames it bridges. Where Debian's
        // br_netfilter is loaded (Docker loads it) every bridged frame would pass the host's
        // iptables hooks, in the sending daemon's system call (veth delivers in the sender's
        // context): that is no cost of clusterd's, so the lab's switch turns it off (the
        // setting is per namespace; the loss rule is nftables' bridge family, unaffected).
        for f in ["iptables", "ip6tables", "arptables"] {
            let path = "/proc/sys/net/bridge/bridge-nf-call-\(f)"
            if FileManager.default.fileExists(atPath: path) {
                try sh("ip", "netns", "exec", switchNS, "sh", "-c", "echo 0 > \(path)")
            }
        }
        for b in 0..<2 {
            let br = "\(prefix)b\(b)"
            try sh("ip", "-n", switchNS, "link", "add", br, "type", "bridge")
            try sh("ip", "-n", switchNS, "link", "set", br, "up")
        }
        for i in 1...options.nodes {
            try addNamespace(ns(i), links: [0, 1], host: i)
        }
        try addNamespace(clientNS, links: [0], host: 100)
        // The key: 64 random bytes, mode 0600.
        let keyPath = workDir + "/authkey"
        var key = [UInt8](repeating: 0, count: 64)
        for i in 0..<64 { key[i] = UInt8.random(in: 0...255) }
        _ = FileManager.default.createFile(atPath: keyPath, contents: Data(key), attributes: [.posixPermissions: 0o600])
        let corosync = options.corosyncToken != nil
        var toml = """
            [cluster]
            name = "\(corosyncClusterName)"
            \(corosync ? "membership = \"corosync\"" : "")
            key_file = "\(keyPath)"
            state_dir = "\(workDir)/state-{node}"
            ipc_name = "vigil-\(prefix)-{node}"
            \(options.extraClusterLines)

            """
        if let t = options.timing {
            toml += "[timing]\nheartbeat_interval_ms = \(t.interval)\nfailure_timeout_ms = \(t.timeout)\n\n"
        } else if let token = options.corosyncToken {
            // What clusterd suggests for this Corosync: token (plus 650 ms per node above two)
            // + consensus (1.2 tokens) + max(500, token/2).
            let effective = (token > 0 ? token : 3000) + 650 * max(0, options.nodes - 2)
            let lease = effective + effective * 12 / 10 + max(500, effective / 2)
            toml += "[timing]\nheartbeat_interval_ms = 100\nfailure_timeout_ms = \(lease)\nlease_ms = \(lease)\n\n"
        }
        if !corosync { toml += "[[link]]\nname = \"ring0\"\nport = 5405\n" }
        if options.heartbeatLinks > 1 && !corosync { toml += "\n[[link]]\nname = \"ring1\"\nport = 5406\n" }
        for i in 1...options.nodes where corosync {
            toml += "\n[[node]]\nname = \"\(nodeName(i))\"\nid = \(i)\n"
        }
        for i in 1...options.nodes where !corosync {
            let addrs = options.heartbeatLinks > 1 ? "\"198.18.0.\(i)\", \"198.18.1.\(i)\"" : "\"198.18.0.\(i)\""
            toml += "\n[[node]]\nname = \"\(nodeName(i))\"\nid = \(i)\naddresses = [\(addrs)]\n\(options.witnesses.contains(i) ? "role = \"witness\"\n" : "")"
        }
        try toml.write(toFile: configPath, atomically: true, encoding: .utf8)
        if let token = options.corosyncToken { try writeCorosyncConfigs(token: token) }
    }

    private func addNamespace(_ name: String, links: [Int], host: Int) throws {
        try sh("ip", "netns", "add", name)
        namespaces.append(name)
        try sh("ip", "-n", name, "link", "set", "lo", "up")
        for l in links {
            let hv = host == 100 ? "\(prefix)cl\(l)" : hostVeth(host, l)
            try sh("ip", "-n", switchNS, "link", "add", hv, "type", "veth", "peer", "name", "eth\(l)", "netns", name)
            try sh("ip", "-n", switchNS, "link", "set", hv, "master", "\(prefix)b\(l)", "up")
            try sh("ip", "-n", name, "addr", "add", "198.18.\(l).\(host)/24", "dev", "eth\(l)")
            if l == 0 {
                try sh("ip", "-n", name, "addr", "add", "\(Self.serviceV6)\(host)/64", "dev", "eth0", "nodad")
            }
            try sh("ip", "-n", name, "link", "set", "eth\(l)", "up")
        }
    }

    // MARK: nodes

    public func startNode(_ i: Int) throws {
        let p = Process()
        let daemon = [options.binDir + "/clusterd", "--config", configPath, "--node", nodeName(i)] + (extraArguments[i] ?? [])
        if options.corosyncToken != nil {
            // In the node's Corosync namespaces (its private /run holds the agents' state too).
            if corosyncPID(i) == nil { try startCorosync(i) }
            if options.corosyncQDevice { try startQDevice(i) }
            let argv = try inCorosyncNamespaces(i, ["/bin/sh", "-c", "mkdir -p /run/resource-agents && exec \"$0\" \"$@\""] + daemon)
            p.executableURL = URL(fileURLWithPath: argv[0])
            p.arguments = Array(argv.dropFirst())
        } else {
            p.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
            // Each node also gets a private /run/resource-agents (agents keep their state there),
            // as separate machines would; the shell execs clusterd, so the PID is clusterd's.
            var own: [String] = [], skew: [String] = []
            // In its private systemd's mount and PID namespaces (systemd answers no peer from
            // outside its PID namespace); nsenter forks for that, so clusterd is its child.
            if privateSystemd { own = ["nsenter", "-t", "\(try startSystemd(i))", "-m", "-p"] }
            if let c = clocks[i] {
                own += ["nsenter", "--time=" + (try timeNamespace(i, monotonicS: c.monotonicS))]
                skew = ["--wall-clock-skew-ms=\(c.wallS * 1000)"]
            }
            p.arguments = ["netns", "exec", ns(i)] + own + ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                           "mkdir -p /run/resource-agents && mount -t tmpfs -o mode=0755 tmpfs /run/resource-agents && exec \"$0\" \"$@\""] + daemon + skew
        }
        let fh = try appendingHandle(logFile(i))
        p.standardError = fh
        p.standardOutput = fh
        try p.run()
        pids[i] = p.processIdentifier
        processes[i] = p
        if privateSystemd {
            // The PID to signal is clusterd's, nsenter's child (nsenter exits with it).
            var child: pid_t?
            try waitFor("\(nodeName(i))'s clusterd under nsenter", timeout: 10) {
                child = Lab.run("/usr/bin/pgrep", ["-P", "\(p.processIdentifier)"]).out.split(separator: "\n").first.flatMap { pid_t($0) }
                return child != nil
            }
            pids[i] = child
        }
    }

    public func startAll() throws {
        for i in 1...options.nodes { try startNode(i) }
    }

    public func logFile(_ i: Int) -> String { "\(workDir)/\(nodeName(i)).log" }

    /// PIDs in a node's namespace whose command line contains `fragment`.
    public func pids(in node: Int, matching fragment: String) -> [pid_t] {
        run("/usr/sbin/ip", ["netns", "pids", ns(node)]).out.split(separator: "\n").compactMap { pid_t($0) }.filter { pid in
            let cmd = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
            return cmd.replacingOccurrences(of: "\u{0}", with: " ").contains(fragment)
        }
    }

    /// An HTTP GET from the client namespace; true on a 200 answer.
    public func httpGet(_ url: String, timeout: Double = 2) -> Bool {
        run("/usr/sbin/ip", ["netns", "exec", clientNS, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "\(timeout)", url]).out == "200"
    }

    public func isRunning(_ i: Int) -> Bool { processes[i]?.isRunning ?? false }

    /// SIGKILL, by the PID we started.
    public func kill(_ i: Int) {
        guard let pid = pids[i] else { return }
        Glibc.kill(pid, SIGKILL)
        Lab.reap(pid)
        pids[i] = nil
        processes[i] = nil
    }

    /// The exit status of a child, reaping it ourselves when Foundation has not (yet).
    static func waitExit(_ p: Process) -> Int32 {
        let pid = p.processIdentifier
        while true {
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f) }
            if r < 0 && errno == ECHILD {
                while p.isRunning { usleep(1000) }
                return p.terminationStatus
            }
            usleep(2000)
        }
    }

    /// Waits (bounded) for a child we killed to be gone, reaping it ourselves if Foundation
    /// has not: its own reaping depends on a run loop these tests do not run.
    static func reap(_ pid: pid_t, timeoutMs: Int = 5000) {
        var waited = 0
        while waited < timeoutMs {
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid || (r < 0 && errno == ECHILD) { return }
            usleep(5000)
            waited += 5
        }
    }

    /// SIGTERM and wait (graceful stop with hand-over).
    public func stop(_ i: Int, timeout: Double = 15) -> Bool {
        guard let pid = pids[i], let p = processes[i] else { return true }
        Glibc.kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(timeout)
        var exited = false
        while Date() < deadline {
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid || (r < 0 && errno == ECHILD) || !p.isRunning {
                exited = true
                break
            }
            usleep(10_000)
        }
        if !exited {
            Glibc.kill(pid, SIGKILL)
            Lab.reap(pid)
            pids[i] = nil
            processes[i] = nil
            return false
        }
        pids[i] = nil
        processes[i] = nil
        return true
    }

    /// Stops (SIGSTOP) or resumes (SIGCONT) node `i`'s clusterd, leaving its network up.
    public func pause(_ i: Int, _ stop: Bool) {
        guard let pid = pids[i] else { return }
        Glibc.kill(pid, stop ? SIGSTOP : SIGCONT)
    }

    public func pid(_ i: Int) -> pid_t? { pids[i] }


    /// Runs hactl inside a node's namespace.
    public func hactl(_ i: Int, _ args: [String], stdin: String? = nil) -> (code: Int32, out: String, err: String) {
        hactlLocal(i, args + ["--ipc", "vigil-\(prefix)-\(nodeName(i))"], stdin: stdin)
    }

    public func apply(_ i: Int, resources: String) throws -> String {
        let path = workDir + "/resources-\(UInt32.random(in: 0...UInt32.max)).toml"
        try resources.write(toFile: path, atomically: true, encoding: .utf8)
        let r = hactl(i, ["apply", "-f", path])
        guard r.code == 0 else { throw LabError("hactl apply failed: \(r.err)") }
        return r.out
    }

    /// Nodes whose namespace currently carries `address`.
    public func owners(of address: String) -> [Int] {
        (1...options.nodes).filter { i in
            run("/usr/sbin/ip", ["-n", ns(i), "-o", "addr", "show"]).out.contains(" \(address)/")
        }
    }

    public func waitFor(_ what: String, timeout: Double, _ cond: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if cond() { return }
            usleep(20_000)
        }
        if cond() { return }
        throw LabError("timed out after \(timeout) s waiting for \(what)\n" + (1...options.nodes).map { "--- \(nodeName($0)) log (tail):\n" + tail(logFile($0), lines: 25) }.joined(separator: "\n"))
    }


    // MARK: teardown

    public func teardown() {
        guard !tornDown else { return }
        tornDown = true
        for (_, pid) in pids {
            Glibc.kill(pid, SIGKILL)
            Lab.reap(pid)
        }
        pids = [:]
        processes = [:]
        for (_, p) in corosyncs {
            Glibc.kill(p.processIdentifier, SIGKILL)
            Lab.reap(p.processIdentifier)
        }
        corosyncs = [:]
        for p in Array(qdevices.values) + (qnetd.map { [$0] } ?? []) {
            Glibc.kill(p.processIdentifier, SIGKILL)
            Lab.reap(p.processIdentifier)
        }
        qdevices = [:]
        qnetd = nil
        stopSystemds()
        Lab.removeNamespaces(namespaces)
        for i in clocks.keys where FileManager.default.fileExists(atPath: timeNamespaceFile(i)) { _ = run("/usr/bin/umount", [timeNamespaceFile(i)]) }
        for b in bridges { _ = run("/usr/sbin/ip", ["link", "del", b]) }
        namespaces = []
        bridges = []
        if ProcessInfo.processInfo.environment["VIGIL_LAB_KEEP"] == nil {
            try? FileManager.default.removeItem(atPath: workDir)
        }
        LabSignals.unregister(prefix: prefix)
    }
}

extension Lab {
    /// Every network namespace on this machine, by name.
    public static func namespaceNames() -> [String] {
        run("/usr/sbin/ip", ["netns", "list"]).out.split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) }
    }

    /// Kills what runs in `names` (what we started, and what our daemons started there: agents,
    /// hooks, services), then deletes the namespaces.
    public static func removeNamespaces(_ names: [String]) {
        for n in names {
            for pid in run("/usr/sbin/ip", ["netns", "pids", n]).out.split(separator: "\n").compactMap({ pid_t($0) }) where pid > 1 {
                Glibc.kill(pid, SIGKILL)
            }
        }
        for n in names { _ = run("/usr/sbin/ip", ["netns", "del", n]) }
    }
}

public struct LabError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}
