import XCTest
@testable import VigilCore
import VigilTestKit

/// Fencing on virtual time: simulated devices power the target off (it crashes) after 300 ms,
/// or fail while `fenceFailures` says so. The invariants (never two holders, never two
/// coordinators) are checked at every step; a paused node keeps what it holds, as a hung
/// machine does, so only fencing makes a `requires = "fencing"` resource safe to start elsewhere.
final class FencingSimulationTests: XCTestCase {
    static func resources(requires: String? = nil, devices: Bool = true) -> String {
        var t = """
            [[resource]]
            name = "db"
            agent = "ocf:heartbeat:Dummy"
            preferred = ["n3"]
            \(requires.map { "requires = \"\($0)\"" } ?? "")

            [[ip]]
            name = "vip"
            address = "192.0.2.60/24"
            interface = "eth0"
            preferred = ["n2"]

            """
        if devices {
            t += """
                [[fence]]
                name = "pdu"
                agent = "fence_dummy"
                hosts = ["n1", "n2", "n3"]

                """
        }
        return t
    }

    func settled(_ resources: String = FencingSimulationTests.resources(), seed: UInt64 = 1) throws -> SimCluster {
        var sim = try SimCluster(cluster: SimCluster.config(nodes: 3, links: 1), resources: resources, seed: seed)
        let t = sim.run(until: 10_000) { $0.holders(of: "db") == [3] && $0.holders(of: "vip") == [2] }
        XCTAssertNotNil(t, "the cluster never placed its resources")
        sim.run(1000)
        return sim
    }

    func testFencingIsTheDefaultOnlyWhereEveryNodeIsCovered() throws {
        let c = try SimCluster.config(nodes: 3, links: 1)
        let all = try ResourceSet.parse(Self.resources(), file: "r.toml", cluster: c)
        XCTAssertTrue(all.options("db").requiresFencing)
        XCTAssertFalse(all.options("vip").requiresFencing, "addresses follow the lease and the guardian, not fencing")
        let none = try ResourceSet.parse(Self.resources(devices: false), file: "r.toml", cluster: c)
        XCTAssertFalse(none.options("db").requiresFencing)
        let partial = Self.resources(devices: false) + "[[fence]]\nname = \"ipmi3\"\nagent = \"fence_ipmilan\"\nhosts = [\"n3\"]\n"
        XCTAssertFalse(try ResourceSet.parse(partial, file: "r.toml", cluster: c).options("db").requiresFencing)
        // Asking for fencing where a node it may run on is not covered is refused, naming both.
        XCTAssertThrowsError(try ResourceSet.parse(Self.resources(requires: "fencing", devices: false) + "[[fence]]\nname = \"ipmi3\"\nagent = \"fence_ipmilan\"\nhosts = [\"n3\"]\n", file: "r.toml", cluster: c)) { e in
            XCTAssertTrue("\(e)".contains("'db' requires fencing but may run on 'n1'"), "\(e)")
        }
        // ... unless it is banned from the uncovered nodes.
        let banned = Self.resources(requires: "fencing", devices: false) + """
            [[fence]]
            name = "ipmi3"
            agent = "fence_ipmilan"
            hosts = ["n3"]
            [[location]]
            resource = "db"
            node = "n1"
            score = "-inf"
            [[location]]
            resource = "db"
            node = "n2"
            score = "-inf"
            """
        XCTAssertTrue(try ResourceSet.parse(banned, file: "r.toml", cluster: c).options("db").requiresFencing)
    }

    func testBadFenceEntriesAreRefusedWithTheirPlace() throws {
        let c = try SimCluster.config(nodes: 3, links: 1)
        let cases: [(String, String)] = [
            ("[[fence]]\nname = \"d\"\nagent = \"/bin/sh -c x\"\nhosts = [\"n1\"]\n", "is not a fence agent"),
            ("[[fence]]\nname = \"d\"\nagent = \"fence_dummy\"\n", "fences no node"),
            ("[[fence]]\nname = \"d\"\nagent = \"fence_dummy\"\nhosts = [\"n9\"]\n", "'n9' is not a node"),
            ("[[fence]]\nname = \"d\"\nagent = \"fence_dummy\"\nhosts = [\"n1\"]\nparams = { action = \"off\" }\n", "'action' is set by the cluster"),
            ("[[fence]]\nname = \"d\"\nagent = \"fence_dummy\"\nhosts = [\"n1\"]\nparams = { passwd = \"a\\nb\" }\n", "spans lines"),
            ("[[fence]]\nname = \"d\"\nagent = \"fence_dummy\"\nhosts = [\"n1\"]\n[[fence_level]]\nnode = \"n2\"\nindex = 1\ndevices = [\"d\"]\n", "cannot fence 'n2'"),
            ("[[fence]]\nname = \"d\"\nagent = \"fence_dummy\"\nhosts = [\"n1\"]\n[[fence_level]]\nnode = \"n1\"\nindex = 1\ndevices = [\"x\"]\n", "'x' is not a fence device"),
            ("[[resource]]\nname = \"a\"\nagent = \"ocf:heartbeat:Dummy\"\nrequires = \"maybe\"\n", "'maybe' is not one of: quorum, fencing"),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try ResourceSet.parse(text, file: "r.toml", cluster: c), text) { e in
                XCTAssertTrue("\(e)".contains(expected), "\(text) -> \(e)")
                XCTAssertTrue("\(e)".contains("r.toml"), "\(e)")
            }
        }
    }

    func testLevelsAreTriedInOrderAndDefaultToEachDevice() throws {
        let c = try SimCluster.config(nodes: 3, links: 1)
        let text = """
            [[fence]]
            name = "ipmi"
            agent = "fence_ipmilan"
            hosts = ["n1", "n2", "n3"]
            params = { ip = "10.9.9.9", username = "admin", password = "s3cret" }
            [[fence]]
            name = "psu-a"
            agent = "fence_apc"
            host_map = { n1 = "3", n2 = "4" }
            [[fence]]
            name = "psu-b"
            agent = "fence_apc"
            host_map = { n1 = "7" }
            [[fence_level]]
            node = "n1"
            index = 2
            devices = ["psu-a", "psu-b"]
            [[fence_level]]
            node = "n1"
            index = 1
            devices = ["ipmi"]
            """
        let f = try ResourceSet.parse(text, file: "r.toml", cluster: c).fencing
        XCTAssertEqual(f.levels(for: "n1").map { $0.map(\.name) }, [["ipmi"], ["psu-a", "psu-b"]])
        XCTAssertEqual(f.levels(for: "n2").map { $0.map(\.name) }, [["ipmi"], ["psu-a"]])
        XCTAssertEqual(f.levels(for: "n3").map { $0.map(\.name) }, [["ipmi"]])
        // The agent's stdin: parameters, action, target and its plug; the secret never elsewhere.
        let input = try XCTUnwrap(f.device(named: "psu-a")).input(action: "off", target: "n2")
        XCTAssertEqual(input, "action=off\nnodename=n2\nplug=4\n")
        XCTAssertTrue(try XCTUnwrap(f.device(named: "ipmi")).input(action: "reboot", target: "n1").contains("password=s3cret\n"))
        XCTAssertTrue(FenceDevice.isSecret("password") && FenceDevice.isSecret("passwd_script") && !FenceDevice.isSecret("username"))
    }

    /// A hung node (its daemon and its application stop answering, the machine stays up) with an
    /// application that requires fencing: it is fenced after a majority withdrew its lease, and
    /// only then does the application start elsewhere; never two holders.
    func testAHungNodeIsFencedBeforeItsApplicationStartsElsewhere() throws {
        var sim = try settled()
        let t0 = sim.now
        sim.pause(3)
        let moved = sim.run(until: 15_000) { $0.holders(of: "db").contains(1) || $0.holders(of: "db").contains(2) }
        XCTAssertNotNil(moved, "db never recovered: \(sim.engine(1)?.waitingReason ?? [:])")
        let fence = try XCTUnwrap(sim.fences.first, "nothing was fenced")
        XCTAssertEqual(fence.target, 3)
        XCTAssertTrue(fence.ok)
        let start = try XCTUnwrap(sim.actions.first { $0.0 > t0 && $0.2 == "db" && $0.3 })
        XCTAssertGreaterThanOrEqual(start.0, fence.at, "db started at \(start.0) before the fence completed at \(fence.at)")
        XCTAssertEqual(sim.fences.count, 1, "fenced more than once: \(sim.fences.map(\.target))")
        XCTAssertEqual(sim.violations, [])
        // Every node recorded the outcome.
        sim.run(1000)
        let recorded = sim.events.filter { if case .fenceRecorded(let r) = $0.2 { return r.target == "n3" && r.outcome == .succeeded } else { return false } }
        XCTAssertEqual(Set(recorded.map(\.1)), [2], "the surviving non-coordinator did not learn of the fence")
    }

    /// With `requires = "quorum"` nothing is fenced: the lease rule alone decides.
    func testQuorumResourcesMoveWithoutFencing() throws {
        var sim = try settled(Self.resources(requires: "quorum"))
        sim.crash(3)
        XCTAssertNotNil(sim.run(until: 10_000) { !$0.holders(of: "db").isEmpty })
        XCTAssertTrue(sim.fences.isEmpty)
        XCTAssertEqual(sim.violations, [])
    }

    /// A membership flap (loss below the lease's tolerance) never fences.
    func testLossNeverFences() throws {
        var sim = try settled()
        for (k, _) in sim.paths { sim.paths[k]?.loss = 0.2 }
        sim.run(60_000)
        XCTAssertTrue(sim.fences.isEmpty, "fenced under loss: \(sim.fences.map(\.target))")
        XCTAssertEqual(sim.holders(of: "db"), [3])
        XCTAssertEqual(sim.violations, [])
    }

    /// Every level failing: retried with backoff, the application stays blocked (no start
    /// anywhere) until a fence succeeds.
    func testFailedFencingIsRetriedAndBlocksTheApplication() throws {
        var sim = try settled()
        sim.fenceFailures[3] = 2
        let t0 = sim.now
        sim.pause(3)
        XCTAssertNotNil(sim.run(until: 60_000) { $0.fences.contains { $0.ok } })
        let failed = sim.fences.filter { !$0.ok }
        XCTAssertEqual(failed.count, 2)
        let ok = try XCTUnwrap(sim.fences.first { $0.ok })
        // Backoff: 5 s after the first failure, 10 s after the second.
        XCTAssertGreaterThanOrEqual(ok.at - failed[0].at, 15_000)
        XCTAssertFalse(sim.actions.contains { $0.0 > t0 && $0.0 < ok.at && $0.2 == "db" && $0.3 }, "db started before the fence succeeded")
        XCTAssertNotNil(sim.run(until: 5000) { !$0.holders(of: "db").isEmpty })
        XCTAssertEqual(sim.violations, [])
    }

    /// A stop that fails blocks the resource; with a device covering its node the node is
    /// fenced and the resource recovered elsewhere; without one it stays blocked, as before.
    func testAFailedStopIsRecoveredByFencing() throws {
        for devices in [true, false] {
            var sim = try settled(Self.resources(devices: devices))
            sim.failingStops[3] = ["db"]
            sim.fail(3, "db", reason: "monitor failed", kind: .hard)
            let recovered = sim.run(until: 15_000) { s in s.holders(of: "db").contains { $0 != 3 } }
            if devices {
                XCTAssertNotNil(recovered, "db was not recovered: \(sim.engine(1)?.waitingReason ?? [:])")
                XCTAssertEqual(sim.fences.map(\.target), [3])
                XCTAssertEqual(sim.violations, [])
            } else {
                XCTAssertNil(recovered, "db started elsewhere while its stop had failed and nothing fenced n3")
                XCTAssertTrue(sim.fences.isEmpty)
            }
        }
    }

    /// `hactl fence confirm NODE`: an operator who powered the node off says so; recovery goes on
    /// without a device. Confirming a member that is up is refused.
    func testOperatorConfirmation() throws {
        var sim = try settled()
        sim.fenceFailures[3] = 1000
        sim.requestFence(on: 2, node: "n3", confirm: true, requestId: 7)
        sim.run(500)
        XCTAssertEqual(sim.replies[7]?.ok, false)
        XCTAssertTrue(sim.replies[7]?.message.contains("is a member") ?? false, "\(String(describing: sim.replies[7]))")
        sim.crash(3)
        XCTAssertNotNil(sim.run(until: 15_000) { $0.fences.contains { !$0.ok } })
        XCTAssertTrue(sim.holders(of: "db").isEmpty)
        sim.requestFence(on: 2, node: "n3", confirm: true, requestId: 8)
        XCTAssertNotNil(sim.run(until: 5000) { !$0.holders(of: "db").isEmpty }, "db not recovered after the confirmation")
        sim.run(1000)
        XCTAssertEqual(sim.replies[8]?.ok, true, "\(String(describing: sim.replies[8]))")
        XCTAssertEqual(sim.violations, [])
    }

    /// A node fenced while it still runs (a dummy device that powers nothing off) learns it,
    /// stops everything and runs nothing until `hactl cleanup` names it.
    func testANodeFencedWhileRunningStopsEverything() throws {
        var sim = try settled()
        sim.fenceMisses = [3]
        sim.requestFence(on: 2, node: "n3", confirm: false, requestId: 9)
        XCTAssertNotNil(sim.run(until: 5000) { !$0.fences.isEmpty })
        XCTAssertEqual(sim.replies[9]?.ok, true, "\(String(describing: sim.replies[9]))")
        // n3 learns it was fenced, stops db at once; db runs elsewhere, nothing returns to n3.
        XCTAssertNotNil(sim.run(until: 5000) { $0.engine(3)?.fencedOut == true && !$0.holders(of: "db").isEmpty && !$0.holders(of: "db").contains(3) })
        sim.run(10_000)
        XCTAssertTrue(sim.holding[3]?.isEmpty ?? true, "n3 runs \(sim.holding[3] ?? []) after it was fenced")
        XCTAssertEqual(sim.engine(1)?.status(now: sim.clock(1)).nodes.first { $0.name == "n3" }?.state, "leaving")
        // hactl cleanup n3: it may run again (the preference for n3 brings db back).
        sim.cleanup(on: 1, "n3")
        XCTAssertNotNil(sim.run(until: 10_000) { $0.engine(3)?.fencedOut == false && $0.engine(1)?.isFenced(3) == false })
        XCTAssertEqual(sim.violations, [])
    }

    func testFenceMessagesRoundTrip() throws {
        let rec = FenceRecord(target: "n3", targetIncarnation: 42, outcome: .succeeded, device: "ipmi+psu", by: "n1", reason: "stop of db failed")
        for m in [Message.fenceRecord(rec), .fenceRequest(requestId: 5, node: "n2", confirm: true), .fenceDelegate(node: "n1")] {
            XCTAssertEqual(try Message.decode(kind: m.kind, payload: m.encodePayload()), m)
        }
        var bad = Message.fenceRecord(rec).encodePayload()
        bad[4 + 2 + 8] = 9  // the outcome byte after target ("n3": 4-byte length + 2 bytes) and incarnation
        XCTAssertThrowsError(try Message.decode(kind: 8, payload: bad))
    }
}

extension FencingSimulationTests {
    /// A node put in standby whose stop fails: fenced, and the resource recovered elsewhere.
    func testAFailedStopOnStandbyIsRecoveredByFencing() throws {
        var sim = try settled()
        sim.failingStops[3] = ["db"]
        sim.standby(on: 1, node: "n3", true, requestId: 3)
        let recovered = sim.run(until: 20_000) { s in s.holders(of: "db").contains { $0 != 3 } }
        XCTAssertNotNil(recovered, "db was not recovered: \(sim.engine(1)?.waitingReason ?? [:]) fences=\(sim.fences.map(\.target))")
        XCTAssertEqual(sim.violations, [])
    }
}

/// Scenarios from an adversarial review of the fencing rules.
extension FencingSimulationTests {
    /// A new coordinator whose last report from a node predates a start an earlier coordinator
    /// ordered: the node stalls the moment it starts db, and the coordinator dies with it. The
    /// new coordinator must not take the stale "not held" for true: it fences before starting db.
    func testANewCoordinatorDoesNotTrustAStaleReport() throws {
        let res = """
            [[resource]]
            name = "db"
            agent = "ocf:heartbeat:Dummy"
            preferred = ["n5"]
            [[fence]]
            name = "pdu"
            agent = "fence_dummy"
            hosts = ["n1", "n2", "n3", "n4", "n5"]
            """
        var sim = try SimCluster(cluster: SimCluster.config(nodes: 5, links: 1), resources: res, seed: 3)
        XCTAssertNotNil(sim.run(until: 10_000) { $0.holders(of: "db") == [5] })
        // The millisecond db started on n5, n5 hangs (db keeps running) and the coordinator dies
        // as the others begin to withdraw n5's lease, before it could fence.
        sim.pause(5)
        XCTAssertNotNil(sim.run(until: 5000) { s in s.events.contains { if case .supportWithdrawn("n5", _) = $0.2 { return true } else { return false } } })
        sim.crash(1)
        XCTAssertNotNil(sim.run(until: 5000) { $0.engine(2)?.isCoordinator ?? false })
        // The rule at the new coordinator's first round: had n5's last report been sent before
        // the start (no db in it), it answers none of n2's heartbeats, so it cannot say db is
        // not there, assigned or not.
        var n2 = try XCTUnwrap(sim.engine(2))
        var office = try XCTUnwrap(n2.office)
        office.placement["db"] = nil
        n2.membership.peers[5]?.heldSet = []
        XCTAssertTrue(n2.needsFence(5, for: "db", office: office), "a stale 'not held' was trusted")
        XCTAssertNotNil(sim.run(until: 30_000) { $0.holders(of: "db").contains { $0 != 5 } }, "db never recovered: \(sim.engine(2)?.waitingReason ?? [:])")
        XCTAssertTrue(sim.fences.contains { $0.target == 5 && $0.ok }, "n5 was not fenced")
        XCTAssertEqual(sim.violations, [])
    }

    /// A fence that reports success but leaves the node running (wrong plug), whose stop of db
    /// failed: its heartbeats show the fence did not take; under loss (membership flaps) db must
    /// still never start elsewhere while the node holds it.
    func testAFenceThatDidNotTakeFreesNothing() throws {
        var sim = try settled()
        sim.fenceMisses = [3]
        sim.failingStops[3] = ["db"]
        sim.fail(3, "db", reason: "monitor failed", kind: .hard)
        XCTAssertNotNil(sim.run(until: 10_000) { !$0.fences.isEmpty })
        for (k, _) in sim.paths { sim.paths[k]?.loss = 0.3 }
        sim.run(30_000)
        XCTAssertTrue(sim.events.contains { if case .fenceIneffective("n3") = $0.2 { return true } else { return false } }, "the ineffective fence went unnoticed")
        XCTAssertEqual(sim.holders(of: "db"), [3], "db started elsewhere while n3 still held it")
        XCTAssertEqual(sim.violations, [])
        // Attempts keep their backoff: not one per heartbeat.
        XCTAssertLessThan(sim.fences.count, 12, "\(sim.fences.count) fences in 30 s")
    }

    /// A witness runs nothing: losing it never fences it, with devices or a watchdog.
    func testAWitnessIsNeverFenced() throws {
        var c = try SimCluster.config(nodes: 3, links: 1, witnesses: [1])
        c.watchdog = Watchdog(device: "/dev/watchdog", timeoutS: 2)
        let res = "[[resource]]\nname = \"db\"\nagent = \"ocf:heartbeat:Dummy\"\npreferred = [\"n3\"]\n"
        var sim = try SimCluster(cluster: c, resources: res, seed: 1)
        XCTAssertNotNil(sim.run(until: 10_000) { $0.holders(of: "db") == [3] })
        sim.crash(1)
        sim.run(20_000)
        XCTAssertFalse(sim.events.contains { if case .fence(let r) = $0.2 { return r.target == "n1" } else { return false } }, "the witness was fenced")
        XCTAssertEqual(sim.holders(of: "db"), [3])
        XCTAssertEqual(sim.violations, [])
    }
}

extension FencingSimulationTests {
    /// The coordinator's own stop of db fails: it cannot fence itself, so it asks a member to;
    /// the member fences it, a new coordinator recovers db elsewhere, never on two nodes.
    func testTheCoordinatorsFailedStopIsFencedByAMember() throws {
        let res = """
            [[resource]]
            name = "db"
            agent = "ocf:heartbeat:Dummy"
            preferred = ["n1"]
            [[fence]]
            name = "pdu"
            agent = "fence_dummy"
            hosts = ["n1", "n2", "n3"]
            """
        var sim = try SimCluster(cluster: SimCluster.config(nodes: 3, links: 1), resources: res, seed: 2)
        XCTAssertNotNil(sim.run(until: 10_000) { $0.holders(of: "db") == [1] })
        XCTAssertEqual(sim.coordinators, [1])
        sim.failingStops[1] = ["db"]
        sim.fail(1, "db", reason: "monitor failed", kind: .hard)
        XCTAssertNotNil(sim.run(until: 20_000) { s in s.holders(of: "db").contains { $0 != 1 } }, "db not recovered: \(sim.engine(2)?.waitingReason ?? [:])")
        let f = try XCTUnwrap(sim.fences.first)
        XCTAssertEqual(f.target, 1)
        XCTAssertEqual(f.by, 2, "the lowest-id member other than the coordinator fences it")
        XCTAssertTrue(f.ok)
        XCTAssertEqual(sim.violations, [])
    }
}
