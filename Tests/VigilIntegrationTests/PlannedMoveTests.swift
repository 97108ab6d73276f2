import Foundation
import XCTest
import VigilCore
import VigilLab

/// Issue 11, planned moves: `hactl move`, `ban`, `clear` with real clusterds in namespaces.
final class PlannedMoveTests: NamespaceTestCase {
    static let resources = """
        [[ip]]
        name = "web-ip"
        address = "\(Scenarios.vip)/24"
        interface = "eth0"
        preferred = ["node1"]

        [[ip]]
        name = "db-ip"
        address = "198.18.0.60/24"
        interface = "eth0"
        preferred = ["node1"]

        [[resource]]
        name = "db"
        agent = "ocf:heartbeat:Dummy"

        [[group]]
        name = "dbsvc"
        members = ["db-ip", "db"]
        """

    func start(_ lab: Lab) throws {
        try startQuorate(lab)
        _ = try lab.apply(1, resources: Self.resources)
        try lab.waitFor("web-ip and dbsvc on node1", timeout: 30) {
            lab.owners(of: Scenarios.vip) == [1] && (try? self.status(lab, 1))?.resources.first { $0.name == "db" }?.runningOn == ["node1"]
        }
    }

    /// A move to a node, shown and replicated, a hand-over the client barely notices; a move
    /// away (a ban where it runs); clear; a refusal that changes nothing.
    func testMoveBanClearAndTheClientsView() throws {
        let lab = try makeLab()
        try start(lab)
        let probe = try Probe(lab: lab, address: Scenarios.vip)
        defer { probe.stop() }
        try lab.waitFor("the client to get answers", timeout: 10) { probe.replies().count >= 30 }
        let t0 = Double(Lab.monoNowMs())
        let r = lab.hactl(2, ["move", "web-ip", "node3", "--wait", "15"])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertTrue(r.out.contains("web-ip moves to node3; it stays until hactl clear web-ip"), r.out)
        XCTAssertTrue(r.out.contains("web-ip runs on node3"), r.out)
        XCTAssertEqual(lab.owners(of: Scenarios.vip), [3])
        let count = probe.replies().count
        try lab.waitFor("answers from node3", timeout: 10) { probe.replies().count > count + 20 }
        let gap = try XCTUnwrap(probe.longestGap(from: t0, to: Double(Lab.monoNowMs())))
        print("planned-move gap_ms=\(gap.gap)")
        XCTAssertLessThan(gap.gap, 1000, "a planned hand-over must not wait for a lease")
        // Replicated, and shown by status and config show on every node.
        try lab.waitFor("the constraint on node1's status", timeout: 5) {
            (try? self.status(lab, 1))?.constraints == ["web-ip prefers node3 (hactl move, until hactl clear web-ip)"]
        }
        XCTAssertTrue(lab.hactl(3, ["status"]).out.contains("CONSTRAINT: web-ip prefers node3"))
        XCTAssertTrue(lab.hactl(1, ["config", "show"]).out.contains("origin = \"hactl move\""))
        // Away from where it runs: a ban on node3; it goes back to its preferred node1.
        let away = lab.hactl(1, ["move", "web-ip", "--wait", "15"])
        XCTAssertEqual(away.code, 0, away.err)
        XCTAssertTrue(away.out.contains("web-ip moves away from node3 (banned there)"), away.out)
        XCTAssertEqual(lab.owners(of: Scenarios.vip), [1])
        XCTAssertEqual(try status(lab, 1).constraints, ["web-ip banned from node3 (hactl ban, until hactl clear web-ip)"])
        // Clear drops it; a second clear is refused and changes nothing.
        XCTAssertEqual(lab.hactl(1, ["clear", "web-ip"]).code, 0)
        try lab.waitFor("no constraint left", timeout: 5) { (try? self.status(lab, 2))?.constraints == nil }
        let v = try status(lab, 1).configVersion
        let again = lab.hactl(1, ["clear", "web-ip"])
        XCTAssertEqual(again.code, 1)
        XCTAssertTrue(again.err.contains("web-ip has no constraint from hactl move or ban; nothing was changed"), again.err)
        let unknown = lab.hactl(1, ["move", "nope", "node2"])
        XCTAssertEqual(unknown.code, 1)
        XCTAssertTrue(unknown.err.contains("'nope' is not a resource or group"), unknown.err)
        XCTAssertEqual(lab.hactl(1, ["ban", "web-ip", "node1", "--lifetime", "soon"]).code, 64, "a bad duration is a usage error")
        XCTAssertEqual(try status(lab, 1).configVersion, v, "refusals changed the configuration")
    }

    /// A member moves with its group, in order; `--lifetime` ends a ban on its own.
    func testAGroupMovesAsOneAndALifetimeEnds() throws {
        let lab = try makeLab()
        try start(lab)
        let r = lab.hactl(1, ["move", "db", "node2", "--wait", "20"])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertTrue(r.out.contains("dbsvc moves to node2 (a member of group dbsvc: the group moves as one)"), r.out)
        XCTAssertEqual(lab.owners(of: "198.18.0.60"), [2])
        XCTAssertEqual(try status(lab, 1).resources.first { $0.name == "db" }?.runningOn, ["node2"])
        // The group started in order on node2: its address before db.
        let ev = lab.events(2).map(\.text)
        let ipAt = ev.firstIndex { $0.hasPrefix("resource-started resource=db-ip") }
        let dbAt = ev.firstIndex { $0.hasPrefix("resource-started resource=db") && !$0.contains("db-ip") }
        XCTAssertNotNil(ipAt)
        XCTAssertNotNil(dbAt)
        if let a = ipAt, let b = dbAt { XCTAssertLessThan(a, b, "db started before its address") }
        // The constraint outlives the coordinator (node1 killed) and a restart of node1.
        lab.kill(1)
        try lab.waitFor("a new coordinator", timeout: 15) { (try? self.status(lab, 2))?.localIsCoordinator ?? false }
        XCTAssertEqual(try status(lab, 2).constraints, ["dbsvc prefers node2 (hactl move, until hactl clear dbsvc)"])
        try lab.startNode(1)
        try lab.waitFor("node1 back and quorate", timeout: 20) { (try? self.status(lab, 1))?.quorate ?? false }
        XCTAssertEqual(try status(lab, 1).constraints, ["dbsvc prefers node2 (hactl move, until hactl clear dbsvc)"])
        Thread.sleep(forTimeInterval: 1)
        XCTAssertEqual(try status(lab, 1).resources.first { $0.name == "db" }?.runningOn, ["node2"], "the group left node2")
        // A ban for three seconds: it moves away from node1 ... and the ban ends by itself.
        XCTAssertEqual(lab.hactl(1, ["clear", "db"]).code, 0)
        let b = lab.hactl(1, ["ban", "web-ip", "node1", "--lifetime", "3s", "--wait", "15"])
        XCTAssertEqual(b.code, 0, b.err)
        XCTAssertTrue(b.out.contains("web-ip is banned from node1; it ends at"), b.out)
        XCTAssertNotEqual(lab.owners(of: Scenarios.vip), [1])
        try lab.waitFor("the ban to end", timeout: 15) { (try? self.status(lab, 1))?.constraints == nil }
        XCTAssertTrue(lab.allEvents().contains { $0.text.hasPrefix("constraint-ended web-ip banned from node1") })
    }
}
