import Foundation
import Glibc
import XCTest
import VigilCore
import VigilLab

/// Fencing with real parts: Debian's fence_dummy (unmodified) for the protocol and a failing
/// level, and the lab's own fence agent (Examples/fencing/fence_vigil_lab), which powers a lab
/// node off as a switch would: every process in its namespace killed, its links down.
final class FencingNamespaceTests: NamespaceTestCase {
    static let labAgent = root + "/Examples/fencing/fence_vigil_lab"

    /// Levels: fence_dummy that always fails, then the lab's switch.
    func fencing(_ lab: Lab, failingFirstLevel: Bool = true) -> String {
        let map = (1...3).map { "node\($0) = \"\(lab.ns($0))\"" }.joined(separator: ", ")
        var t = """

            [[fence]]
            name = "lab-switch"
            agent = "\(Self.labAgent)"
            host_map = { \(map) }
            timeout_ms = 20000
            monitor_interval_ms = 5000

            """
        if failingFirstLevel {
            t += """

                [[fence]]
                name = "broken-ipmi"
                agent = "fence_dummy"
                hosts = ["node1", "node2", "node3"]
                params = { type = "fail", power_timeout = "1", status_file = "\(lab.workDir)/fence_dummy.status" }
                timeout_ms = 20000

                """
            for n in 1...3 {
                t += "\n[[fence_level]]\nnode = \"node\(n)\"\nindex = 1\ndevices = [\"broken-ipmi\"]\n"
                t += "\n[[fence_level]]\nnode = \"node\(n)\"\nindex = 2\ndevices = [\"lab-switch\"]\n"
            }
        }
        return t
    }

    /// The owner's clusterd stalls (SIGSTOP, network up) while its application keeps running:
    /// once a majority withdrew its lease the coordinator fences it (level 1 fails, level 2 powers
    /// it off), and only then does the application start elsewhere.
    func testAStalledNodeIsFencedBeforeItsApplicationStartsElsewhere() throws {
        try requireFenceDummy()
        let lab = try makeLab(heartbeatLinks: 1)
        try startQuorate(lab)
        let resources = """
            [[ip]]
            name = "db-ip"
            address = "\(Scenarios.vip)/24"
            interface = "eth0"

            [[resource]]
            name = "db"
            agent = "ocf:heartbeat:Dummy"
            preferred = ["node3"]
            monitor_interval_ms = 2000

            [[group]]
            name = "database"
            members = ["db-ip", "db"]
            """ + fencing(lab)
        // hactl checks fence devices against their agents' metadata, and requires against coverage.
        let bad = lab.hactl(1, ["apply", "-f", "-"], stdin: resources.replacingOccurrences(of: "type = \"fail\"", with: "type = \"fail\", bogus = \"1\""))
        XCTAssertNotEqual(bad.code, 0)
        XCTAssertTrue(bad.err.contains("fence device 'broken-ipmi' (fence_dummy): unknown parameter(s) bogus"), bad.err)
        let uncovered = "[[resource]]\nname = \"db\"\nagent = \"ocf:heartbeat:Dummy\"\nrequires = \"fencing\"\n[[fence]]\nname = \"one\"\nagent = \"fence_dummy\"\nhosts = [\"node1\"]\n"
        let refused = lab.hactl(1, ["apply", "-f", "-"], stdin: uncovered)
        XCTAssertNotEqual(refused.code, 0)
        XCTAssertTrue(refused.err.contains("requires fencing but may run on 'node2'"), refused.err)
        let info = lab.run(Self.binDir + "/hactl", ["agent", "info", "fence_dummy"])
        XCTAssertTrue(info.out.contains("status_file"), info.out + info.err)
        XCTAssertTrue(lab.run(Self.binDir + "/hactl", ["agent", "list"]).out.contains("fence_dummy"))

        _ = try lab.apply(1, resources: resources)
        try lab.waitFor("db on node3", timeout: 30) { self.runningOn(lab, "db") == ["node3"] }
        try lab.waitFor("both devices monitored", timeout: 20) {
            (try? self.status(lab, 1))?.fenceDevices?.allSatisfy { $0.ok == true } ?? false
        }
        let t0 = Int(Lab.monoNowMs())
        lab.pause(3, true)
        try lab.waitFor("db running elsewhere", timeout: 60) { let w = self.runningOn(lab, "db"); return !w.isEmpty && !w.contains("node3") }
        XCTAssertTrue(lab.pids(in: 3, matching: "").isEmpty, "node3 still has processes: it was not powered off")
        let all = lab.allEvents().filter { $0.mono >= t0 }
        let fenced = try XCTUnwrap(all.first { $0.text.hasPrefix("fence-succeeded node=node3") }, "no fence-succeeded in the logs")
        XCTAssertTrue(fenced.text.contains("device=lab-switch"), fenced.text)
        XCTAssertTrue(all.contains { $0.text.contains("level 1 failed: broken-ipmi reboot") }, "level 1 was not tried first")
        let started = try XCTUnwrap(all.first { $0.text == "resource-starting resource=db" })
        XCTAssertGreaterThanOrEqual(started.mono, fenced.mono, "db started before node3 was fenced")
        // Every reachable node recorded it; status names the fenced node.
        for n in [1, 2] {
            let h = lab.hactl(n, ["fence", "history"])
            XCTAssertTrue(h.out.contains("SUCCEEDED  node=node3"), "node\(n): \(h.out)")
        }
        XCTAssertEqual(try status(lab, 2).fencing?.first { $0.node == "node3" }?.state, "fenced")
        // Clients find the service (its address moved with the group) on the new node. (node3's
        // namespace still lists the address, on links that are down: a powered-off machine's.)
        let owner = try XCTUnwrap(runningOn(lab, "db").first)
        try lab.waitFor("the address answering on \(owner)", timeout: 10) { lab.owners(of: Scenarios.vip).filter { $0 != 3 }.map(lab.nodeName) == [owner] }
        XCTAssertTrue(ping(lab, Scenarios.vip), "clients cannot reach the service after the failover")
        lab.kill(3)
    }

    /// A stop that fails (the agent cannot stop it on node3) blocks the resource; with a device the
    /// node is fenced and the resource recovered elsewhere without an operator; never on two nodes.
    func testAFailedStopIsRecoveredByFencingTheNode() throws { try failedStopIsRecoveredByFencing(victim: 3) }

    /// The same on the coordinator's own node: it cannot fence itself and asks node2 to.
    func testTheCoordinatorsFailedStopIsFencedByAnotherNode() throws { try failedStopIsRecoveredByFencing(victim: 1) }

    func failedStopIsRecoveredByFencing(victim v: Int) throws {
        let vn = "node\(v)"
        let lab = try makeLab(heartbeatLinks: 1)
        // A plain script whose stop fails while /run/resource-agents/stuck exists (each lab node
        // has its own /run/resource-agents).
        let script = lab.workDir + "/stubborn"
        try """
            #!/bin/sh
            S=/run/resource-agents/stubborn.state
            case "$1" in
              start) touch "$S" ;;
              stop) [ -e /run/resource-agents/stuck ] && exit 1; rm -f "$S" ;;
              status) [ -e "$S" ] && exit 0; exit 3 ;;
              *) exit 3 ;;
            esac
            """.write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        chmod(lab.workDir, 0o755)
        try startQuorate(lab)
        _ = try lab.apply(1, resources: """
            [[resource]]
            name = "app"
            agent = "script:\(script)"
            preferred = ["\(vn)"]
            stop_timeout_ms = 3000
            """ + fencing(lab, failingFirstLevel: false))
        try lab.waitFor("app on \(vn)", timeout: 30) { self.runningOn(lab, "app", asking: 2) == [vn] }
        XCTAssertEqual(try status(lab, 2).coordinator, "node1")
        let pid = try XCTUnwrap(lab.pid(v))
        XCTAssertEqual(lab.run("/usr/bin/nsenter", ["-t", "\(pid)", "-m", "touch", "/run/resource-agents/stuck"]).code, 0)
        let t0 = Int(Lab.monoNowMs())
        XCTAssertEqual(lab.hactl(2, ["standby", vn]).code, 0)
        try lab.waitFor("app recovered elsewhere", timeout: 60) { let w = self.runningOn(lab, "app", asking: 2); return !w.isEmpty && !w.contains(vn) }
        let all = lab.allEvents().filter { $0.mono >= t0 }
        XCTAssertTrue(all.contains { $0.text.hasPrefix("resource-stop-failed resource=app") }, "the stop did not fail")
        let fenced = try XCTUnwrap(all.first { $0.text.hasPrefix("fence-succeeded node=\(vn)") })
        XCTAssertTrue(fenced.text.contains(v == 1 ? "by=node2" : "by=node1"), fenced.text)
        let started = try XCTUnwrap(all.first { $0.text == "resource-starting resource=app" })
        XCTAssertGreaterThan(started.mono, fenced.mono)
        XCTAssertTrue(lab.pids(in: v, matching: "").isEmpty)
        // The node comes back after its power-off, as a new incarnation: it rejoins cleanly
        // (probes before anything, no fence mark, nothing fenced-while-running) and app stays.
        lab.kill(v)
        // Power on: the links the switch took down come up again.
        for line in lab.run("/usr/sbin/ip", ["-n", lab.ns(v), "-o", "link", "show"]).out.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2)
            guard parts.count > 1, let name = parts[1].trimmingCharacters(in: .whitespaces).split(separator: "@").first, name != "lo" else { continue }
            _ = lab.run("/usr/sbin/ip", ["-n", lab.ns(v), "link", "set", String(name), "up"])
        }
        let t1 = Int(Lab.monoNowMs())
        try lab.startNode(v)
        try lab.waitFor("\(vn) back and unfenced", timeout: 30) {
            guard let s = try? self.status(lab, 2), let sv = try? self.status(lab, v) else { return false }
            return s.nodes.first { $0.name == vn }?.state == "online" && s.fencing == nil && sv.fencing == nil
        }
        let back = lab.events(v).filter { $0.mono >= t1 }
        XCTAssertTrue(back.contains { $0.text.hasPrefix("probe resource=app") }, "\(vn) did not probe on its return")
        XCTAssertFalse(back.contains { $0.text.hasPrefix("fenced-while-running") || $0.text.hasPrefix("resource-starting") })
        XCTAssertEqual(runningOn(lab, "app", asking: 2).count, 1)
    }

    /// fence_heuristics_ping (fence-agents, unmodified) first in the level: while the fencing
    /// node cannot ping its target the level fails and nothing is fenced (db stays blocked,
    /// nowhere twice); once the target answers (a new configuration), the retry fences and db moves.
    func testHeuristicsPingFirstInTheLevelHoldsBackFencing() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/fence_heuristics_ping") else {
            XCTFail("fence_heuristics_ping is missing: install Debian's fence-agents (.ci/install-deps.sh does)")
            return
        }
        let lab = try makeLab(heartbeatLinks: 1)
        try startQuorate(lab)
        func resources(pinging target: String) -> String {
            var t = """
                [[resource]]
                name = "db"
                agent = "ocf:heartbeat:Dummy"
                preferred = ["node3"]

                [[fence]]
                name = "can-reach"
                agent = "fence_heuristics_ping"
                hosts = ["node1", "node2", "node3"]
                params = { ping_targets = "\(target)", ping_count = "2", ping_good_count = "1", ping_timeout = "1" }
                monitor_interval_ms = 0
                """ + fencing(lab, failingFirstLevel: false)
            for n in 1...3 { t += "\n[[fence_level]]\nnode = \"node\(n)\"\nindex = 1\ndevices = [\"can-reach\", \"lab-switch\"]\n" }
            return t
        }
        // 198.18.0.250 is on the lab's own bridge and nobody has it: pings stay in the lab.
        _ = try lab.apply(1, resources: resources(pinging: "198.18.0.250"))
        try lab.waitFor("db on node3", timeout: 30) { self.runningOn(lab, "db") == ["node3"] }
        let t0 = Int(Lab.monoNowMs())
        lab.pause(3, true)
        try lab.waitFor("a failed fence", timeout: 30) { lab.allEvents().contains { $0.mono >= t0 && $0.text.hasPrefix("fence-failed node=node3") } }
        let failed = try XCTUnwrap(lab.allEvents().first { $0.mono >= t0 && $0.text.contains("level 1 failed: can-reach off") })
        XCTAssertFalse(failed.text.contains("Error"), "the agent refused its parameters: \(failed.text)")
        XCTAssertFalse(lab.pids(in: 3, matching: "clusterd").isEmpty, "node3 was powered off although the heuristics failed")
        XCTAssertTrue(runningOn(lab, "db").isEmpty, "db started elsewhere without a fence")
        // The client (198.18.0.100) answers: the next attempt passes the heuristics and fences.
        _ = try lab.apply(1, resources: resources(pinging: "198.18.0.100"))
        try lab.waitFor("db running elsewhere", timeout: 60) { let w = self.runningOn(lab, "db"); return !w.isEmpty && !w.contains("node3") }
        XCTAssertTrue(lab.allEvents().contains { $0.mono >= t0 && $0.text.hasPrefix("fence-succeeded node=node3") && $0.text.contains("device=can-reach+lab-switch") })
        XCTAssertTrue(lab.pids(in: 3, matching: "").isEmpty)
        lab.kill(3)
    }

    /// `hactl fence NODE` with a device that powers nothing off (fence_dummy): the node learns it
    /// was fenced while it runs, stops everything, stays out until `hactl cleanup NODE`.
    func testANodeFencedWhileRunningStopsEverythingUntilCleanup() throws {
        try requireFenceDummy()
        let lab = try makeLab(heartbeatLinks: 1)
        // A hook that records the fence events with their environment.
        let hooks = lab.workDir + "/hooks", hookLog = lab.workDir + "/hooks.log"
        try FileManager.default.createDirectory(atPath: hooks, withIntermediateDirectories: true)
        try "#!/bin/sh\necho \"$VIGIL_EVENT node=$VIGIL_LOCAL_NODE target=$VIGIL_TARGET device=$VIGIL_DEVICE outcome=$VIGIL_FENCE_OUTCOME\" >> \(hookLog)\n"
            .write(toFile: hooks + "/10-fence", atomically: true, encoding: .utf8)
        chmod(hooks + "/10-fence", 0o755)
        chmod(hooks, 0o755)
        chmod(lab.workDir, 0o755)
        try addClusterLine(lab, "hooks_dir = \"\(hooks)\"")
        try startWithDummyFencedDb(lab)
        // Without --yes on a non-interactive input, nothing happens.
        XCTAssertNotEqual(lab.hactl(1, ["fence", "node3"]).code, 0)
        let r = lab.hactl(1, ["fence", "node3", "--yes"])
        XCTAssertEqual(r.code, 0, r.out + r.err)
        XCTAssertTrue(r.out.contains("SUCCEEDED"), r.out)
        try lab.waitFor("db moved off node3", timeout: 30) { let w = self.runningOn(lab, "db"); return !w.isEmpty && !w.contains("node3") }
        XCTAssertTrue(lab.events(3).contains { $0.text.hasPrefix("fenced-while-running by=node1") })
        XCTAssertEqual(try status(lab, 3).fencing?.first?.state, "fenced-while-running")
        XCTAssertTrue(lab.isRunning(3))
        try lab.waitFor("the fence hooks", timeout: 10) {
            let l = (try? String(contentsOfFile: hookLog, encoding: .utf8)) ?? ""
            return l.contains("fence-begun node=node1 target=node3 device= outcome=begun")
                && l.contains("fence-succeeded node=node1 target=node3 device=dummy outcome=succeeded")
                && l.contains("fenced-while-running node=node3 target= device=dummy")
        }
        // Back after cleanup (db stays where it runs: stickiness outweighs the preference).
        XCTAssertEqual(lab.hactl(2, ["cleanup", "node3"]).code, 0)
        try lab.waitFor("node3 online and no longer fenced", timeout: 30) {
            guard let s1 = try? self.status(lab, 1), let s3 = try? self.status(lab, 3) else { return false }
            return s1.fencing == nil && s3.fencing == nil && s1.nodes.first { $0.name == "node3" }?.state == "online"
        }
        XCTAssertTrue(lab.events(3).contains { $0.text == "cleanup resource=node node3" })
        // The history survives a restart (state_dir/fence-history.json, written atomically).
        XCTAssertTrue(lab.stop(2))
        try lab.startNode(2)
        try lab.waitFor("node2's history after its restart", timeout: 20) {
            lab.hactl(2, ["fence", "history"]).out.contains("SUCCEEDED  node=node3 by=node1 device=dummy")
        }
    }
}
