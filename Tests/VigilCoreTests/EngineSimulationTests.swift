import XCTest
import VigilCore
import VigilTestKit

final class EngineSimulationTests: XCTestCase {
    let ipOn2 = """
        [[ip]]
        name = "vip"
        address = "192.0.2.50/24"
        interface = "eth0"
        preferred = ["n2"]
        """

    func makeSim(nodes: Int = 3, resources: String? = nil, seed: UInt64 = 1, policy: String = "stop") throws -> SimCluster {
        try SimCluster(cluster: SimCluster.config(nodes: nodes, policy: policy), resources: resources ?? ipOn2, seed: seed)
    }

    func testElectsLowestIdAndPlacesOnPreferredNode() throws {
        var sim = try makeSim()
        let t = sim.run(until: 3000) { $0.holders(of: "vip") == [2] }
        XCTAssertNotNil(t, "vip never started on n2")
        sim.run(200)
        XCTAssertEqual(sim.coordinators, [1])
        XCTAssertEqual(sim.violations, [])
        for id: NodeID in [1, 2, 3] {
            let st = try XCTUnwrap(sim.status(id))
            XCTAssertTrue(st.quorate, "n\(id) not quorate")
            XCTAssertEqual(st.coordinator, "n1")
        }
    }

    func testOwnerCrashMovesAddressWithinTheDocumentedBound() throws {
        var sim = try makeSim()
        XCTAssertNotNil(sim.run(until: 3000) { $0.holders(of: "vip") == [2] })
        sim.run(500)
        sim.crash(2)
        let bound = sim.cluster.timing.worstCaseTakeover + sim.cluster.timing.interval + 50
        let took = sim.run(until: 3000) { $0.holders(of: "vip").count == 1 }
        let t = try XCTUnwrap(took, "vip never moved")
        XCTAssertLessThanOrEqual(t, bound, "takeover took \(t) ms, bound \(bound)")
        XCTAssertGreaterThanOrEqual(t, sim.cluster.timing.timeout - sim.cluster.timing.interval, "moved before the peer could be declared lost")
        XCTAssertEqual(sim.violations, [])
    }

    /// The owner is the coordinator: the survivors elect a new one, which must start the address
    /// as fast as when any other owner dies (not a placement round later).
    func testCoordinatorOwnerCrashMovesWithinTheDocumentedBound() throws {
        for seed: UInt64 in 1...4 {
            var sim = try makeSim(resources: ipOn2.replacingOccurrences(of: "\"n2\"", with: "\"n1\""), seed: seed)
            XCTAssertNotNil(sim.run(until: 3000) { $0.holders(of: "vip") == [1] })
            sim.run(700)
            XCTAssertEqual(sim.coordinators, [1])
            sim.crash(1)
            let bound = sim.cluster.timing.worstCaseTakeover + sim.cluster.timing.interval + 50
            let t = try XCTUnwrap(sim.run(until: 3000) { $0.holders(of: "vip").count == 1 }, "seed \(seed): vip never moved")
            XCTAssertLessThanOrEqual(t, bound, "seed \(seed): takeover took \(t) ms, bound \(bound)")
            XCTAssertEqual(sim.violations, [])
        }
    }

    func testCutOffOwnerReleasesBeforeMajorityStarts() throws {
        var sim = try makeSim()
        XCTAssertNotNil(sim.run(until: 3000) { $0.holders(of: "vip") == [2] })
        sim.run(1000)
        sim.partition([[2], [1, 3]])
        XCTAssertNotNil(sim.run(until: 3000) { $0.holders(of: "vip").count == 1 && !$0.holders(of: "vip").contains(2) })
        let stop2 = try XCTUnwrap(sim.actions.last { $0.1 == 2 && $0.2 == "vip" && !$0.3 })
        let startOther = try XCTUnwrap(sim.actions.last { $0.1 != 2 && $0.2 == "vip" && $0.3 })
        XCTAssertLessThan(stop2.0, startOther.0, "the cut-off node must let go first")
        XCTAssertEqual(sim.violations, [])
        // n2 alone has no quorum and stays without resources.
        sim.run(2000)
        XCTAssertFalse(try XCTUnwrap(sim.status(2)).quorate)
        XCTAssertEqual(sim.holders(of: "vip").count, 1)
    }

    func testCutOffCoordinatorHandsOverSafely() throws {
        var sim = try makeSim(resources: ipOn2.replacingOccurrences(of: "\"n2\"", with: "\"n1\""))
        XCTAssertNotNil(sim.run(until: 3000) { $0.holders(of: "vip") == [1] })
        sim.run(500)
        sim.partition([[1], [2, 3]])
        let t = sim.run(until: 5000) { $0.holders(of: "vip").count == 1 && $0.holders(of: "vip") != [1] && $0.coordinators == [2] }
        XCTAssertNotNil(t)
        XCTAssertEqual(sim.violations, [])
        // The new coordinator reports the failover although it withdrew nothing itself.
        sim.run(500)
        XCTAssertTrue(sim.events.contains { $0.1 == 2 && $0.2 == .failoverBegun("vip", from: "n1", reason: "node n1 lost") })
        XCTAssertTrue(sim.events.contains { e in
            if e.1 == 2, case .failoverCompleted("vip", "n1", _, _) = e.2 { return true }
            return false
        })
    }

    /// The coordinator and the owner end up together in the minority, and the coordinator's
    /// "I resign" never reaches the owner: the owner's lease must still end with the old
    /// coordinator's term, before the majority elects a new one and restarts the address.
    func testOwnerAndCoordinatorCutOffTogetherReleaseBeforeMajorityTakesOver() throws {
        // Sweep the heartbeat phase at the partition and the moment the coordinator-to-owner
        // direction fails, across the coordinator's last heartbeats before it resigns.
        for seed in UInt64(1)...8 {
          for cutAfter in stride(from: UInt64(200), through: 360, by: 8) {
            var sim = try makeSim(nodes: 5, seed: seed)
            XCTAssertNotNil(sim.run(until: 3000) { $0.holders(of: "vip") == [2] && $0.coordinators == [1] })
            sim.run(1000)
            sim.partition([[1, 2], [3, 4, 5]])
            sim.run(cutAfter)
            sim.setPath(from: 1, to: 2, up: false)
            XCTAssertNotNil(sim.run(until: 4000) { $0.holders(of: "vip").count == 1 && $0.holders(of: "vip") != [2] })
            let stop2 = try XCTUnwrap(sim.actions.last { $0.1 == 2 && !$0.3 })
            let start = try XCTUnwrap(sim.actions.last { $0.1 != 2 && $0.3 })
            XCTAssertLessThan(stop2.0, start.0, "seed \(seed) cut after \(cutAfter) ms")
            XCTAssertEqual(sim.violations, [], "seed \(seed) cut after \(cutAfter) ms")
          }
        }
    }

    func testAsymmetricLinkNeverYieldsTwoCoordinatorsOrTwoHolders() throws {
        var sim = try makeSim()
        XCTAssertNotNil(sim.run(until: 3000) { $0.holders(of: "vip") == [2] })
        // n2 still hears n1, n1 no longer hears n2; likewise between n1 and n3 in one direction.
        sim.setPath(from: 2, to: 1, up: false)
        sim.run(3000)
        sim.setPath(from: 1, to: 3, up: false)
        sim.run(3000)
        sim.heal()
        sim.run(3000)
        XCTAssertEqual(sim.violations, [])
        XCTAssertEqual(sim.holders(of: "vip").count, 1)
        XCTAssertEqual(sim.coordinators.count, 1)
    }

    func testSingleDeadLinkIsReportedNotANodeFailure() throws {
        var sim = try makeSim()
        XCTAssertNotNil(sim.run(until: 3000) { $0.holders(of: "vip") == [2] })
        sim.setPath(from: 2, to: 1, up: false, links: [0])
        sim.setPath(from: 1, to: 2, up: false, links: [0])
        sim.run(2000)
        XCTAssertTrue(sim.events.contains { $0.1 == 1 && $0.2 == .linkDown("n2", "l0") })
        XCTAssertFalse(sim.events.contains { $0.2 == .peerLost("n2") })
        XCTAssertEqual(sim.holders(of: "vip"), [2])
        let n2 = try XCTUnwrap(sim.status(1)).nodes.first { $0.name == "n2" }
        XCTAssertEqual(n2?.state, "online")
        XCTAssertEqual(n2?.links.map(\.up), [false, true])
    }

    func testRecoveredNodeDoesNotPullAddressBackUnlessFailback() throws {
        for failback in [false, true] {
            var sim = try makeSim(resources: ipOn2 + "\nfailback = \(failback)\n")
            XCTAssertNotNil(sim.run(until: 3000) { $0.holders(of: "vip") == [2] })
            sim.crash(2)
            XCTAssertNotNil(sim.run(until: 3000) { $0.holders(of: "vip").count == 1 })
            let interim = sim.holders(of: "vip")
            sim.restart(2)
            sim.run(4000)
            XCTAssertEqual(sim.holders(of: "vip"), failback ? [2] : interim, "failback=\(failback)")
            XCTAssertEqual(sim.violations, [])
        }
    }

    /// `freeze` keeps applications running on a minority (for sites that fence), but never an
    /// address: that follows the lease, and the guardian removes it whatever the policy.
    func testMinorityWithFreezePolicyKeepsApplicationsButNeverAnAddress() throws {
        let app = ipOn2 + "\n[[resource]]\nname = \"app\"\nagent = \"ocf:heartbeat:Dummy\"\npreferred = [\"n2\"]\n"
        var sim = try makeSim(resources: app, policy: "freeze")
        XCTAssertNotNil(sim.run(until: 3000) { $0.holders(of: "vip") == [2] && $0.holders(of: "app") == [2] })
        sim.partition([[2], [1, 3]])
        sim.run(3000)
        XCTAssertTrue(sim.holders(of: "app").contains(2), "freeze keeps the application running on the minority")
        XCTAssertFalse(sim.actions.contains { $0.1 == 2 && $0.2 == "app" && !$0.3 }, "the application was stopped")
        XCTAssertEqual(sim.holders(of: "vip").filter { $0 != 2 }.count, 1, "the majority took the address over")
        XCTAssertFalse(sim.holders(of: "vip").contains(2), "the minority let go of the address")
        XCTAssertEqual(sim.violations.filter { $0.contains("vip") }, [])
    }

    func testFailedResourceMovesAndIsNotPlacedBack() throws {
        var sim = try makeSim()
        XCTAssertNotNil(sim.run(until: 3000) { $0.holders(of: "vip") == [2] })
        sim.fail(2, "vip", reason: "interface eth0 is down")
        XCTAssertNotNil(sim.run(until: 2000) { $0.holders(of: "vip").count == 1 && $0.holders(of: "vip") != [2] })
        sim.run(2000)
        XCTAssertFalse(sim.holders(of: "vip").contains(2))
        XCTAssertEqual(sim.violations, [])
    }

    func testStartFailureOnOneNodeFallsBackToAnother() throws {
        var sim = try makeSim()
        sim.failingStarts[2] = ["vip"]
        XCTAssertNotNil(sim.run(until: 4000) { $0.holders(of: "vip").count == 1 })
        XCTAssertNotEqual(sim.holders(of: "vip"), [2])
    }

    func testGracefulLeaveHandsOverBeforeExit() throws {
        var sim = try makeSim()
        XCTAssertNotNil(sim.run(until: 3000) { $0.holders(of: "vip") == [2] })
        sim.leave(2)
        let t = sim.run(until: 2000) { s in
            s.holders(of: "vip").count == 1 && s.holders(of: "vip") != [2] && (s.engine(2)?.handoverComplete(previouslyHeld: ["vip"]) ?? false)
        }
        XCTAssertNotNil(t)
        XCTAssertLessThan(try XCTUnwrap(t), 400, "a planned hand-over should not wait for a failure timeout")
        XCTAssertEqual(sim.violations, [])
    }

    func testConfigAppliedOnAnyNodeReachesEveryNodeAndLaggardCatchesUp() throws {
        var sim = try makeSim(resources: "")
        XCTAssertNotNil(sim.run(until: 3000) { $0.coordinators == [1] })
        sim.partition([[1, 2], [3]])
        sim.run(1000)
        sim.propose(on: 2, requestId: 7, text: ipOn2)
        XCTAssertNotNil(sim.run(until: 3000) { $0.replies[7] != nil })
        XCTAssertEqual(sim.replies[7]?.ok, true, sim.replies[7]?.message ?? "")
        XCTAssertEqual(sim.replies[7]?.version, 1)
        XCTAssertEqual(sim.engine(3)?.resources.version, 0, "n3 was cut off")
        // The minority refuses changes.
        sim.propose(on: 3, requestId: 8, text: ipOn2)
        XCTAssertEqual(sim.replies[8]?.ok, false)
        sim.heal()
        XCTAssertNotNil(sim.run(until: 3000) { $0.engine(3)?.resources.version == 1 })
        XCTAssertEqual(sim.engine(3)?.resourceSet.ips.first?.name, "vip")
    }

    func testInvalidConfigIsRefusedAndNothingChanges() throws {
        var sim = try makeSim()
        XCTAssertNotNil(sim.run(until: 3000) { $0.holders(of: "vip") == [2] })
        sim.propose(on: 3, requestId: 1, text: ipOn2 + "\nbogus = 1\n")
        XCTAssertEqual(sim.replies[1]?.ok, false)
        XCTAssertTrue(sim.replies[1]?.message.contains("bogus") ?? false)
        sim.run(500)
        for id: NodeID in [1, 2, 3] { XCTAssertEqual(sim.engine(id)?.resources.version, 1) }
    }

    func testNewCoordinatorRebuildsPictureAndStartsNothingTwice() throws {
        // The IP runs on n2; the coordinator n1 dies; n2 must keep... or release and restart it
        // exactly once, never on two nodes.
        var sim = try makeSim()
        XCTAssertNotNil(sim.run(until: 3000) { $0.holders(of: "vip") == [2] })
        sim.crash(1)
        XCTAssertNotNil(sim.run(until: 5000) { $0.coordinators == [2] && $0.holders(of: "vip").count == 1 })
        sim.run(2000)
        XCTAssertEqual(sim.holders(of: "vip").count, 1)
        XCTAssertEqual(sim.violations, [])
    }

    /// Randomised partitions, loss, delay and crashes over many seeds: the invariants
    /// (one holder per resource, one coordinator) must never break, and the cluster must
    /// always settle once the network heals.
    func testChaosKeepsInvariantsAcrossSeeds() throws {
        let two = ipOn2 + """

            [[ip]]
            name = "vip2"
            address = "192.0.2.51/24"
            interface = "eth0"
            preferred = ["n4"]
            """
        for seed in UInt64(1)...12 {
            var sim = try makeSim(nodes: 5, resources: two, seed: seed)
            var rng = SplitMix64(seed: seed &* 7919)
            sim.setAll(loss: 0.05, delay: 2, jitter: 30)
            sim.run(2000)
            for _ in 0..<12 {
                switch Int.random(in: 0..<6, using: &rng) {
                case 4:
                    sim.crash(NodeID.random(in: 1...5, using: &rng))
                case 5:
                    if let c = sim.crashed.first { sim.restart(c) }
                case 0:
                    let cut = NodeID.random(in: 1...5, using: &rng)
                    let others = (1...5).map(NodeID.n).filter { $0 != cut }
                    sim.partition([[cut], others])
                case 1:
                    let a = NodeID.random(in: 1...5, using: &rng)
                    var b = NodeID.random(in: 1...5, using: &rng)
                    if a == b { b = NodeID.n(Int(a.rawValue) % 5 + 1) }
                    sim.setPath(from: a, to: b, up: false)
                case 2:
                    sim.partition([[1, 2], [3, 4, 5]])
                default:
                    sim.heal()
                }
                sim.run(UInt64.random(in: 200...2500, using: &rng))
            }
            sim.heal()
            for c in sim.crashed { sim.restart(c) }
            sim.setAll(loss: 0, delay: 1, jitter: 0)
            let settled = sim.run(until: 8000) { $0.coordinators.count == 1 && $0.holders(of: "vip").count == 1 && $0.holders(of: "vip2").count == 1 }
            XCTAssertNotNil(settled, "seed \(seed) did not settle")
            XCTAssertEqual(sim.violations, [], "seed \(seed)")
        }
    }
}
