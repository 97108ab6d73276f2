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
        // Under Corosync the lease outlasts a ring re-formation: the first one takes longer.
        try lab.waitFor("a quorate cluster", timeout: lab.options.corosyncToken != nil ? 60 : 20) {
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
        let watcher = try ARPWatcher(lab: lab, address: vip, seconds: Int(seconds) + 5, name: "arpwatch.out")
        Thread.sleep(forTimeInterval: 1)
        let stopAt = Double(Lab.monoNowMs())
        lab.pause(owner, true)
        log("stopped \(lab.nodeName(owner))'s clusterd (SIGSTOP) with its network up")
        Thread.sleep(forTimeInterval: seconds)
        lab.pause(owner, false)
        log("resumed it (SIGCONT)")
        let arp = try watcher.result()
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
        /// CPU seconds of every thread, from the scheduler's nanosecond counts (the first field of
        /// each thread's schedstat); `stat`'s utime and stime count 10 ms ticks, too coarse for a
        /// process that runs a few milliseconds a second.
        func cpuSeconds(_ pid: pid_t) -> Double {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
            return tasks.reduce(0.0) { sum, t in
                let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(t)/schedstat", encoding: .utf8)) ?? ""
                return sum + (Double(text.split(separator: " ").first ?? "") ?? 0) / 1e9
            }
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
        let pids = (1...lab.options.nodes).compactMap { lab.pid($0) }
        let t0 = pids.map(cpuSeconds)
        let s0 = pids.map(switches)
        Thread.sleep(forTimeInterval: seconds)
        let nodes = pids.enumerated().map { i, p in
            IdleResult.Node(cpuPct: (cpuSeconds(p) - t0[i]) / seconds * 100, rssKB: rss(p), wakeupsPerSecond: (switches(p) - s0[i]) / seconds)
        }
        return IdleResult(perNode: nodes)
    }
}

extension Scenarios {
    /// `count` addresses in 198.19.0.0/16 on eth0, spread over the nodes by preference, and
    /// `agents` `ocf:heartbeat:Dummy` resources likewise. Kept compact: the resources file is
    /// bounded by what one datagram carries.
    /// The address of resource `a<i>` in `scaleResources`.
    static func scaleAddress(_ i: Int) -> String { "198.19.\(i / 250).\(i % 250 + 1)" }

    public static func scaleResources(nodes: Int, addresses count: Int, agents: Int) -> String {
        var s = ""
        for i in 0..<count {
            s += "[[ip]]\nname=\"a\(i)\"\naddress=\"\(scaleAddress(i))/16\"\ninterface=\"eth0\"\npreferred=[\"node\(i % nodes + 1)\"]\nannounce_count=1\n"
        }
        for i in 0..<agents {
            s += "[[resource]]\nname=\"d\(i)\"\nagent=\"ocf:heartbeat:Dummy\"\npreferred=[\"node\(i % nodes + 1)\"]\n"
        }
        return s
    }

    public struct ScaleResult: Sendable, CustomStringConvertible {
        public var placedMs: Double?
        public var movesAfterSettle = 0
        public var dualMax = 0
        public var idleCpuPct = 0.0
        public var addressesRecoverMs: Double?
        public var recoverMs: Double?
        /// From the daemons' logs: the last of the killed node's addresses added elsewhere, and
        /// the last of everything it ran started elsewhere (ms after the kill). Printed as
        /// `addresses_recover_ms` and `recover_ms` when every one was found (exact), else the
        /// polled figures above (late by up to one sweep of `ip addr` over every namespace).
        public var addressesAddedMs: Double?
        public var startedMs: Double?
        public var description: String {
            func f(_ v: Double?) -> String { v.map { String(format: "%.0f", $0) } ?? "never" }
            return "placed_ms=\(f(placedMs)) moves_after_settle=\(movesAfterSettle) dual_max=\(dualMax) idle_cpu_pct=\(String(format: "%.2f", idleCpuPct)) addresses_recover_ms=\(f(addressesAddedMs ?? addressesRecoverMs)) recover_ms=\(f(startedMs ?? recoverMs))"
        }
    }

    /// Where every floating address of 198.19/16 is configured: address to nodes.
    static func addressOwners(lab: Lab) -> [String: [Int]] {
        var out: [String: [Int]] = [:]
        for i in 1...lab.options.nodes {
            let text = lab.run("/usr/sbin/ip", ["-n", lab.ns(i), "-o", "-4", "addr", "show", "dev", "eth0"]).out
            for line in text.split(separator: "\n") {
                guard let r = line.range(of: "inet 198.19.") else { continue }
                let addr = line[r.lowerBound...].dropFirst(5).prefix { $0 != "/" }
                out[String(addr), default: []].append(i)
            }
        }
        return out
    }

    /// Running Dummy instances per node (their state files in the node's private /run/resource-agents).
    static func agentOwners(lab: Lab) -> [String: [Int]] {
        var out: [String: [Int]] = [:]
        for i in 1...lab.options.nodes {
            guard let pid = lab.pid(i) else { continue }
            let dir = "/proc/\(pid)/root/run/resource-agents"
            let files = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
            for f in files where f.hasPrefix("Dummy-") && f.hasSuffix(".state") {
                out[String(f.dropFirst(6).dropLast(6)), default: []].append(i)
            }
        }
        return out
    }

    /// Applies `addresses` addresses and `agents` Dummy resources to a settled cluster; measures
    /// the time until each runs exactly once, samples for `sampleSeconds` (no dual owners, no
    /// moves), the idle CPU, then kills one node and times the recovery of what it ran.
    public static func scale(lab: Lab, addresses count: Int, agents: Int, sampleSeconds: Double = 60,
                             log: (String) -> Void = { _ in }) throws -> ScaleResult {
        let n = lab.options.nodes
        try lab.startAll()
        try lab.waitFor("a quorate cluster", timeout: 30) { (1...n).allSatisfy { lab.status($0)?.quorate ?? false } }
        log("cluster up: \(n) nodes")
        var r = ScaleResult()
        let text = scaleResources(nodes: n, addresses: count, agents: agents)
        log("resources file: \(text.utf8.count) bytes, \(count) addresses, \(agents) agents")
        let t0 = Double(Lab.monoNowMs())
        _ = try lab.apply(1, resources: text)
        func settled() -> Bool {
            let a = addressOwners(lab: lab)
            let d = agentOwners(lab: lab)
            return a.count == count && a.values.allSatisfy { $0.count == 1 } && d.count == agents && d.values.allSatisfy { $0.count == 1 }
        }
        do {
            try lab.waitFor("everything placed", timeout: 120) { settled() }
            r.placedMs = Double(Lab.monoNowMs()) - t0
        } catch {
            log("not everything was placed within 120 s")
        }
        log("placed in \(r.placedMs.map { String(format: "%.0f", $0) } ?? "never") ms; sampling for \(Int(sampleSeconds)) s")
        var last = addressOwners(lab: lab)
        var lastAgents = agentOwners(lab: lab)
        let sampleEnd = Date().addingTimeInterval(sampleSeconds)
        while Date() < sampleEnd {
            Thread.sleep(forTimeInterval: 3)
            let now = addressOwners(lab: lab)
            let nowAgents = agentOwners(lab: lab)
            r.dualMax = max(r.dualMax, now.values.filter { $0.count > 1 }.count + nowAgents.values.filter { $0.count > 1 }.count)
            r.movesAfterSettle += now.filter { last[$0.key] != nil && last[$0.key] != $0.value }.count
            r.movesAfterSettle += nowAgents.filter { lastAgents[$0.key] != nil && lastAgents[$0.key] != $0.value }.count
            last = now
            lastAgents = nowAgents
        }
        let idleNodes = try idle(lab: lab, seconds: 10).perNode
        r.idleCpuPct = idleNodes.map(\.cpuPct).max() ?? 0
        log("idle cpu % per node: " + idleNodes.map { String(format: "%.2f", $0.cpuPct) }.joined(separator: " ")
            + " (coordinator \(lab.status(1)?.coordinator ?? "none"))")
        // Kill the node that is not the coordinator and holds the most.
        let coordName = lab.status(1)?.coordinator
        let victim = (1...n).filter { lab.nodeName($0) != coordName }.max { a, b in
            last.values.filter { $0 == [a] }.count < last.values.filter { $0 == [b] }.count
        } ?? n
        let itsAddresses = Set(last.filter { $0.value == [victim] }.keys)
        let itsAgents = Set(lastAgents.filter { $0.value == [victim] }.keys)
        log("killing node\(victim): \(itsAddresses.count) addresses, \(itsAgents.count) agents")
        let killAt = Double(Lab.monoNowMs())
        lab.kill(victim)
        try lab.setLinks(victim, up: false)
        var addressesDone: Double?
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let a = addressOwners(lab: lab)
            let t = Double(Lab.monoNowMs()) - killAt
            if addressesDone == nil, itsAddresses.allSatisfy({ a[$0]?.contains { $0 != victim } ?? false }) { addressesDone = t }
            let d = agentOwners(lab: lab)
            if addressesDone != nil, itsAgents.allSatisfy({ d[$0]?.contains { $0 != victim } ?? false }) {
                r.recoverMs = t
                break
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
        r.addressesRecoverMs = addressesDone
        // Exact instants from the surviving daemons' logs (the same monotonic clock as killAt):
        // polling `ip addr` in nine namespaces in turn adds up to a sweep's duration.
        log("polled: addresses configured elsewhere after \(addressesDone.map { String(Int($0)) } ?? "-") ms, everything after \(r.recoverMs.map { String(Int($0)) } ?? "-") ms")
        var nameOfAddress: [String: String] = [:]
        for i in 0..<count { nameOfAddress[scaleAddress(i)] = "a\(i)" }
        let started = lab.startInstants(nodes: (1...n).filter { $0 != victim }, since: Int(killAt))
        let addrTimes = itsAddresses.compactMap { a in nameOfAddress[a].flatMap { started.addresses[$0] } }
        if addrTimes.count == itsAddresses.count, let last = addrTimes.max() { r.addressesAddedMs = Double(last) - killAt }
        let agentTimes = itsAgents.compactMap { started.resources[$0] }
        if agentTimes.count == itsAgents.count, let last = (agentTimes + addrTimes).max() { r.startedMs = Double(last) - killAt }
        return r
    }
}
