import Foundation
import Glibc
import XCTest
import VigilCore
import VigilLab

/// Issue 10: two nodes under Corosync (token 1000 ms; lease 1000 + 1200 + 500 = 2700 ms) with
/// `corosync-qdevice` (model net, algorithm ffsplit, TLS off) beside each Corosync and
/// `corosync-qnetd` in the client namespace as the tiebreak, and the lab's fence agent
/// (Examples/fencing/fence_vigil_lab: a switch that kills everything in a node's namespace).
final class CorosyncPairTests: NamespaceTestCase {
    static let vip1 = "198.18.0.51", vip2 = "198.18.0.52"

    func resources(_ lab: Lab, fencing: Bool = true) -> String {
        var t = """
            [[ip]]
            name = "vip1"
            address = "\(Self.vip1)/24"
            interface = "eth0"
            preferred = ["node1"]

            [[ip]]
            name = "vip2"
            address = "\(Self.vip2)/24"
            interface = "eth0"
            preferred = ["node2"]

            """
        if fencing {
            t += """

                [[fence]]
                name = "lab-switch"
                agent = "\(FencingNamespaceTests.labAgent)"
                host_map = { node1 = "\(lab.ns(1))", node2 = "\(lab.ns(2))" }
                params = { prefix = "\(lab.prefix)" }
                timeout_ms = 20000

                """
        }
        return t
    }

    func startPair(_ lab: Lab) throws {
        for i in 1...2 { try lab.startCorosync(i) }
        try lab.startAll()
        try lab.waitFor("a coordinator both nodes follow", timeout: 60) {
            let c = (1...2).map { (try? self.status(lab, $0))?.coordinator }
            return c[0] != nil && c[0] == c[1]
        }
        _ = try lab.apply(1, resources: resources(lab))
        try lab.waitFor("vip1 on node1 and vip2 on node2", timeout: 30) {
            lab.owners(of: Self.vip1) == [1] && lab.owners(of: Self.vip2) == [2]
        }
    }

    /// A split between the two nodes (both still reach qnetd): qnetd gives its vote to one side;
    /// the other loses quorum and releases at once; the quorate side keeps its address, fences
    /// the other and then serves both addresses. An ARP watcher in the client namespace sees no
    /// request answered by two MACs.
    func testASplitLeavesExactlyOneNodeServing() throws {
        let lab = try makeLab(corosyncToken: 1000, nodes: 2, qdevice: true)
        try startPair(lab)
        let w1 = try ARPWatcher(lab: lab, address: Self.vip1, seconds: 25, name: "arp-vip1.txt")
        let w2 = try ARPWatcher(lab: lab, address: Self.vip2, seconds: 25, name: "arp-vip2.txt")
        Thread.sleep(forTimeInterval: 2)
        let t0 = Lab.monoNowMs()
        try lab.setSplit(([1], [2]))
        var winner = 0
        try lab.waitFor("one node serving both addresses", timeout: 30) {
            let o1 = lab.owners(of: Self.vip1), o2 = lab.owners(of: Self.vip2)
            guard o1.count == 1, o1 == o2 else { return false }
            winner = o1[0]
            return true
        }
        let took = Lab.monoNowMs() - t0
        let loser = 3 - winner
        // The loser was fenced: its clusterd, Corosync and qdevice are gone.
        try lab.waitFor("node\(loser) powered off", timeout: 10) { lab.pids(in: loser, matching: "").isEmpty }
        let r1 = try w1.result(), r2 = try w2.result()
        print("corosync-pair-split winner=node\(winner) took_ms=\(took) vip1: \(r1) vip2: \(r2)")
        XCTAssertEqual(r1.dual, 0, "vip1 answered by two MACs: \(r1)")
        XCTAssertEqual(r2.dual, 0, "vip2 answered by two MACs: \(r2)")
        XCTAssertGreaterThan(r1.requests + r2.requests, 1000)
        let st = try status(lab, winner)
        XCTAssertTrue(st.quorate)
        XCTAssertEqual(st.coordinator, "node\(winner)")
        // What the winner ran never stopped: one interval of its own address, from before the
        // split until now.
        let own = winner == 1 ? Self.vip1 : Self.vip2
        let held = lab.holdIntervals(address: own)[winner] ?? []
        XCTAssertEqual(held.count, 1, "node\(winner) let go of its own address: \(held)")
        XCTAssertTrue(held.first.map { $0.0 < Int(t0) } ?? false, "\(held)")
        let fences = lab.hactl(winner, ["fence", "history"]).out
        XCTAssertTrue(fences.contains("SUCCEEDED  node=node\(loser) by=node\(winner) device=lab-switch"), fences)
    }

    /// The coordinator's node is cut off entirely (from its peer and from qnetd): it loses
    /// quorum and releases at once; the other node, quorate with qnetd's vote, fences it and
    /// takes its address over. The logs show no instant at which both carried an address.
    func testTheCoordinatorCutOffIsFencedByTheOtherNode() throws {
        let lab = try makeLab(corosyncToken: 1000, nodes: 2, qdevice: true)
        try startPair(lab)
        XCTAssertEqual(try status(lab, 2).coordinator, "node1")
        let t0 = Lab.monoNowMs()
        try lab.setLinks(1, up: false)
        try lab.waitFor("node2 serving both addresses", timeout: 60) {
            lab.owners(of: Self.vip1) == [2] && lab.owners(of: Self.vip2) == [2]
        }
        print("corosync-pair-cutoff took_ms=\(Lab.monoNowMs() - t0)")
        try lab.waitFor("node1 powered off", timeout: 10) { lab.pids(in: 1, matching: "").isEmpty }
        for a in [Self.vip1, Self.vip2] {
            XCTAssertEqual(Lab.overlaps(lab.holdIntervals(address: a)), [], a)
        }
        let st = try status(lab, 2)
        XCTAssertEqual(st.coordinator, "node2")
        XCTAssertTrue(st.quorate)
    }

    /// A pair without a tiebreak in corosync.conf is refused at start, naming both ways.
    func testAPairWithoutQuorumDeviceOrTwoNodeIsRefused() throws {
        let lab = try makeLab(corosyncToken: 1000, nodes: 2)
        try lab.startCorosync(1)
        try lab.startNode(1)
        try lab.waitFor("clusterd to refuse", timeout: 30) { !lab.isRunning(1) }
        let log = lab.tail(lab.logFile(1), lines: 20)
        XCTAssertTrue(log.contains("a two-node cluster under Corosync needs a tiebreak") && log.contains("two_node: 1"), log)
    }
}
