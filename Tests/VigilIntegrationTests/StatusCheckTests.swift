import Foundation
import XCTest
import VigilCore
import VigilLab
import VigilControl

/// `hactl status --check` (issue 11, item 4): the exit code and the line a monitoring system
/// reads, in each state, from a real cluster.
final class StatusCheckTests: NamespaceTestCase {
    func check(_ lab: Lab, _ i: Int) -> (code: Int32, line: String) {
        let r = lab.hactl(i, ["status", "--check"])
        return (r.code, r.out.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    func testExitCodesInEachState() throws {
        let lab = try makeLab(heartbeatLinks: 1)
        try startQuorate(lab)
        _ = try lab.apply(1, resources: Scenarios.resources(preferred: "node2", v6: false))
        // Each state is read once per poll and asserted on that reading (the cluster moves on
        // between two calls: a lost node is "one-way" for a moment before it is "offline").
        var last: (code: Int32, line: String) = (0, "")
        try lab.waitFor("a healthy cluster", timeout: 20) { last = self.check(lab, 1); return last.code == 0 }
        XCTAssertTrue(last.line.hasPrefix("OK: 3 nodes online, quorate, coordinator node1, 1 resource started"), last.line)

        // A node dies: degraded (the cluster serves), the line names it.
        lab.kill(3)
        try lab.setLinks(3, up: false)
        try lab.waitFor("node1 to report node3 offline", timeout: 10) {
            last = self.check(lab, 1)
            return last.code == 1 && last.line.hasPrefix("WARNING: node node3 is offline")
        }

        // A second one: no quorum left.
        lab.kill(2)
        try lab.setLinks(2, up: false)
        try lab.waitFor("node1 without quorum", timeout: 10) { last = self.check(lab, 1); return last.code == 2 }
        XCTAssertTrue(last.line.hasPrefix("CRITICAL: node1 has no quorum"), last.line)

        // clusterd gone: unknown.
        lab.kill(1)
        let gone = check(lab, 1)
        XCTAssertEqual(gone.code, 3)
        XCTAssertTrue(gone.line.hasPrefix("UNKNOWN: clusterd unreachable"), gone.line)
    }

    /// Questions start over small IPC rings (64 KB: fast to set up on every call); an answer
    /// larger than that comes back as "ask again with rings this large", and hactl does. A
    /// configuration of 80 KB is shown whole, and so is the status that lists its 600
    /// addresses (a change is never asked twice: it gets large rings at once).
    func testAnswersLargerThanTheFirstRingsArriveWhole() throws {
        let lab = try makeLab(heartbeatLinks: 1)
        try startQuorate(lab)
        // (In maintenance: listed, never placed. The test is about the answer's size, not 600
        // addresses added at once by debug builds on two cores.)
        var text = "[[maintenance]]\nscope = \"cluster\"\n"
        for i in 0..<300 { text += "# line \(i) of a long comment that the configuration keeps as it was applied\n" }
        for i in 0..<600 {
            text += "[[ip]]\nname = \"big-address-number-\(i)\"\naddress = \"198.18.\(8 + i / 200).\(i % 200 + 1)/24\"\ninterface = \"eth0\"\n"
        }
        XCTAssertGreaterThan(text.utf8.count, 64 * 1024)
        _ = try lab.apply(1, resources: text)
        let shown = lab.hactl(1, ["config", "show"])
        XCTAssertEqual(shown.code, 0, shown.err)
        XCTAssertGreaterThan(shown.out.utf8.count, 64 * 1024)
        XCTAssertTrue(shown.out.contains("name = \"big-address-number-149\""))
        XCTAssertTrue(shown.out.contains("# line 299 of a long comment"))
        let status = lab.hactl(1, ["status", "--output", "json"])
        XCTAssertEqual(status.code, 0, status.err)
        // (As printed, indented; on the wire, compact, still well over 64 KB.)
        XCTAssertGreaterThan(status.out.utf8.count, 2 * 64 * 1024)
        for i in [0, 300, 599] { XCTAssertTrue(status.out.contains("big-address-number-\(i)\""), "resource \(i) missing from the status") }
    }

    /// The verdict on statuses that are hard to stage: a failure counted on a started
    /// resource, a link down, fencing, more reasons than one line names.
    func testTheVerdictNamesWhatIsWrong() throws {
        func node(_ name: String, _ id: UInt32, _ state: String, links: [Bool] = [true]) -> String {
            let l = links.enumerated().map { "{\"name\":\"ring\($0.offset)\",\"up\":\($0.element)}" }.joined(separator: ",")
            return "{\"name\":\"\(name)\",\"id\":\(id),\"state\":\"\(state)\",\"links\":[\(l)]}"
        }
        func status(quorate: Bool = true, nodes: [String], resources: String = "[]", extra: String = "") throws -> ClusterStatus {
            let json = """
                {"cluster":"c","localNode":"a","quorate":\(quorate),"votesForLocal":\(quorate ? 2 : 1),"majority":2,"coordinator":"a",
                 "localIsCoordinator":true,"noQuorumPolicy":"stop","configVersion":3,"nodes":[\(nodes.joined(separator: ","))],
                 "resources":\(resources),"counters":{"accepted":0,"forged":0,"replayed":0,"malformed":0,"incompatible":0,"foreignCluster":0,"unknownSender":0},
                 "incompatiblePeers":[]\(extra)}
                """
            return try JSONDecoder().decode(ClusterStatus.self, from: Data(json.utf8))
        }
        let healthy = try status(nodes: [node("a", 1, "local"), node("b", 2, "online"), node("c", 3, "online")])
        XCTAssertEqual(StatusCheck.evaluate(healthy).0, .healthy)
        let link = try status(nodes: [node("a", 1, "local"), node("b", 2, "online", links: [true, false]), node("c", 3, "online")])
        XCTAssertEqual(StatusCheck.evaluate(link).0, .degraded)
        XCTAssertEqual(StatusCheck.evaluate(link).1, "WARNING: link ring1 to b is down")
        let failed = try status(nodes: [node("a", 1, "local"), node("b", 2, "online"), node("c", 3, "online")],
                                resources: "[{\"name\":\"web\",\"kind\":\"ocf\",\"address\":\"-\",\"runningOn\":[\"b\"],\"state\":\"started\",\"failCount\":2}]")
        XCTAssertEqual(StatusCheck.evaluate(failed).1, "WARNING: resource web failed 2 times (hactl cleanup web once understood)")
        let many = try status(nodes: [node("a", 1, "local", links: [false]), node("b", 2, "offline"), node("c", 3, "online")],
                              extra: ",\"fencing\":[{\"node\":\"b\",\"state\":\"failed\"}],\"olderProtocolPeers\":[\"c (protocol 5)\"]")
        XCTAssertEqual(StatusCheck.evaluate(many).0, .degraded)
        XCTAssertTrue(StatusCheck.evaluate(many).1.hasSuffix("; and 1 more"), StatusCheck.evaluate(many).1)
        // Maintenance and unmanaged resources are named first: nothing is recovered meanwhile.
        let frozen = try status(nodes: [node("a", 1, "local"), node("b", 2, "online"), node("c", 3, "online")], extra: ",\"maintenance\":true,\"unmanaged\":[\"db\"]")
        XCTAssertEqual(StatusCheck.evaluate(frozen).0, .degraded)
        XCTAssertEqual(StatusCheck.evaluate(frozen).1, "WARNING: the cluster is in maintenance: nothing is recovered (hactl maintenance off); db is unmanaged (hactl manage db)")
        let alone = try status(quorate: false, nodes: [node("a", 1, "local"), node("b", 2, "offline"), node("c", 3, "offline")])
        XCTAssertEqual(StatusCheck.evaluate(alone).0, .noQuorum)
    }
}
