import Foundation
import Glibc
import VigilCore

/// The lease scenarios of the lab: random frame loss, the coordinator's death while every node
/// serves, and a stalled owner, each measured from the daemons' logs and from the client.
extension Scenarios {
    /// Node `i`'s own floating address in `perNodeAddresses`.
    public static func address(_ i: Int) -> String { "198.18.0.\(50 + i)" }

    /// One floating address per node, each preferring its node: every node has something to lose.
    public static func perNodeAddresses(_ nodes: Int) -> String {
        (1...nodes).map { i in
            "[[ip]]\nname = \"vip\(i)\"\naddress = \"\(address(i))/24\"\ninterface = \"eth0\"\npreferred = [\"node\(i)\"]\n"
        }.joined(separator: "\n")
    }

    /// Starts the lab, applies one address per node and waits until each runs on its node.
    public static func startWithPerNodeAddresses(lab: Lab, log: (String) -> Void = { _ in }) throws {
        try lab.startAll()
        try lab.waitFor("a quorate cluster", timeout: 20) {
            (1...lab.options.nodes).allSatisfy { lab.status($0)?.quorate ?? false }
        }
        _ = try lab.apply(1, resources: perNodeAddresses(lab.options.nodes))
        try lab.waitFor("every address on its node", timeout: 20) {
            (1...lab.options.nodes).allSatisfy { lab.owners(of: address($0)) == [$0] }
        }
        log("cluster up: \(lab.options.nodes) nodes, one address each, \(lab.options.heartbeatLinks) heartbeat link(s)")
    }

    public struct LossResult: Sendable, CustomStringConvertible {
        public var leaseLosses = 0
        public var restarts = 0
        public var ownerChanges = 0
        public var memberFlaps = 0
        public var droppedFrames = 0
        public var description: String {
            "lease_losses=\(leaseLosses) restarts=\(restarts) owner_changes=\(ownerChanges) member_flaps=\(memberFlaps)"
        }
    }

    /// Counts what happened on every node since `t0` (monotonic ms).
    static func quietCounts(lab: Lab, since t0: Int) -> LossResult {
        var r = LossResult()
        for e in lab.allEvents() where e.mono >= t0 {
            if e.text.hasPrefix("lease-lost") { r.leaseLosses += 1 }
            if e.text.hasPrefix("resource-stopping") { r.restarts += 1 }
            if e.text.hasPrefix("resource-starting") { r.ownerChanges += 1 }
            if e.text.hasPrefix("member-lost") { r.memberFlaps += 1 }
        }
        return r
    }

    /// Drops `percent` % of node-to-node frames on `links` for `seconds` in a settled cluster.
    public static func loss(lab: Lab, percent: Int, seconds: Double, links: [Int], log: (String) -> Void = { _ in }) throws -> LossResult {
        try startWithPerNodeAddresses(lab: lab, log: log)
        Thread.sleep(forTimeInterval: 1)
        let t0 = Int(Lab.monoNowMs())
        try lab.setLoss(percent: percent, links: links)
        log("dropping \(percent) % of node-to-node frames on link(s) \(links.map(String.init).joined(separator: ",")) for \(Int(seconds)) s")
        Thread.sleep(forTimeInterval: seconds)
        var r = quietCounts(lab: lab, since: t0)
        r.droppedFrames = lab.droppedFrames()
        try lab.setLoss(percent: 0)
        for i in 1...lab.options.nodes where lab.owners(of: address(i)) != [i] { r.ownerChanges += 1 }
        log("frames dropped by the switch: \(r.droppedFrames)")
        return r
    }

    public struct CoordinatorDeathResult: Sendable {
        public var coordinator: Int
        /// Stop operations on the surviving nodes after the kill (should be none).
        public var survivorStops: [String]
        /// Longest gap in answers from each surviving node's address (ms).
        public var survivorGapMs: [Int: Double]
        /// The outage of the dead coordinator's own address (longest gap in its answers).
        public var recoveredMs: Double?
    }

    /// Kills the coordinator's node while every node serves an address; clients ping the
    /// survivors' addresses every 10 ms.
    public static func coordinatorDeath(lab: Lab, log: (String) -> Void = { _ in }) throws -> CoordinatorDeathResult {
        try startWithPerNodeAddresses(lab: lab, log: log)
        guard let name = lab.status(1)?.coordinator, let coord = (1...lab.options.nodes).first(where: { lab.nodeName($0) == name }) else {
            throw LabError("no coordinator")
        }
        let survivors = (1...lab.options.nodes).filter { $0 != coord }
        var probes: [Int: Probe] = [:]
        for s in survivors { probes[s] = try Probe(lab: lab, address: address(s)) }
        let own = try Probe(lab: lab, address: address(coord))
        defer {
            for p in probes.values { p.stop() }
            own.stop()
        }
        try lab.waitFor("the clients to get answers", timeout: 10) { probes.values.allSatisfy { $0.replies().count >= 30 } }
        let killAt = Double(Lab.monoNowMs())
        lab.kill(coord)
        try lab.setLinks(coord, up: false)
        log("killed the coordinator \(lab.nodeName(coord)) (SIGKILL) and took its links down")
        try lab.waitFor("its address elsewhere", timeout: 15) { lab.owners(of: address(coord)).contains { $0 != coord } }
        Thread.sleep(forTimeInterval: 2)
        let end = Double(Lab.monoNowMs())
        var gaps: [Int: Double] = [:]
        for (s, p) in probes {
            p.stop()
            gaps[s] = p.longestGap(from: killAt - 1000, to: end)?.gap ?? Double.infinity
        }
        own.stop()
        let outage = own.replies().contains { $0 > killAt } ? own.longestGap(from: killAt - 1000, to: end)?.gap : nil
        let names = Set(survivors.map { lab.nodeName($0) })
        let stops = lab.allEvents().filter {
            Double($0.mono) >= killAt && names.contains($0.node) && ($0.text.hasPrefix("resource-stopping") || $0.text.hasPrefix("address-removed"))
        }.map { "\($0.node): \($0.text)" }
        return CoordinatorDeathResult(coordinator: coord, survivorStops: stops, survivorGapMs: gaps, recoveredMs: outage)
    }

    public struct StallResult: Sendable {
        public var arp: ARPWatch.Result
        /// From SIGSTOP to the address being added on another node.
        public var takeoverMs: Double?
        /// From SIGSTOP to the guardian removing the address on the stalled node.
        public var guardianMs: Double?
        public var ownersAfter: [Int]
    }

    /// Stops (SIGSTOP) the owner's clusterd for `seconds` with its network up, while an ARP
    /// watcher in the client namespace asks for the address every 10 ms.
    public static func stalledOwner(lab: Lab, owner: Int = 2, seconds: Double, log: (String) -> Void = { _ in }) throws -> StallResult {
        try startWithPerNodeAddresses(lab: lab, log: log)
        let vip = address(owner)
        let outPath = lab.workDir + "/arpwatch.out"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        guard let fh = FileHandle(forWritingAtPath: outPath) else { throw LabError("cannot open \(outPath)") }
        let watcher = Process()
        watcher.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        watcher.arguments = ["netns", "exec", lab.clientNS, lab.options.binDir + "/vigil-lab", "arp-watch",
                             "--interface", "eth0", "--address", vip, "--seconds", "\(Int(seconds) + 5)", "--interval-ms", "10"]
        watcher.standardOutput = fh
        watcher.standardError = fh
        try watcher.run()
        Thread.sleep(forTimeInterval: 1)
        let stopAt = Double(Lab.monoNowMs())
        lab.pause(owner, true)
        log("stopped \(lab.nodeName(owner))'s clusterd (SIGSTOP) with its network up")
        Thread.sleep(forTimeInterval: seconds)
        lab.pause(owner, false)
        log("resumed it (SIGCONT)")
        watcher.waitUntilExit()
        let text = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        guard let arp = text.split(separator: "\n").compactMap({ ARPWatch.Result(line: String($0)) }).last else {
            throw LabError("arp-watch printed no result: \(text)")
        }
        let ev = lab.allEvents().filter { Double($0.mono) >= stopAt }
        let mine = "address=\(vip)/"
        let taken = ev.first { $0.node != lab.nodeName(owner) && $0.text.hasPrefix("address-added") && $0.text.contains(mine) }
        let guarded = ev.first { $0.node == lab.nodeName(owner) && $0.text.hasPrefix("address-removed by=guardian") && $0.text.contains(mine) }
        return StallResult(arp: arp, takeoverMs: taken.map { Double($0.mono) - stopAt }, guardianMs: guarded.map { Double($0.mono) - stopAt },
                           ownersAfter: lab.owners(of: vip))
    }
}

extension Lab {
    /// `hactl status` of node `i`, decoded (nil if it cannot be had).
    public func status(_ i: Int) -> ClusterStatus? {
        let r = hactl(i, ["status", "--output", "json"])
        guard r.code == 0 else { return nil }
        return try? JSONDecoder().decode(ClusterStatus.self, from: Data(r.out.utf8))
    }
}

extension Scenarios {
    public struct IdleResult: Sendable, CustomStringConvertible {
        public struct Node: Sendable { public var cpuPct: Double; public var rssKB: Int; public var wakeupsPerSecond: Double }
        public var perNode: [Node]
        public var description: String {
            let cpu = perNode.map(\.cpuPct).max() ?? 0
            let rss = perNode.map(\.rssKB).max() ?? 0
            return "idle_cpu_pct=\(String(format: "%.2f", cpu)) rss_kb=\(rss) nodes=\(perNode.count)"
        }
    }

    /// CPU (user + system, % of one core) and RSS of every clusterd over `seconds`.
    public static func idle(lab: Lab, seconds: Double) throws -> IdleResult {
        func ticks(_ pid: pid_t) -> Double {
            let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
            // Fields after the command (which may hold spaces): state is field 3, utime 14, stime 15.
            guard let close = stat.lastIndex(of: ")") else { return 0 }
            let f = stat[stat.index(after: close)...].split(separator: " ")
            guard f.count > 13, let u = Double(f[11]), let s = Double(f[12]) else { return 0 }
            return u + s
        }
        func switches(_ pid: pid_t) -> Double {
            let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
            return status.split(separator: "\n").filter { $0.contains("ctxt_switches") }
                .compactMap { Double($0.split(separator: ":").last?.trimmingCharacters(in: .whitespaces) ?? "") }.reduce(0, +)
        }
        func rss(_ pid: pid_t) -> Int {
            let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return 0 }
            return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
        }
        let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
        let pids = (1...lab.options.nodes).compactMap { lab.pid($0) }
        let t0 = pids.map(ticks)
        let s0 = pids.map(switches)
        Thread.sleep(forTimeInterval: seconds)
        let nodes = pids.enumerated().map { i, p in
            IdleResult.Node(cpuPct: (ticks(p) - t0[i]) / hz / seconds * 100, rssKB: rss(p), wakeupsPerSecond: (switches(p) - s0[i]) / seconds)
        }
        return IdleResult(perNode: nodes)
    }
}
