import XCTest
@testable import VigilCore
import VigilTestKit

/// Two nodes under Corosync (`ClusterConfig.isCorosyncPair`), on virtual time: votequorum with
/// corosync-qdevice decides which side of a split keeps quorum (`membershipQuorate`), and
/// fencing decides when what the other side ran may move. The invariants (never two holders,
/// never two coordinators) are checked at every step.
final class CorosyncPairSimulationTests: XCTestCase {
    /// Lease and failure timeout as clusterd suggests them for token 1000 on two nodes:
    /// token 1000 + consensus 1200 + 500.
    static let lease = 2700

    static func cluster() throws -> ClusterConfig {
        try ClusterConfig.parse("""
            [cluster]
            name = "sim"
            key_file = "/dev/null"
            membership = "corosync"
            [timing]
            heartbeat_interval_ms = 100
            failure_timeout_ms = \(lease)
            lease_ms = \(lease)
            [[node]]
            name = "n1"
            id = 1
            [[node]]
            name = "n2"
            id = 2
            """, file: "pair.toml")
    }

    static func resources(fencing: Bool = true) -> String {
        """
        [[ip]]
        name = "vip1"
        address = "192.0.2.61/24"
        interface = "eth0"
        preferred = ["n1"]

        [[ip]]
        name = "vip2"
        address = "192.0.2.62/24"
        interface = "eth0"
        preferred = ["n2"]

        [[resource]]
        name = "db"
        agent = "ocf:heartbeat:Dummy"
        preferred = ["n2"]

        """ + (fencing ? """
        [[fence]]
        name = "pdu"
        agent = "fence_dummy"
        hosts = ["n1", "n2"]

        """ : "")
    }

    func settled(fencing: Bool = true, seed: UInt64 = 1) throws -> SimCluster {
        var sim = try SimCluster(cluster: Self.cluster(), resources: Self.resources(fencing: fencing), seed: seed)
        let t = sim.run(until: 20_000) { s in
            s.holders(of: "vip1") == [1] && s.holders(of: "vip2") == [2] && s.holders(of: "db") == [2]
        }
        XCTAssertNotNil(t, "the pair never placed its resources")
        sim.run(2000)
        return sim
    }

    /// Stops and starts on `node` since `t0`.
    func actions(_ sim: SimCluster, on node: NodeID, since t0: UInt64) -> [String] {
        sim.actions.filter { $0.0 >= t0 && $0.1 == node }.map { "\($0.3 ? "start" : "stop") \($0.2)" }
    }

    func testTheConfigurationAcceptsTwoNodesOnlyUnderCorosync() throws {
        XCTAssertTrue(try Self.cluster().isCorosyncPair)
        XCTAssertThrowsError(try SimCluster.config(nodes: 2, links: 1)) { e in
            XCTAssertTrue("\(e)".contains("role = \"witness\""), "\(e)")
        }
    }

    /// A split that votequorum gives to one side (as qdevice's ffsplit does, the loser learning
    /// it after the ring re-formed): the loser releases at once, the winner keeps what it runs,
    /// fences the loser, then recovers what the loser ran. Both ways round (the winner is the
    /// coordinator, or not).
    func testASplitLeavesTheQuorateSideServingAfterFencingTheOther() throws {
        for (winner, loser): (NodeID, NodeID) in [(1, 2), (2, 1)] {
            var sim = try settled()
            let t0 = sim.now
            sim.partition([[winner], [loser]])
            // The ring re-forms after token + consensus; qnetd's answer follows.
            sim.run(2300)
            sim.membershipQuorate(loser, false)
            sim.run(50)
            XCTAssertEqual(sim.engine(loser)?.leaseUntil, 0, "the loser released at once")
            XCTAssertTrue(sim.actions.filter { $0.0 >= t0 && $0.1 == loser }.allSatisfy { !$0.3 }, "the loser starts nothing")
            let moved = sim.run(until: 20_000) { s in
                ["vip1", "vip2", "db"].allSatisfy { s.holders(of: $0) == [winner] }
            }
            XCTAssertNotNil(moved, "winner n\(winner) never took everything over: \(sim.status(winner)?.resources.map { "\($0.name): \($0.detail ?? "")" } ?? [])")
            XCTAssertEqual(sim.fences.map(\.target), [loser], "the winner fenced the loser, once")
            XCTAssertEqual(sim.fences.map(\.by), [winner])
            // What the winner ran before the split never stopped.
            let stops = actions(sim, on: winner, since: t0).filter { $0.hasPrefix("stop") }
            XCTAssertEqual(stops, [], "n\(winner) stopped something: \(stops)")
            // Nothing of the loser started before the fence.
            let fenceAt = try XCTUnwrap(sim.fences.first?.at)
            let early = sim.actions.filter { $0.0 >= t0 && $0.0 < fenceAt && $0.1 == winner && $0.3 }
            XCTAssertEqual(early.map(\.2), [], "started before the fence")
            XCTAssertEqual(sim.violations, [], "winner n\(winner)")
        }
    }

    /// Without a fence device nothing the lost node ran moves; the status says why, and an
    /// operator's confirmation that it is off frees it.
    func testWithoutFencingNothingMovesUntilAnOperatorConfirms() throws {
        var sim = try settled(fencing: false)
        sim.partition([[1], [2]])
        sim.run(2300)
        sim.membershipQuorate(2, false)
        sim.run(15_000)
        XCTAssertEqual(sim.holders(of: "vip2"), [], "vip2 must wait for n2 to be fenced")
        XCTAssertEqual(sim.holders(of: "vip1"), [1])
        let reason = sim.status(1)?.resources.first { $0.name == "vip2" }?.detail ?? ""
        XCTAssertTrue(reason.contains("n2 is lost and nothing moves before it is fenced; no fence device covers it: hactl fence confirm n2 once it is off"), reason)
        XCTAssertEqual(sim.coordinators, [], "only a fenced node votes for the other")
        sim.requestFence(on: 1, node: "n2", confirm: true, requestId: 7)
        let moved = sim.run(until: 5000) { s in s.holders(of: "vip2") == [1] && s.holders(of: "db") == [1] }
        XCTAssertNotNil(moved, "the operator's confirmation did not free n2's resources")
        XCTAssertEqual(sim.violations, [])
    }

    /// A stalled clusterd on a healthy Corosync (both sides stay quorate): its guardian removes
    /// its addresses when its lease runs out, and the other node fences it before recovering.
    func testAStalledNodeIsFencedBeforeItsResourcesMove() throws {
        var sim = try settled()
        let t0 = sim.now
        sim.pause(2)
        let moved = sim.run(until: 20_000) { s in ["vip2", "db"].allSatisfy { s.holders(of: $0) == [1] } }
        XCTAssertNotNil(moved, "n1 never recovered n2's resources")
        XCTAssertEqual(sim.fences.map(\.target), [2])
        XCTAssertTrue(actions(sim, on: 1, since: t0).allSatisfy { $0.hasPrefix("start") })
        XCTAssertEqual(sim.violations, [])
    }

    /// Both sides quorate for a moment after the split (qnetd not yet answered): neither fences
    /// within a lease of losing the other, so the side about to lose quorum never fences the
    /// winner.
    func testTheLoserNeverFencesTheWinnerWhileVotequorumSettles() throws {
        for seed: UInt64 in 1...3 {
            var sim = try settled(seed: seed)
            sim.partition([[1], [2]])
            // qnetd takes its time: the loser (n1, the coordinator) learns only after a
            // failure timeout and most of a lease.
            sim.run(UInt64(Self.lease + Self.lease - 200))
            XCTAssertEqual(sim.fences.count, 0, "seed \(seed): fenced while votequorum was settling")
            sim.membershipQuorate(1, false)
            let moved = sim.run(until: 20_000) { s in ["vip1", "vip2", "db"].allSatisfy { s.holders(of: $0) == [2] } }
            XCTAssertNotNil(moved, "seed \(seed)")
            XCTAssertEqual(sim.fences.map(\.target), [1], "seed \(seed)")
            XCTAssertEqual(sim.violations, [], "seed \(seed)")
        }
    }

    /// Both sides stay quorate (as with votequorum's two_node and no quorum device): each keeps
    /// what it runs, and the fence race is won by the lower id (the higher waits half a lease
    /// more), so exactly one node is fenced and the other serves everything.
    func testWhenBothStayQuorateTheLowerIdWinsTheFenceRace() throws {
        var sim = try settled()
        let t0 = sim.now
        sim.partition([[1], [2]])
        let moved = sim.run(until: 20_000) { s in ["vip1", "vip2", "db"].allSatisfy { s.holders(of: $0) == [1] } }
        XCTAssertNotNil(moved)
        sim.run(5000)
        XCTAssertEqual(sim.fences.map(\.target), [2], "exactly one fence")
        XCTAssertEqual(actions(sim, on: 1, since: t0).filter { $0.hasPrefix("stop") }, [])
        XCTAssertEqual(sim.violations, [])
    }

    /// The other node stops cleanly (hands over, then exits): the survivor is coordinator
    /// without fencing it, and can act (a failed resource is recovered).
    func testACleanStopOfTheOtherNodeNeedsNoFence() throws {
        var sim = try settled()
        XCTAssertEqual(sim.coordinators, [1])
        sim.leave(1)  // the coordinator stops cleanly
        let handed = sim.run(until: 20_000) { s in ["vip1", "vip2", "db"].allSatisfy { s.holders(of: $0) == [2] } }
        XCTAssertNotNil(handed, "n1 never handed over")
        sim.crash(1)  // clusterd exits
        let coordinator = sim.run(until: 20_000) { $0.coordinators == [2] }
        XCTAssertNotNil(coordinator, "the survivor never took office")
        XCTAssertEqual(sim.fences.count, 0, "a node that left cleanly is not fenced")
        sim.kill("db", on: 2)
        sim.fail(2, "db", reason: "monitor: not running", kind: .soft)
        let back = sim.run(until: 10_000) { $0.holders(of: "db") == [2] }
        XCTAssertNotNil(back, "db was not recovered")
        XCTAssertEqual(sim.violations, [])
    }

    /// In a pair every resource requires fencing: an address whose stop failed on the other
    /// node (it must move: standby) gets that node fenced, then moves.
    func testAFailedStopOfAnAddressIsFencedInAPair() throws {
        var sim = try settled()
        sim.failingStops[2] = ["vip2"]
        sim.standby(on: 1, node: "n2", true, requestId: 5)
        let moved = sim.run(until: 20_000) { $0.holders(of: "vip2") == [1] }
        XCTAssertNotNil(moved, "vip2 never moved: \(sim.status(1)?.resources.map { "\($0.name) \($0.state) \($0.detail ?? "")" } ?? [])")
        XCTAssertEqual(sim.fences.map(\.target), [2])
        XCTAssertEqual(sim.violations, [])
    }
}
