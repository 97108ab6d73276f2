import Foundation
import Glibc
import XCTest
import VigilCore
import VigilLab

/// Issue 13, clones with real clusterds and Debian's `ocf:heartbeat:Dummy` unmodified: a clone
/// runs on all three nodes, an instance killed is restarted alone on its node, and an address
/// colocated with (and ordered after) the clone moves when the clone can no longer run on its
/// node.
final class CloneNamespaceTests: NamespaceTestCase {
    static let resources = """
        [[clone]]
        name = "cache"
        agent = "ocf:heartbeat:Dummy"
        monitor_interval_ms = 500
        migration_threshold = 2

        [[ip]]
        name = "web-ip"
        address = "\(Scenarios.vip)/24"
        interface = "eth0"
        preferred = ["node1", "node2"]

        [[colocation]]
        resource = "web-ip"
        with = "cache"

        [[order]]
        first = "cache"
        then = "web-ip"
        """

    func started(_ lab: Lab) -> [String: [String]] {
        guard let s = try? status(lab, 1) else { return [:] }
        var out: [String: [String]] = [:]
        for r in s.resources where r.state == "started" { out[r.name] = r.runningOn }
        return out
    }

    /// Removes Dummy's state file on node `i` (its private /run): the next monitor finds the
    /// instance not running.
    func kill(_ lab: Lab, _ i: Int) throws {
        let pid = try XCTUnwrap(lab.pid(i))
        XCTAssertEqual(lab.run("/usr/bin/nsenter", ["-t", "\(pid)", "-m", "rm", "/run/resource-agents/Dummy-cache.state"]).code, 0)
    }

    func testACloneRunsEverywhereAnInstanceRecoversAloneAndTheAddressFollowsTheClone() throws {
        let lab = try makeLab(heartbeatLinks: 1)
        try startQuorate(lab)
        _ = try lab.apply(1, resources: Self.resources)
        try lab.waitFor("an instance on every node, the address on node1", timeout: 20) {
            let s = self.started(lab)
            return s["cache:node1"] == ["node1"] && s["cache:node2"] == ["node2"] && s["cache:node3"] == ["node3"] && s["web-ip"] == ["node1"]
        }
        XCTAssertEqual(lab.owners(of: Scenarios.vip), [1])
        // The address started after the instance on its node.
        let ev1 = lab.events(1).map(\.text)
        XCTAssertLessThan(try XCTUnwrap(ev1.firstIndex(of: "resource-started resource=cache:node1")), try XCTUnwrap(ev1.firstIndex(of: "resource-starting resource=web-ip")))
        // Each node ran only its own instance (no probe or start of the others' there).
        for i in 1...3 {
            let foreign = lab.events(i).filter { e in e.text.contains("resource=cache:") && !e.text.contains("resource=cache:node\(i)") && e.text.hasPrefix("agent ") }
            XCTAssertEqual(foreign.map(\.text), [], "node\(i) ran another node's instance")
        }

        // node2's instance dies: restarted there, alone.
        var t0 = Int(Lab.monoNowMs())
        try kill(lab, 2)
        try lab.waitFor("node2's instance restarted", timeout: 10) {
            lab.events(2).contains { $0.mono >= t0 && $0.text == "resource-started resource=cache:node2" }
        }
        XCTAssertTrue(lab.events(2).contains { $0.mono >= t0 && $0.text.hasPrefix("resource-failed resource=cache:node2") })
        Thread.sleep(forTimeInterval: 1)
        for i in [1, 3] {
            XCTAssertFalse(lab.events(i).contains { $0.mono >= t0 && $0.text.hasPrefix("resource-st") }, "node\(i) stopped or started something for node2's failure")
        }
        XCTAssertEqual(started(lab)["web-ip"], ["node1"])

        // node1's instance fails twice (migration_threshold = 2): it may not run there any
        // more, and the address colocated with the clone moves to node2, after its instance.
        t0 = Int(Lab.monoNowMs())
        try kill(lab, 1)
        try lab.waitFor("node1's instance restarted once", timeout: 10) {
            lab.events(1).contains { $0.mono >= t0 && $0.text == "resource-started resource=cache:node1" }
        }
        t0 = Int(Lab.monoNowMs())
        try kill(lab, 1)
        try lab.waitFor("the address on node2, node1's instance stopped", timeout: 20) {
            let s = self.started(lab)
            return s["web-ip"] == ["node2"] && s["cache:node1"] == nil && s["cache:node2"] == ["node2"] && s["cache:node3"] == ["node3"]
        }
        XCTAssertEqual(lab.owners(of: Scenarios.vip), [2])
        for i in [2, 3] {
            XCTAssertFalse(lab.events(i).contains { $0.mono >= t0 && $0.text.hasPrefix("resource-st") && $0.text.contains("cache:") }, "node\(i)'s instance was touched")
        }
        let st = try status(lab, 1)
        XCTAssertEqual(st.resources.first { $0.name == "cache:node1" }?.state, "failed")
        // Cleanup lets it run again; the address stays (stickiness).
        XCTAssertEqual(lab.hactl(1, ["cleanup", "cache:node1"]).code, 0)
        try lab.waitFor("node1's instance back", timeout: 20) { self.started(lab)["cache:node1"] == ["node1"] }
    }
}
