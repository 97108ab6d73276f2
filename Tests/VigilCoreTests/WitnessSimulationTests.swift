import XCTest
@testable import VigilCore
import VigilTestKit

/// Two data nodes and a witness (a vote without resources), on virtual time with the invariants
/// (never two holders, never two coordinators) checked at every step.
final class WitnessSimulationTests: XCTestCase {
    static let resources = """
        [[ip]]
        name = "vip1"
        address = "192.0.2.51/24"
        interface = "eth0"
        preferred = ["n2"]

        [[ip]]
        name = "vip2"
        address = "192.0.2.52/24"
        interface = "eth0"
        preferred = ["n3"]

        [[resource]]
        name = "app"
        agent = "ocf:heartbeat:Dummy"
        preferred = ["n3"]
        """

    func settled(seed: UInt64 = 1, links: Int = 1) throws -> SimCluster {
        var sim = try SimCluster(cluster: SimCluster.config(nodes: 3, links: links, witnesses: [1]), resources: Self.resources, seed: seed)
        let t = sim.run(until: 10_000) { s in
            s.holders(of: "vip1") == [2] && s.holders(of: "vip2") == [3] && s.holders(of: "app") == [3]
        }
        XCTAssertNotNil(t, "two data nodes and a witness never placed their resources")
        sim.run(1000)
        return sim
    }

    static func stopsAndStarts(_ sim: SimCluster, since t0: UInt64) -> Int { sim.actions.filter { $0.0 >= t0 }.count }

    /// The witness votes and supports leases, and is never coordinator; it never probes, starts or
    /// is assigned anything.
    func testTheWitnessVotesButRunsNothing() throws {
        let sim = try settled()
        // The witness has the lowest id, which would win an election it took part in.
        XCTAssertEqual(sim.coordinators, [2])
        let w = try XCTUnwrap(sim.engine(1))
        XCTAssertTrue(w.isWitness)
        XCTAssertTrue(w.held.isEmpty)
        XCTAssertTrue(w.probeIssued.isEmpty, "the witness probed \(w.probeIssued)")
        XCTAssertFalse(sim.actions.contains { $0.1 == 1 }, "the witness started or stopped something")
        // Both data nodes' leases rest on the witness as much as on each other.
        for id: NodeID in [2, 3] { XCTAssertGreaterThan(sim.engine(id)?.leaseUntil ?? 0, sim.clock(id)) }
        let status = try XCTUnwrap(sim.status(2))
        XCTAssertEqual(status.nodes.first { $0.name == "n1" }?.role, "witness")
        XCTAssertEqual(sim.violations, [])
    }

    /// Either data node killed: the other takes over what it ran (the coordinator's death
    /// included: the survivor is elected with the witness's vote).
    func testEitherDataNodeKilledFailsOver() throws {
        for victim: NodeID in [2, 3] {
            var sim = try settled(seed: UInt64(victim.rawValue))
            let survivor: NodeID = victim == 2 ? 3 : 2
            sim.crash(victim)
            let t = sim.run(until: 3000) { s in
                s.holders(of: "vip1") == [survivor] && s.holders(of: "vip2") == [survivor] && s.holders(of: "app") == [survivor]
            }
            XCTAssertNotNil(t, "n\(survivor) did not take over after n\(victim) died")
            if let t { XCTAssertLessThanOrEqual(t, sim.cluster.timing.worstCaseTakeover + 200, "takeover after n\(victim) died") }
            XCTAssertEqual(sim.coordinators, [survivor])
            XCTAssertEqual(sim.violations, [])
        }
    }

    /// The data nodes cannot hear each other, the witness hears both: both leases stay alive on
    /// the witness's support, one coordinator, nothing stops or moves.
    func testASplitOfTheDataNodesMovesNothingWhileTheWitnessHearsBoth() throws {
        var sim = try settled()
        let t0 = sim.now
        sim.setPath(from: 2, to: 3, up: false)
        sim.setPath(from: 3, to: 2, up: false)
        sim.run(20_000)
        XCTAssertEqual(Self.stopsAndStarts(sim, since: t0), 0, "\(sim.actions.filter { $0.0 >= t0 })")
        XCTAssertEqual(sim.holders(of: "vip1"), [2])
        XCTAssertEqual(sim.holders(of: "vip2"), [3])
        XCTAssertEqual(sim.coordinators.count, 1)
        XCTAssertEqual(sim.violations, [])
    }

    /// A data node cut off from both others: its resources move to the other data node once its
    /// lease ran out, never while it may still hold them.
    func testADataNodeCutOffFromBothLosesItsResourcesToTheOther() throws {
        var sim = try settled()
        sim.partition([[1, 2], [3]])
        let t = sim.run(until: 3000) { s in s.holders(of: "vip2") == [2] && s.holders(of: "app") == [2] }
        XCTAssertNotNil(t, "n3's resources never moved to n2")
        XCTAssertEqual(sim.holders(of: "vip1"), [2])
        XCTAssertEqual(sim.violations, [])
        // Healed: n3 rejoins; n2 stays coordinator.
        sim.heal()
        sim.run(5000)
        XCTAssertEqual(sim.coordinators, [2])
        XCTAssertEqual(sim.violations, [])
    }

    /// The witness dies while both data nodes are up: nothing stops, nothing moves.
    func testTheWitnessDyingMovesNothing() throws {
        var sim = try settled()
        let t0 = sim.now
        sim.crash(1)
        sim.run(20_000)
        XCTAssertEqual(Self.stopsAndStarts(sim, since: t0), 0, "\(sim.actions.filter { $0.0 >= t0 })")
        XCTAssertEqual(sim.coordinators, [2])
        let status = try XCTUnwrap(sim.status(2))
        XCTAssertEqual(status.nodes.first { $0.name == "n1" }?.state, "offline")
        XCTAssertEqual(sim.violations, [])
    }

    /// Random loss and a witness: the same quiet as three data nodes.
    func testQuietUnderLossWithAWitness() throws {
        var sim = try settled(seed: 7)
        let t0 = sim.now
        sim.setAll(loss: 0.2, delay: 1, jitter: 3)
        sim.run(120_000)
        XCTAssertEqual(Self.stopsAndStarts(sim, since: t0), 0)
        XCTAssertFalse(sim.events.contains { $0.0 >= t0 && $0.2 == .leaseLost(policy: "stop") })
        XCTAssertEqual(sim.violations, [])
    }
}
