import XCTest
import VigilCore
import VigilTestKit

/// What heartbeats carry and when they are sent: facts and assignments only until the peer
/// acknowledged them (so a heartbeat does not grow with what a node runs), and every node in
/// step with its coordinator (so a node wakes about once per interval).
final class HeartbeatTrafficTests: XCTestCase {
    static func addresses(_ count: Int, nodes: Int) -> String {
        (0..<count).map { i in
            "[[ip]]\nname = \"a\(i)\"\naddress = \"198.19.\(i / 250).\(i % 250 + 1)/16\"\ninterface = \"eth0\"\npreferred = [\"n\(i % nodes + 1)\"]\n"
        }.joined()
    }

    func settledSim(addresses: Int, loss: Double = 0, seed: UInt64 = 3) throws -> SimCluster {
        var sim = try SimCluster(cluster: SimCluster.config(nodes: 3, links: 2), resources: Self.addresses(addresses, nodes: 3), seed: seed)
        if loss > 0 { sim.setAll(loss: loss, delay: 1, jitter: 2) }
        let t = sim.run(until: 20_000) { s in
            (0..<addresses).allSatisfy { i in s.holders(of: "a\(i)") == [NodeID.n(i % 3 + 1)] }
        }
        XCTAssertNotNil(t, "the addresses were never placed")
        sim.run(2000)
        XCTAssertEqual(sim.violations, [])
        return sim
    }

    /// 300 addresses on three nodes: once placed, a heartbeat is as small as with none (the
    /// facts of 100 addresses per node would be over 2 KB in every one of them).
    func testSettledHeartbeatsDoNotGrowWithResources() throws {
        for loss in [0.0, 0.2] {
            var sim = try settledSim(addresses: 300, loss: loss)
            sim.recordHeartbeats = true
            sim.run(3000)
            let log = sim.heartbeatLog
            let rounds = Int(3000 / sim.cluster.timing.interval)
            XCTAssertGreaterThan(log.count, 3 * 2 * rounds * 8 / 10, "loss \(loss)")
            let withFacts = log.filter(\.heartbeat.factsIncluded)
            let withAssignments = log.filter { $0.heartbeat.isCoordinator && $0.heartbeat.assignmentsIncluded }
            XCTAssertEqual(withFacts.count, 0, "loss \(loss): settled heartbeats still carry facts")
            XCTAssertEqual(withAssignments.count, 0, "loss \(loss): settled heartbeats still carry assignments")
            XCTAssertLessThan(log.map(\.bytes).max() ?? 0, 200, "loss \(loss)")
            XCTAssertEqual(sim.violations, [])
        }
    }

    /// Quiet is cheap: once 300 addresses are placed, no node walks its resources again while
    /// nothing changes (each evaluation used to), and the coordinator places them again only every
    /// ten seconds as a safety net (it used to every second). A failure still acts at once.
    func testSettledNodesDoNoWorkPerResource() throws {
        var sim = try settledSim(addresses: 300)
        let before = (1...3).map { sim.engine(NodeID.n($0))?.work ?? .init() }
        sim.run(20_000)
        let after = (1...3).map { sim.engine(NodeID.n($0))?.work ?? .init() }
        for i in 0..<3 {
            let evaluations = after[i].evaluations - before[i].evaluations
            XCTAssertGreaterThan(evaluations, 300, "n\(i + 1) is evaluated about once per heartbeat")
            XCTAssertLessThanOrEqual(after[i].desiredPasses - before[i].desiredPasses, 2, "n\(i + 1) walked its resources while nothing changed")
        }
        let coordinator = try XCTUnwrap(sim.coordinators.first)
        let c = Int(coordinator.rawValue) - 1
        XCTAssertLessThanOrEqual(after[c].placementRounds - before[c].placementRounds, 3, "a settled coordinator places 300 addresses again without cause")
        // Something changes: the pass runs, and the address moves.
        sim.fail(1, "a0", reason: "test")
        let moved = sim.run(until: sim.now + 3000) { s in s.holders(of: "a0").count == 1 && s.holders(of: "a0") != [1] }
        XCTAssertNotNil(moved, "a0 never moved away from n1")
        XCTAssertEqual(sim.violations, [])
    }

    /// A change of facts reaches every peer although the heartbeats that carry them are lost at
    /// random: they are sent until acknowledged, and then no more.
    func testChangedFactsAreResentUntilAcknowledged() throws {
        var sim = try settledSim(addresses: 30, loss: 0.3, seed: 5)
        sim.recordHeartbeats = true
        // a0 fails on n1: the new facts must reach the coordinator, which moves it.
        sim.fail(1, "a0", reason: "test")
        let moved = sim.run(until: sim.now + 5000) { s in s.holders(of: "a0").count == 1 && s.holders(of: "a0") != [1] }
        XCTAssertNotNil(moved, "a0 never moved away from n1")
        sim.run(3000)
        let late = sim.heartbeatLog.filter { $0.at > sim.now - 1000 }
        XCTAssertFalse(late.isEmpty)
        XCTAssertEqual(late.filter(\.heartbeat.factsIncluded).count, 0, "facts still sent after they were acknowledged")
        // Every peer holds n1's latest facts.
        let rev = sim.heartbeatLog.last(where: { $0.from == 1 })?.heartbeat.factsRev
        XCTAssertNotNil(rev)
        for id: NodeID in [2, 3] {
            XCTAssertEqual(sim.engine(id)?.peers[1]?.report?.factsRev, rev, "n\(id)")
            XCTAssertEqual(sim.engine(id)?.peers[1]?.report?.failed, ["a0"], "n\(id)")
        }
        XCTAssertEqual(sim.violations, [])
    }

    /// Nodes that started at random moments send in step with the coordinator after a few
    /// intervals, and no interval between two heartbeats is longer than planned (plus the slack).
    func testHeartbeatsFollowTheCoordinatorsPhase() throws {
        var sim = try settledSim(addresses: 3)
        guard let coordinator = sim.coordinators.first else { return XCTFail("no coordinator") }
        sim.recordHeartbeats = true
        sim.run(5000)
        let interval = sim.cluster.timing.interval
        let log = sim.heartbeatLog
        let coordinatorSends = log.filter { $0.from == coordinator }.map(\.at)
        for id: NodeID in [1, 2, 3] where id != coordinator {
            let mine = Array(Set(log.filter { $0.from == id }.map(\.at))).sorted()
            XCTAssertGreaterThan(mine.count, Int(5000 / interval) * 9 / 10)
            for (a, b) in zip(mine, mine.dropFirst()) {
                XCTAssertLessThanOrEqual(b - a, interval + 2, "n\(id): a gap of \(b - a) ms between heartbeats")
            }
            // Each of our heartbeats follows one of the coordinator's within the network delay
            // (1 ms here) and processing.
            let inStep = mine.filter { t in coordinatorSends.contains { $0 <= t && t - $0 <= 3 } }
            XCTAssertGreaterThan(Double(inStep.count), 0.9 * Double(mine.count), "n\(id) does not send in step with the coordinator")
        }
    }

    /// A follower's authority to start what the coordinator assigns outlasts a lost heartbeat:
    /// 20 % random loss on the only link for a minute, and the followers go without it for a few
    /// milliseconds in all (two or three of the coordinator's heartbeats and its answers lost in
    /// a row), so they hardly walk their resources again (the simulator checks at every step that
    /// no grant outlives the coordinator's term). Counted from the coordinator's send rather than
    /// from when it received the timestamp it echoes, the grant came to about one interval, and
    /// one lost heartbeat let it lapse: 3,402 ms in all in this minute, and the followers walked
    /// their resources 182 times.
    func testAuthorityToStartOutlastsALostHeartbeat() throws {
        var sim = try SimCluster(cluster: SimCluster.config(nodes: 3, links: 1), resources: Self.addresses(3, nodes: 3), seed: 5)
        XCTAssertNotNil(sim.run(until: 20_000) { s in (0..<3).allSatisfy { s.holders(of: "a\($0)") == [NodeID.n($0 + 1)] } })
        sim.run(2000)
        sim.setAll(loss: 0.2, delay: 1, jitter: 1)
        let before = (1...3).map { sim.engine(NodeID.n($0))?.work.desiredPasses ?? 0 }
        var lapses = 0
        for _ in 0..<60_000 {
            sim.run(1)
            for id: NodeID in [1, 2, 3] {
                guard let e = sim.engine(id), !e.isCoordinator else { continue }
                if e.authority == nil || sim.clock(id) >= e.authorityUntil { lapses += 1 }
            }
        }
        let after = (1...3).map { sim.engine(NodeID.n($0))?.work.desiredPasses ?? 0 }
        XCTAssertLessThanOrEqual(lapses, 60, "ms without authority on the followers")
        XCTAssertLessThanOrEqual(zip(after, before).map { $0 - $1 }.reduce(0, +), 8, "resources walked again")
        XCTAssertEqual(sim.coordinators.count, 1)
        XCTAssertEqual(sim.violations, [])
    }

    /// A heartbeat of the coordinator whose assignments the follower cannot apply (a revision it
    /// does not hold and that came without them, as when a page of them was lost), or that grants
    /// nothing, suspends the follower's grant at once: the heartbeat is recorded, so the
    /// follower's next report answers it, and the coordinator may count that report as releasing
    /// what it no longer assigns there. What runs there keeps running.
    func testAnAssignmentTheFollowerCannotApplySuspendsItsGrant() throws {
        var sim = try SimCluster(cluster: SimCluster.config(nodes: 3, links: 1), resources: Self.addresses(3, nodes: 3), seed: 5)
        XCTAssertNotNil(sim.run(until: 20_000) { s in (0..<3).allSatisfy { s.holders(of: "a\($0)") == [NodeID.n($0 + 1)] } })
        sim.recordHeartbeats = true
        sim.run(2000)
        let coordinator = try XCTUnwrap(sim.coordinators.first)
        let follower: NodeID = coordinator == 2 ? 3 : 2
        let last = try XCTUnwrap(sim.heartbeatLog.last { $0.from == coordinator && $0.to == follower && !$0.heartbeat.offBeat })
        for variant in ["unknown revision", "no grant"] {
            var e = try XCTUnwrap(sim.engine(follower))
            let now = sim.clock(follower)
            XCTAssertTrue(e.authority == coordinator && now < e.authorityUntil, "\(variant): no grant to begin with")
            let peer = try XCTUnwrap(e.peers[coordinator])
            var h = last.heartbeat
            h.sentAt = PeerTime(ms: h.sentAt.echoed + 40)
            if variant == "unknown revision" {
                h.assignmentsIncluded = false
                h.assignments = [:]
                h.assignmentsRev += 1
            } else {
                h.leaseMs = 0
            }
            let out = e.receive(from: coordinator, link: 0, incarnation: peer.incarnation, seq: peer.lastSeq + 1, message: .heartbeat(h), now: now)
            XCTAssertFalse(now < e.authorityUntil, "\(variant): the grant still holds")
            XCTAssertFalse(out.contains { if case .stop = $0 { return true } else { return false } }, "\(variant): \(out)")
            XCTAssertEqual(e.status(now: now).resources.filter { $0.runningOn == [e.selfName] }.count, 1, variant)
        }
    }

    /// Nothing lost, nothing asked: heartbeats in step leave no peer late. A peer whose heartbeats
    /// stop arriving (here for two intervals, less than the timeout) is asked every `retry` ms to answer
    /// at once, the first answer that gets through arrives off the rhythm within the network
    /// delay, and the peer was never lost.
    func testALatePeerIsAskedAndAnswersAtOnce() throws {
        var sim = try SimCluster(cluster: SimCluster.config(nodes: 3, links: 1), resources: Self.addresses(3, nodes: 3), seed: 4)
        XCTAssertNotNil(sim.run(until: 10_000) { s in (0..<3).allSatisfy { s.holders(of: "a\($0)") == [NodeID.n($0 + 1)] } })
        sim.run(2000)
        let timing = sim.cluster.timing
        sim.recordHeartbeats = true
        sim.run(10_000)
        XCTAssertEqual(sim.heartbeatLog.filter { $0.heartbeat.wantsReply || $0.heartbeat.offBeat }.count, 0, "questions asked while nothing was lost")
        let cutAt = sim.now
        sim.setPath(from: 2, to: 1, up: false)
        // Two intervals: with the heartbeat of n2 lost just before, n1 last heard it up to an
        // interval before the cut, still within the timeout when the path heals.
        sim.run(2 * timing.interval)
        sim.setPath(from: 2, to: 1, up: true)
        let healedAt = sim.now
        sim.run(500)
        let asks = sim.heartbeatLog.filter { $0.from == 1 && $0.to == 2 && $0.heartbeat.wantsReply && $0.at >= cutAt }.map(\.at)
        XCTAssertGreaterThanOrEqual(asks.count, 4, "n1 asked the silent n2 only \(asks.count) times")
        XCTAssertEqual(asks.first.map { $0 - cutAt <= timing.interval + timing.retry + 5 }, true, "first question \(asks.first.map { $0 - cutAt } ?? 0) ms after the cut")
        for (a, b) in zip(asks, asks.dropFirst()) where b < healedAt { XCTAssertGreaterThanOrEqual(b - a, timing.retry, "asked again after \(b - a) ms") }
        let answer = sim.heartbeatLog.first { $0.from == 2 && $0.to == 1 && $0.heartbeat.offBeat && $0.at >= healedAt }
        XCTAssertNotNil(answer, "n2 never answered off the rhythm")
        XCTAssertLessThanOrEqual((answer?.at ?? .max) - healedAt, timing.retry + 3)
        XCTAssertFalse(sim.events.contains { $0.0 >= cutAt && $0.2 == .peerLost("n2") }, "n2 was lost")
        XCTAssertEqual(sim.violations, [])
    }
}

/// A probe holds back only what it concerns: the resources tied to it by a group, an order or
/// a colocation. Everything else starts while it hangs.
final class ProbeScopeTests: XCTestCase {
    func testAHangingProbeHoldsBackOnlyItsRelatives() throws {
        let text = """
        [[ip]]
        name = "free-ip"
        address = "192.0.2.60/24"
        interface = "eth0"
        preferred = ["n2"]

        [[ip]]
        name = "tied-ip"
        address = "192.0.2.61/24"
        interface = "eth0"
        preferred = ["n2"]

        [[resource]]
        name = "db"
        agent = "ocf:heartbeat:Dummy"
        preferred = ["n2"]

        [[resource]]
        name = "other"
        agent = "ocf:heartbeat:Dummy"
        preferred = ["n3"]

        [[order]]
        first = "db"
        then = "tied-ip"
        """
        var sim = try SimCluster(cluster: SimCluster.config(nodes: 3, links: 1), resources: text, seed: 9)
        sim.hangingProbes[1] = ["db"]
        let t = sim.run(until: 5000) { s in s.holders(of: "free-ip") == [2] && s.holders(of: "other") == [3] }
        XCTAssertNotNil(t, "unrelated resources waited for another resource's probe")
        sim.run(2000)
        XCTAssertEqual(sim.holders(of: "db"), [], "db started while n1 was still probing it")
        XCTAssertEqual(sim.holders(of: "tied-ip"), [], "tied-ip (ordered after db) started while db was being probed")
        sim.finishProbe("db", on: 1)
        let t2 = sim.run(until: sim.now + 5000) { s in s.holders(of: "db") == [2] && s.holders(of: "tied-ip") == [2] }
        XCTAssertNotNil(t2, "db and tied-ip never started after the probe answered")
        XCTAssertEqual(sim.violations, [])
    }

    /// Issue 9, finding 6: 600 resources with long names, all on one node, make facts of
    /// about 40 KB and as many assignments; every heartbeat and state page still fits one
    /// unfragmented datagram (the simulator refuses any that does not), the resources are
    /// placed, and they fail over when their node dies, with 5 % of the packets lost.
    func testHeartbeatsFitOneDatagramWhateverTheConfiguration() throws {
        let long = String(repeating: "x", count: 60)
        let text = (0..<600).map { i in
            "[[ip]]\nname = \"\(long)\(i)\"\naddress = \"198.19.\(i / 250).\(i % 250 + 1)/16\"\ninterface = \"eth0\"\npreferred = [\"n1\", \"n2\"]\n"
        }.joined()
        var sim = try SimCluster(cluster: SimCluster.config(nodes: 3), resources: text, seed: 5)
        sim.setAll(loss: 0.05, delay: 1, jitter: 2)
        sim.recordHeartbeats = true
        let names = (0..<600).map { "\(long)\($0)" }
        let placed = sim.run(until: 30_000) { s in names.allSatisfy { s.holders(of: $0) == [1] } }
        XCTAssertNotNil(placed, "600 resources were never placed on n1")
        XCTAssertEqual(sim.violations, [])
        XCTAssertLessThanOrEqual(sim.heartbeatLog.map(\.bytes).max() ?? 0, Message.heartbeatBudget)
        sim.crash(1)
        let moved = sim.run(until: sim.now + 30_000) { s in names.allSatisfy { s.holders(of: $0) == [2] } }
        XCTAssertNotNil(moved, "the resources never failed over to n2")
        XCTAssertEqual(sim.violations, [])
    }

    /// Issue 7 (scale): while nodes probe hundreds of agents, their reports change many times
    /// per interval; the coordinator places at most once per `placementSpacing` for such
    /// changes (a round walks every resource: one per report had it spend most of its core on
    /// placement), and everything is still placed.
    func testPlacementRoundsAreSpacedWhileReportsChurn() throws {
        let agents = (0..<300).map { "[[resource]]\nname = \"d\($0)\"\nagent = \"ocf:heartbeat:Dummy\"\npreferred = [\"n\($0 % 3 + 1)\"]\n" }
        let text = HeartbeatTrafficTests.addresses(100, nodes: 3) + agents.joined()
        var sim = try SimCluster(cluster: SimCluster.config(nodes: 3, links: 1), resources: text, seed: 11)
        for n in 1...3 { sim.hangingProbes[NodeID.n(n)] = Set((0..<300).map { "d\($0)" }) }
        func home(_ i: Int) -> [NodeID] { [NodeID.n(i % 3 + 1)] }
        let up = sim.run(until: 10_000) { s in (0..<100).allSatisfy { i in s.holders(of: "a\(i)") == home(i) } }
        XCTAssertNotNil(up, "the addresses (nothing to probe) were never placed")
        let coordinator = try XCTUnwrap(sim.coordinators.first)
        let spacing: UInt64 = try XCTUnwrap(sim.engine(coordinator)).placementSpacing
        XCTAssertEqual(spacing, 40, "400 resources")
        let before = sim.engine(coordinator)?.work.placementRounds ?? 0
        // 900 probe answers, one every 2 ms, round the nodes.
        let start = sim.now
        for i in 0..<300 {
            for n in 1...3 {
                sim.finishProbe("d\(i)", on: NodeID.n(n))
                sim.run(2)
            }
        }
        let stormMs: UInt64 = sim.now - start
        let rounds: Int = (sim.engine(coordinator)?.work.placementRounds ?? 0) - before
        // Without spacing: a round per changed report, several hundred here.
        XCTAssertLessThanOrEqual(rounds, Int(stormMs / spacing) + 10, "\(rounds) placement rounds in \(stormMs) ms")
        XCTAssertGreaterThan(rounds, 5, "placement must still run while reports change")
        let placed = sim.run(until: sim.now + 10_000) { s in (0..<300).allSatisfy { i in s.holders(of: "d\(i)") == home(i) } }
        XCTAssertNotNil(placed, "the agents were never all placed")
        XCTAssertEqual(sim.violations, [])
    }

    /// The spacing is for reports of what runs where only: a lost node's addresses move as fast
    /// with 400 resources (spacing 40 ms) as with three, although placement ran just before the
    /// crash (a resource failure on another node).
    func testALostNodeIsPlacedAtOnceWhateverTheSpacing() throws {
        func failover(agents: Int, addresses: Int) throws -> UInt64 {
            let dummies = (0..<agents).map { "[[resource]]\nname = \"d\($0)\"\nagent = \"ocf:heartbeat:Dummy\"\npreferred = [\"n\($0 % 3 + 1)\"]\n" }
            let text = HeartbeatTrafficTests.addresses(addresses, nodes: 3) + dummies.joined()
            var sim = try SimCluster(cluster: SimCluster.config(nodes: 3, links: 1), resources: text, seed: 21)
            func home(_ i: Int) -> [NodeID] { [NodeID.n(i % 3 + 1)] }
            let up = sim.run(until: 20_000) { s in (0..<addresses).allSatisfy { i in s.holders(of: "a\(i)") == home(i) } }
            XCTAssertNotNil(up)
            sim.run(3000)
            let coordinator = try XCTUnwrap(sim.coordinators.first)
            let other = (1...3).map { NodeID.n($0) }.first { $0 != coordinator } ?? NodeID.n(2)
            let victim = (1...3).map { NodeID.n($0) }.first { $0 != coordinator && $0 != other } ?? NodeID.n(3)
            // Placement runs: a resource of `other` fails there (so a round ran just now).
            let mine = (0..<addresses).first { home($0) == [other] } ?? 0
            sim.fail(other, "a\(mine)", reason: "test")
            sim.run(5)
            sim.crash(victim)
            let theirs = (0..<addresses).filter { home($0) == [victim] }
            let moved = sim.run(until: 10_000) { s in theirs.allSatisfy { i in let h = s.holders(of: "a\(i)"); return h.count == 1 && h != [victim] } }
            XCTAssertEqual(sim.violations, [])
            return try XCTUnwrap(moved)
        }
        let small = try failover(agents: 0, addresses: 3)
        let large = try failover(agents: 300, addresses: 100)
        XCTAssertLessThanOrEqual(large, small + 20, "small \(small) ms, large \(large) ms")
    }
}
