import Foundation
import XCTest
import VigilCore
import VigilLab
import VigilControl

/// Issue 11, maintenance, with real clusterds in namespaces: a service killed in maintenance
/// triggers nothing; clusterd stopped and started again in maintenance (an upgrade) leaves the
/// address answering and adopts it; leaving maintenance re-probes and recovers.
final class MaintenanceTests: NamespaceTestCase {
    static let resources = """
        [[ip]]
        name = "web-ip"
        address = "\(Scenarios.vip)/24"
        interface = "eth0"
        preferred = ["node2"]

        [[resource]]
        name = "db"
        agent = "ocf:heartbeat:Dummy"
        preferred = ["node3"]
        monitor_interval_ms = 500
        """

    func state(_ lab: Lab, _ r: String) -> (state: String, on: [String], detail: String)? {
        (try? status(lab, 1))?.resources.first { $0.name == r }.map { ($0.state, $0.runningOn, $0.detail ?? "") }
    }

    func testMaintenanceLeavesEverythingAloneAcrossAClusterdRestart() throws {
        let lab = try makeLab()
        try startQuorate(lab)
        _ = try lab.apply(1, resources: Self.resources)
        try lab.waitFor("web-ip on node2 and db on node3", timeout: 30) {
            lab.owners(of: Scenarios.vip) == [2] && self.state(lab, "db")?.on == ["node3"] && self.state(lab, "db")?.state == "started"
        }
        let on = lab.hactl(1, ["maintenance", "on"])
        XCTAssertEqual(on.code, 0, on.err)
        XCTAssertTrue(on.out.contains("cluster in maintenance"), on.out)
        try lab.waitFor("maintenance on node3", timeout: 5) { (try? self.status(lab, 3))?.maintenance == true }
        XCTAssertTrue(lab.hactl(2, ["status"]).out.hasPrefix("MAINTENANCE:"))
        let since = Int(Lab.monoNowMs())

        // The service dies (Dummy's state file goes): its monitor sees it, nothing is done.
        let pid3 = try XCTUnwrap(lab.pid(3))
        XCTAssertEqual(lab.run("/usr/bin/nsenter", ["--target", "\(pid3)", "--mount", "--", "/bin/rm", "/run/resource-agents/Dummy-db.state"]).code, 0)
        try lab.waitFor("db seen failed on node3", timeout: 10) {
            lab.events(3).contains { $0.mono >= since && $0.text.contains("resource-failed resource=db") && $0.text.contains("left alone: maintenance") }
        }
        Thread.sleep(forTimeInterval: 2)
        XCTAssertEqual(lab.events(3).filter { $0.mono >= since && $0.text.contains("resource-failed resource=db") }.count, 1, "reported once, not at every monitor")
        XCTAssertTrue((try status(lab, 3)).resources.first { $0.name == "db" }?.detail?.hasPrefix("maintenance") ?? false)

        // clusterd on node2 stops (SIGTERM, an upgrade) and starts again: the address stays.
        let probe = try Probe(lab: lab, address: Scenarios.vip)
        defer { probe.stop() }
        try lab.waitFor("the client to get answers", timeout: 10) { probe.replies().count >= 20 }
        let t0 = Double(Lab.monoNowMs())
        XCTAssertTrue(lab.stop(2), "clusterd on node2 did not exit on SIGTERM")
        XCTAssertEqual(lab.owners(of: Scenarios.vip), [2], "the address went with clusterd")
        // The unit's clean-up step (ExecStopPost) leaves it too.
        let cleanup = lab.run("/usr/sbin/ip", ["netns", "exec", lab.ns(2), NamespaceTestCase.binDir + "/clusterd", "--config", lab.configPath, "--node", "node2", "--cleanup"])
        XCTAssertEqual(cleanup.code, 0, cleanup.err)
        XCTAssertTrue(cleanup.out.contains("removed 0 floating address(es)"), cleanup.out + cleanup.err)
        Thread.sleep(forTimeInterval: 2)
        XCTAssertEqual(lab.owners(of: Scenarios.vip), [2], "the address went after clusterd (the guardian, the clean-up?)")
        try lab.startNode(2)
        try lab.waitFor("node2 back with web-ip adopted", timeout: 20) {
            (try? self.status(lab, 2))?.resources.first { $0.name == "web-ip" }?.runningOn == ["node2"]
        }
        XCTAssertTrue(lab.events(2).contains { $0.mono >= since && $0.text.hasPrefix("address-adopted resource=web-ip") })
        let gap = try XCTUnwrap(probe.longestGap(from: t0, to: Double(Lab.monoNowMs())))
        print("maintenance-restart gap_ms=\(gap.gap)")
        XCTAssertLessThan(gap.gap, 1000, "the client lost the address while clusterd restarted in maintenance (stop, 2 s, start: a removal would cost seconds)")
        let acted = lab.allEvents().filter { $0.mono >= since && ($0.text.hasPrefix("resource-starting") || $0.text.hasPrefix("resource-stopping")) }
        XCTAssertEqual(acted.map(\.text), [], "something was started or stopped in maintenance")

        // Out of maintenance (once node2 is a quorate member again, as `hactl status --check`
        // would say): db is found not running and recovered; web-ip stays.
        try lab.waitFor("node2 quorate again", timeout: 20) { (try? self.status(lab, 2))?.quorate ?? false }
        XCTAssertEqual(lab.hactl(1, ["maintenance", "off"]).code, 0)
        try lab.waitFor("db running again", timeout: 30) {
            guard let s = self.state(lab, "db") else { return false }
            return s.state == "started" && s.on.count == 1
        }
        XCTAssertTrue(lab.allEvents().contains { $0.mono >= since && $0.text.hasPrefix("resource-starting resource=db") })
        XCTAssertEqual(lab.owners(of: Scenarios.vip), [2], "web-ip moved although nothing was wrong with it")
        XCTAssertNil(try status(lab, 1).maintenance)
    }

    /// `hactl standby NODE --wait` returns once the node runs nothing; `hactl refresh` probes
    /// again, so a copy started by hand elsewhere is found (and only one instance is left).
    func testStandbyWaitAndRefresh() throws {
        let lab = try makeLab()
        try startQuorate(lab)
        _ = try lab.apply(1, resources: Self.resources)
        try lab.waitFor("db on node3", timeout: 30) { self.state(lab, "db")?.on == ["node3"] && self.state(lab, "db")?.state == "started" }
        let sb = lab.hactl(1, ["standby", "node3", "--wait", "20"])
        XCTAssertEqual(sb.code, 0, sb.err)
        XCTAssertTrue(sb.out.contains("node3 runs nothing"), sb.out)
        // (--wait returns once node3 is empty; db may still be starting elsewhere.)
        try lab.waitFor("db started elsewhere", timeout: 15) {
            guard let s = self.state(lab, "db") else { return false }
            return s.state == "started" && s.on.count == 1 && s.on != ["node3"]
        }
        let on = try XCTUnwrap(state(lab, "db")?.on.first)
        let other = on == "node1" ? 2 : 1
        // An operator starts a second copy by hand on the other node; a refresh finds it.
        let since = Int(Lab.monoNowMs())
        let pid = try XCTUnwrap(lab.pid(other))
        XCTAssertEqual(lab.run("/usr/bin/nsenter", ["--target", "\(pid)", "--mount", "--", "/bin/touch", "/run/resource-agents/Dummy-db.state"]).code, 0)
        let r = lab.hactl(1, ["refresh", "db"])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertTrue(r.out.contains("refreshed 1 resource"), r.out)
        try lab.waitFor("the copy found by a probe on node\(other)", timeout: 10) {
            lab.events(other).contains { $0.mono >= since && $0.text.hasPrefix("found-leftover resource=db") }
        }
        try lab.waitFor("one instance left", timeout: 20) {
            guard let s = self.state(lab, "db") else { return false }
            return s.state == "started" && s.on.count == 1
        }
        XCTAssertEqual(lab.hactl(1, ["refresh"]).code, 0)
    }

    /// Fail counts survive a restart of clusterd (state directory, wall clock).
    func testFailCountsSurviveARestart() throws {
        let lab = try makeLab()
        try startQuorate(lab)
        _ = try lab.apply(1, resources: Self.resources)
        try lab.waitFor("db on node3", timeout: 30) { self.state(lab, "db")?.on == ["node3"] && self.state(lab, "db")?.state == "started" }
        let pid = try XCTUnwrap(lab.pid(3))
        XCTAssertEqual(lab.run("/usr/bin/nsenter", ["--target", "\(pid)", "--mount", "--", "/bin/rm", "/run/resource-agents/Dummy-db.state"]).code, 0)
        func count() -> Int? { (try? self.status(lab, 3))?.resources.first { $0.name == "db" }?.failCount }
        try lab.waitFor("one failure counted on node3", timeout: 10) { count() == 1 }
        try lab.waitFor("db restarted", timeout: 10) { self.state(lab, "db")?.state == "started" }
        XCTAssertTrue(lab.stop(3))
        try lab.startNode(3)
        try lab.waitFor("node3 back", timeout: 20) { (try? self.status(lab, 3))?.quorate ?? false }
        XCTAssertEqual(count(), 1, "the fail count was lost with the restart")
        XCTAssertTrue(lab.events(3).contains { $0.text.hasPrefix("fail counts restored: db=1") })
        // cleanup forgets it, also for the next life.
        XCTAssertEqual(lab.hactl(1, ["cleanup", "db"]).code, 0)
        try lab.waitFor("count cleared", timeout: 5) { count() == 0 || count() == nil }
    }

    /// `hactl snapshot -o FILE`: status, configuration, constraints, every node's holdings and
    /// failures, fail counts and fencing history in one JSON file.
    func testSnapshotHoldsTheWholeState() throws {
        let lab = try makeLab()
        try startQuorate(lab)
        _ = try lab.apply(1, resources: Self.resources)
        try lab.waitFor("db on node3", timeout: 30) { self.state(lab, "db")?.on == ["node3"] && self.state(lab, "db")?.state == "started" }
        XCTAssertEqual(lab.hactl(1, ["ban", "web-ip", "node1"]).code, 0)
        let path = lab.workDir + "/snap.json"
        let r = lab.hactl(1, ["snapshot", "-o", path])
        XCTAssertEqual(r.code, 0, r.err)
        let snap = try JSONDecoder().decode(Snapshot.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        XCTAssertEqual(snap.format, 1)
        XCTAssertEqual(snap.node, "node1")
        XCTAssertTrue(snap.config.contains("name = \"db\"") && snap.config.contains("origin = \"hactl ban\""), snap.config)
        XCTAssertEqual(snap.status.constraints, ["web-ip banned from node1 (hactl ban, until hactl clear web-ip)"])
        XCTAssertEqual(snap.nodes.map(\.name), ["node1", "node2", "node3"])
        XCTAssertEqual(snap.nodes.first { $0.name == "node3" }?.started, ["db"])
        XCTAssertTrue(snap.nodes.allSatisfy(\.member))
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        XCTAssertEqual(mode, 0o600)
    }
}
