import Foundation
import XCTest
import VigilCore
import VigilLab

/// Two data nodes and a witness, as real processes in namespaces: the owner killed, the data
/// nodes cut from each other, the witness killed.
final class WitnessNamespaceTests: NamespaceTestCase {
    /// The owner (a data node) is killed: its address answers on the other data node.
    func testKillingTheOwnerFailsOverToTheOtherDataNode() throws {
        let lab = try makeLab(witnesses: [3])
        let r = try Scenarios.unplannedFailover(lab: lab, preferred: 2)
        print("two nodes + witness, owner killed: outage_ms=\(r.outageMs)")
        XCTAssertEqual(lab.owners(of: Scenarios.vip), [1])
        XCTAssertLessThan(r.outageMs, 3000)
        XCTAssertNotEqual(lab.status(3)?.coordinator, "node3", "the witness became coordinator")
    }

    /// The data nodes cannot hear each other; the witness hears both: each keeps serving its own
    /// address, nothing stops, and no ARP request is answered by two MACs.
    func testASplitOfTheDataNodesLeavesExactlyOneOwnerPerAddress() throws {
        let lab = try makeLab(witnesses: [3])
        let r = try Scenarios.dataNodeSplit(lab: lab, seconds: 5)
        print("split: \(r.arp) stops=\(r.stops) owners=\(r.ownersAfter) peers_during=\(r.peerStates)")
        XCTAssertFalse(r.peerStates.contains("online"), "the data nodes still heard each other: \(r.peerStates)")
        for a in r.arp {
            XCTAssertGreaterThan(a.requests, 300)
            XCTAssertEqual(a.dual, 0, "requests answered by two MACs: \(a)")
            XCTAssertGreaterThan(a.answered, a.requests * 9 / 10, "the address must stay served: \(a)")
        }
        XCTAssertEqual(r.stops, [], "the split stopped something")
        XCTAssertEqual(r.ownersAfter, [[1], [2]])
    }

    /// The witness dies while both data nodes are up: nothing moves; status warns.
    func testTheWitnessDyingMovesNothing() throws {
        let lab = try makeLab(witnesses: [3])
        let r = try Scenarios.witnessDeath(lab: lab, seconds: 3)
        XCTAssertEqual(r.stops, [], "the witness's death stopped something")
        XCTAssertEqual(r.owners, [[1], [2]])
        let status = lab.hactl(1, ["status"])
        XCTAssertTrue(status.out.contains("WARNING: witness node3 is unreachable"), status.out)
        XCTAssertTrue(status.out.contains("(witness)"), status.out)
    }
}
