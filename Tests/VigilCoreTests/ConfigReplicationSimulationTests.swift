import XCTest
import VigilCore
import VigilTestKit

/// Configurations larger than one datagram travel in pieces, both ways.
final class ConfigReplicationSimulationTests: XCTestCase {
    /// A file larger than one datagram: an operator's long comments count as much as definitions.
    static func large(_ n: Int) -> String {
        let comment = (0..<1200).map { "# note \($0): this address serves the payment gateway; do not move it by hand\n" }.joined()
        return comment + manyAddresses(n)
    }

    static func manyAddresses(_ n: Int) -> String {
        (0..<n).map { i in
            "[[ip]]\nname = \"addr\(i)\"\naddress = \"198.19.\(i / 250).\(i % 250 + 1)/16\"\ninterface = \"eth0\"\npreferred = [\"n\(i % 3 + 1)\"]\n"
        }.joined(separator: "\n")
    }

    /// A configuration whose standby list names a node that is not in the cluster file is
    /// refused, whoever sends it (issue 9, finding 8); a valid one is adopted.
    func testStandbyNamesFromPeersAreValidated() throws {
        let cluster = try SimCluster.config(nodes: 3)
        let text = Self.manyAddresses(2)
        for (standby, adopted) in [(["nosuch"], false), (["n2"], true)] {
            var e = Engine(cluster: cluster, selfId: 1, incarnation: 1, resources: .empty, resourceSet: ResourceSet(), now: 0)
            let offered = VersionedResources(version: 9, text: text, standby: standby)
            let bytes = Array(text.utf8)
            // Announced by the coordinator first: only a configuration asked for is taken.
            var beat = Heartbeat(sentAt: 50, isCoordinator: true, leaseMs: 1000, configVersion: 9, configDigest: offered.digest)
            beat.configCommitted = true
            let asked = e.receive(from: 2, link: 0, incarnation: 5, seq: 1, message: .heartbeat(beat), now: 200)
            XCTAssertTrue(asked.contains { if case .send(to: 2, .configRequest(version: 9, offset: 0)) = $0 { return true } else { return false } }, "\(asked)")
            let out = e.receive(from: 2, link: 0, incarnation: 5, seq: 2,
                                message: .configData(version: 9, digest: offered.digest, offset: 0, total: UInt32(bytes.count), chunk: bytes, standby: standby), now: 210)
            XCTAssertEqual(e.resources.version, adopted ? 9 : 0, "\(standby)")
            let rejected = out.contains { if case .event(.configRejected(_, let why)) = $0 { return why.contains("nosuch") } else { return false } }
            XCTAssertEqual(rejected, !adopted, "\(standby): \(out)")
        }
    }

    func testALargeConfigurationProposedOnAnyNodeReachesEveryNodeInPiecesDespiteLoss() throws {
        var sim = try SimCluster(cluster: SimCluster.config(nodes: 3), resources: "")
        sim.run(3000)
        let text = Self.large(30)
        XCTAssertGreaterThan(text.utf8.count, SimCluster.maxDatagramPayload, "must not fit one datagram")
        let follower = try XCTUnwrap(([1, 2, 3] as [NodeID]).first { !(sim.engine($0)?.isCoordinator ?? true) })
        sim.setAll(loss: 0.05, delay: 1, jitter: 3)
        sim.propose(on: follower, requestId: 77, text: text)
        let t = sim.run(until: 20_000) { s in
            s.replies[77] != nil && ([1, 2, 3] as [NodeID]).allSatisfy { s.engine($0)?.resources.text == text }
        }
        XCTAssertNotNil(t, "not replicated: reply \(String(describing: sim.replies[77])) versions \(([1, 2, 3] as [NodeID]).map { (sim.engine($0)?.resources.version ?? 99, sim.engine($0)?.resources.committed ?? false, sim.engine($0)?.isCoordinator ?? false) })")
        XCTAssertEqual(sim.replies[77]?.ok, true, sim.replies[77]?.message ?? "")
        XCTAssertNotNil(sim.run(until: 10_000) { s in (0..<30).allSatisfy { s.holders(of: "addr\($0)").count == 1 } }, "not everything placed")
        XCTAssertEqual(sim.violations, [])
    }

    func testALaggardCatchesUpOnALargeConfigurationInPieces() throws {
        var sim = try SimCluster(cluster: SimCluster.config(nodes: 3), resources: "")
        sim.run(3000)
        sim.partition([[3], [1, 2]])
        let text = Self.large(20)
        sim.propose(on: 1, requestId: 5, text: text)
        XCTAssertNotNil(sim.run(until: 10_000) { $0.replies[5]?.ok == true })
        XCTAssertNotEqual(sim.engine(3)?.resources.text, text)
        sim.heal()
        sim.setAll(loss: 0.1, delay: 1, jitter: 5)
        XCTAssertNotNil(sim.run(until: 20_000) { $0.engine(3)?.resources.text == text }, "the laggard never caught up")
        XCTAssertEqual(sim.engine(3)?.resources.version, sim.engine(1)?.resources.version)
    }
}

/// Issue 9, finding 8: a coordinator cut off just after it took a change, before a majority
/// stored it, must not make that change win over the majority's own change on its return.
final class CutOffChangeSimulationTests: XCTestCase {
    /// Three settled nodes; the coordinator `c` is cut off from the two `others` and takes a
    /// change `x` whose digest would win the tie of equal versions against the majority's
    /// change `y` (request 1). Returns one millisecond later.
    func cutOffCoordinatorTakesAChange(tag: String) throws -> (sim: SimCluster, c: NodeID, others: [NodeID], base: UInt64, x: String, y: String) {
        var sim = try SimCluster(cluster: SimCluster.config(nodes: 3), resources: "")
        sim.run(3000)
        let c = try XCTUnwrap(sim.coordinators.first)
        let others = ([1, 2, 3] as [NodeID]).filter { $0 != c }
        let base = try XCTUnwrap(sim.engine(c)?.resources.version)
        let y = ConfigReplicationSimulationTests.manyAddresses(1)
        let x = try Self.winningChange(over: y, version: base + 1, tag: tag)
        sim.partition([[c], others])
        sim.propose(on: c, requestId: 1, text: x)
        sim.run(1)
        XCTAssertEqual(sim.engine(c)?.resources.text, x, "the coordinator took the change at once")
        return (sim, c, others, base, x, y)
    }

    func testAnUnconfirmedChangeOfACutOffCoordinatorDoesNotWinOnItsReturn() throws {
        let t = try cutOffCoordinatorTakesAChange(tag: "change")
        var sim = t.sim
        let (c, others, base, x, y) = (t.c, t.others, t.base, t.x, t.y)
        sim.run(49)
        // A second change on top, also unconfirmed: both are taken back, not just the last.
        sim.propose(on: c, requestId: 3, text: x + "\n# and another\n")
        sim.run(50)
        XCTAssertEqual(sim.engine(c)?.resources.version, base + 2)
        sim.run(3000)
        XCTAssertEqual(sim.engine(c)?.resources.version, base, "the cut-off coordinator kept a change no majority stored")
        XCTAssertEqual(sim.replies[3]?.ok, false)
        sim.propose(on: others[0], requestId: 2, text: y)
        sim.run(3000)
        XCTAssertEqual(sim.replies[2]?.ok, true, "the majority's change: \(String(describing: sim.replies[2]))")
        XCTAssertEqual(sim.replies[1]?.ok, false, "the cut-off change was reported as applied")
        sim.heal()
        sim.run(5000)
        for n in [1, 2, 3] as [NodeID] {
            XCTAssertEqual(sim.engine(n)?.resources.text, y, "n\(n) ended with the cut-off coordinator's change")
        }
        XCTAssertEqual(sim.violations, [])
    }

    /// A change whose digest wins the tie of equal versions against `y` (so that ordering by
    /// version and digest alone would let it win).
    static func winningChange(over y: String, version: UInt64, tag: String) throws -> String {
        let yDigest = VersionedResources(version: version, text: y).digest
        return try XCTUnwrap((0..<100).lazy.map { "# \(tag) \($0)\n" + ConfigReplicationSimulationTests.manyAddresses(2) }
            .first { VersionedResources(version: version, text: $0).digest > yDigest })
    }

    /// A peer that stored the cut-off coordinator's unconfirmed changes (two of them, so they
    /// even carry a higher version than the majority's) must not hand them to anyone: the
    /// majority's confirmed change wins on every node, the peer's included.
    func testAPeerHoldingTheCutOffChangesDoesNotHandThemBack() throws {
        var sim = try SimCluster(cluster: SimCluster.config(nodes: 5), resources: "")
        sim.run(3000)
        let c = try XCTUnwrap(sim.coordinators.first)
        let all: [NodeID] = [1, 2, 3, 4, 5]
        let rest = all.filter { $0 != c }
        let p = rest[0], majority = Array(rest.dropFirst())
        let base = try XCTUnwrap(sim.engine(c)?.resources.version)
        let y = ConfigReplicationSimulationTests.manyAddresses(1)
        let x = try Self.winningChange(over: y, version: base + 1, tag: "cut off")
        sim.partition([[c, p], majority])
        sim.propose(on: c, requestId: 1, text: x)
        sim.run(50)
        sim.propose(on: c, requestId: 2, text: x + "\n# and another\n")
        XCTAssertNotNil(sim.run(until: 1000) { $0.engine(p)?.resources.version == base + 2 }, "the peer on the coordinator's side never stored its changes")
        XCTAssertEqual(sim.engine(p)?.resources.committed, false, "two of five nodes confirmed a change")
        sim.run(3000)
        sim.propose(on: majority[0], requestId: 3, text: y)
        sim.run(3000)
        XCTAssertEqual(sim.replies[3]?.ok, true, "the majority's change: \(String(describing: sim.replies[3]))")
        sim.heal()
        sim.run(6000)
        for n in all {
            XCTAssertEqual(sim.engine(n)?.resources.text, y, "n\(n) ended with the cut-off coordinator's change")
            XCTAssertEqual(sim.engine(n)?.resources.committed, true, "n\(n)")
        }
        XCTAssertEqual(sim.violations, [])
    }

    /// The coordinator takes a change and dies before anyone stored it; the others make their
    /// own. On its return (its saved copy holds the unconfirmed change under the same version
    /// and a winning digest) it takes theirs.
    func testACoordinatorThatDiedWithAnUnconfirmedChangeTakesTheMajoritysOnReturn() throws {
        let t = try cutOffCoordinatorTakesAChange(tag: "lost")
        var sim = t.sim
        let (c, others, x, y) = (t.c, t.others, t.x, t.y)
        sim.crash(c)
        sim.run(4000)
        sim.propose(on: others[0], requestId: 2, text: y)
        sim.run(3000)
        XCTAssertEqual(sim.replies[2]?.ok, true, "the majority's change: \(String(describing: sim.replies[2]))")
        sim.heal()
        sim.restart(c)
        XCTAssertEqual(sim.engine(c)?.resources.text, x, "the restarted node starts from its saved, unconfirmed copy")
        sim.run(8000)
        for n in [1, 2, 3] as [NodeID] {
            XCTAssertEqual(sim.engine(n)?.resources.text, y, "n\(n) ended with the dead coordinator's unconfirmed change")
        }
        XCTAssertEqual(sim.violations, [])
    }
}
