import Foundation
import XCTest
import VigilCore
import VigilLab

/// Hardening finding 11: a rolling upgrade. node3 stands in for a node not yet upgraded: it
/// speaks only the previous protocol version (its packets carry version 7 and no history
/// messages, and it drops anything newer, as a version-7 node does). The cluster must form, show
/// node3 as on the previous protocol, carry a configuration change to it and run a resource
/// there; once node3 is "upgraded" (restarted without the switch) the notice goes away.
final class UpgradeNamespaceTests: NamespaceTestCase {
    func testAMixedClusterWorksAndShowsWhoIsNotUpgraded() throws {
        let lab = try makeLab(heartbeatLinks: 1)
        lab.extraArguments[3] = ["--speak-protocol", "7"]
        try startQuorate(lab)
        try lab.waitFor("three members on node1", timeout: 15) {
            ((try? self.status(lab, 1).nodes.filter { $0.state == "online" || $0.state == "local" }.count) ?? 0) == 3
        }
        let s1 = try status(lab, 1)
        XCTAssertEqual(s1.olderProtocolPeers, ["node3 (protocol 7)"])
        XCTAssertEqual(s1.incompatiblePeers, [])
        XCTAssertTrue(lab.events(1).contains { $0.text.contains("peer node3 speaks protocol version 7") })
        // node3 does not see itself as behind, and sees nobody it cannot talk to.
        let s3 = try status(lab, 3)
        XCTAssertNil(s3.olderProtocolPeers)
        XCTAssertEqual(s3.incompatiblePeers, [])
        XCTAssertTrue(s3.quorate)
        // The history leaves node3 out, saying why (version 7 knows no journal messages).
        let h = lab.hactl(1, ["history", "-o", "json"])
        XCTAssertEqual(h.code, 0, h.err)
        let report = try JSONDecoder().decode(History.Report.self, from: Data(h.out.utf8))
        XCTAssertEqual(report.nodes.first { $0.name == "node3" }?.note, "speaks protocol 7, which has no journal exchange: not included")
        XCTAssertEqual(report.nodes.first { $0.name == "node2" }?.complete, true)

        // A change made now reaches node3 (from the coordinator) and runs there.
        _ = try lab.apply(1, resources: Scenarios.resources(preferred: "node3", v6: false))
        try lab.waitFor("the address on node3", timeout: 15) { lab.owners(of: Scenarios.vip) == [3] }
        let version = try status(lab, 1).configVersion
        XCTAssertEqual(try status(lab, 3).configVersion, version)

        // Upgraded: restarted as the current version. The notice goes; the address is placed.
        XCTAssertTrue(lab.stop(3))
        lab.extraArguments[3] = nil
        try lab.startNode(3)
        try lab.waitFor("node3 back on the current protocol", timeout: 20) {
            let s = try? self.status(lab, 1)
            return s?.olderProtocolPeers == nil && (s?.nodes.first { $0.name == "node3" }?.state == "online")
        }
        try lab.waitFor("the address served once", timeout: 15) { lab.owners(of: Scenarios.vip).count == 1 }
        XCTAssertEqual(try status(lab, 3).configVersion, version)
    }
}
