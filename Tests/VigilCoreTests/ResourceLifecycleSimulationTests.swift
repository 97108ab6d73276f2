import XCTest
import VigilCore
import VigilTestKit

/// Agent resources on virtual time: restart in place, migration threshold, failed stops,
/// group order, standby and probes.
final class ResourceLifecycleSimulationTests: XCTestCase {
    let group = """
        [[ip]]
        name = "ip"
        address = "192.0.2.50/24"
        interface = "eth0"
        preferred = ["n2"]
        [[resource]]
        name = "app"
        agent = "ocf:heartbeat:Dummy"
        migration_threshold = 2
        [[group]]
        name = "svc"
        members = ["ip", "app"]
        """

    func started(_ sim: SimCluster) -> Bool { sim.holders(of: "ip").count == 1 && sim.holders(of: "ip") == sim.holders(of: "app") }

    func testGroupStartsInOrderOnOneNode() throws {
        var sim = try SimCluster(cluster: SimCluster.config(nodes: 3), resources: group)
        XCTAssertNotNil(sim.run(until: 3000) { self.started($0) })
        XCTAssertEqual(sim.holders(of: "app"), [2])
        let ipStart = try XCTUnwrap(sim.actions.first { $0.2 == "ip" && $0.3 })
        let appStart = try XCTUnwrap(sim.actions.first { $0.2 == "app" && $0.3 })
        XCTAssertLessThanOrEqual(ipStart.0, appStart.0)
        XCTAssertLessThan(sim.actions.firstIndex { $0.2 == "ip" && $0.3 } ?? 99, sim.actions.firstIndex { $0.2 == "app" && $0.3 } ?? -1)
    }

    func testSoftFailureRestartsInPlaceThenThresholdMovesTheGroup() throws {
        var sim = try SimCluster(cluster: SimCluster.config(nodes: 3), resources: group)
        XCTAssertNotNil(sim.run(until: 3000) { self.started($0) })
        sim.fail(2, "app", reason: "monitor: not running", kind: .soft)
        sim.run(500)
        XCTAssertEqual(sim.holders(of: "app"), [2], "first failure: restarted in place")
        XCTAssertEqual(sim.actions.filter { $0.1 == 2 && $0.2 == "app" && $0.3 }.count, 2, "stopped and started again")
        XCTAssertEqual(sim.engine(2)?.failCount("app", now: sim.clock(2)), 1)
        sim.fail(2, "app", reason: "monitor: not running", kind: .soft)
        XCTAssertNotNil(sim.run(until: 3000) { s in self.started(s) && s.holders(of: "app") != [2] })
        // Stopped in reverse order on n2.
        let stops = sim.actions.filter { $0.1 == 2 && !$0.3 }.suffix(2).map(\.2)
        XCTAssertEqual(stops, ["app", "ip"])
        XCTAssertEqual(sim.violations, [])
        // Cleanup forgets the failures.
        sim.cleanup(on: 1, "app")
        sim.run(300)
        XCTAssertEqual(sim.engine(2)?.failCount("app", now: sim.clock(2)), 0)
    }

    func testFailedStopBlocksTheResourceEvenWhenItsNodeIsLost() throws {
        var sim = try SimCluster(cluster: SimCluster.config(nodes: 3), resources: group)
        XCTAssertNotNil(sim.run(until: 3000) { self.started($0) })
        sim.failingStops[2] = ["app"]
        sim.fail(2, "app", reason: "monitor: agent error", kind: .hard)
        sim.run(1000)
        XCTAssertEqual(sim.engine(2)?.local["app"], .blocked)
        XCTAssertEqual(sim.holders(of: "app"), [2], "it may still run there")
        XCTAssertFalse(sim.actions.contains { $0.1 != 2 && $0.2 == "app" && $0.3 }, "never started elsewhere while blocked")
        let st = try XCTUnwrap(sim.status(1))
        XCTAssertEqual(st.resources.first { $0.name == "app" }?.state, "blocked")
        // Even when n2 is cut off, nothing takes it over: without fencing it may still run.
        sim.partition([[2], [1, 3]])
        sim.run(3000)
        XCTAssertFalse(sim.actions.contains { $0.1 != 2 && $0.2 == "app" && $0.3 })
        sim.heal()
        sim.run(1000)
        // The operator fixes it and runs cleanup: the stop is retried and the group recovers elsewhere.
        sim.failingStops[2] = []
        sim.cleanup(on: 1, "app")
        XCTAssertNotNil(sim.run(until: 4000) { self.started($0) })
        XCTAssertEqual(sim.violations, [])
    }

    func testStandbyMovesEverythingAwayAndUnstandbyDoesNotPullItBack() throws {
        var sim = try SimCluster(cluster: SimCluster.config(nodes: 3), resources: group)
        XCTAssertNotNil(sim.run(until: 3000) { self.started($0) })
        sim.standby(on: 3, node: "n2", true, requestId: 5)
        XCTAssertNotNil(sim.run(until: 3000) { s in self.started(s) && s.holders(of: "ip") != [2] })
        XCTAssertEqual(sim.replies[5]?.ok, true, sim.replies[5]?.message ?? "")
        sim.run(500)  // the move can be done before every node fetched the new version
        XCTAssertEqual(sim.engine(3)?.resources.standby, ["n2"])
        let elsewhere = sim.holders(of: "ip")
        sim.standby(on: 1, node: "n2", false, requestId: 6)
        sim.run(2000)
        XCTAssertEqual(sim.holders(of: "ip"), elsewhere, "stickiness keeps it where it is")
        XCTAssertEqual(sim.engine(2)?.resources.standby, [])
        XCTAssertEqual(sim.violations, [])
    }

    func testProbeFindsAResourceAlreadyRunningAndNothingStartsTwice() throws {
        var sim = try SimCluster(cluster: SimCluster.config(nodes: 3), resources: group)
        sim.runningProbes[3] = ["app"]
        sim.run(3000)
        // app was found on n3; it runs exactly once, and the group is reunited.
        XCTAssertEqual(sim.holders(of: "app").count, 1)
        XCTAssertEqual(sim.holders(of: "ip"), sim.holders(of: "app"))
        XCTAssertEqual(sim.violations, [])
    }
}

/// Policy that lives in the core (not in the daemon), exercised through the simulator.
final class CorePolicySimulationTests: XCTestCase {
    let app = """
        [[resource]]
        name = "app"
        agent = "ocf:heartbeat:Dummy"
        preferred = ["n2"]
        monitor_interval_ms = 2000
        migration_threshold = 3
        """

    func testMonitorsAreScheduledByTheCoreAndFindAKilledResource() throws {
        var sim = try SimCluster(cluster: SimCluster.config(nodes: 3), resources: app)
        XCTAssertNotNil(sim.run(until: 4000) { $0.holders(of: "app") == [2] })
        sim.run(4500)
        let before = sim.monitors.filter { $0.1 == 2 && $0.2 == "app" }.count
        XCTAssertGreaterThanOrEqual(before, 2, "a monitor every 2 s")
        XCTAssertEqual(sim.monitors.filter { $0.1 != 2 }.count, 0, "monitors only where it runs")
        sim.kill("app", on: 2)
        let t = sim.now
        XCTAssertNotNil(sim.run(until: 3000) { $0.holders(of: "app") == [2] && $0.actions.contains { $0.0 > t && $0.2 == "app" && $0.3 } },
                        "the next monitor finds it gone and it restarts in place")
        XCTAssertEqual(sim.engine(2)?.failCount("app", now: sim.clock(2)), 1)
        XCTAssertEqual(sim.violations, [])
    }

    func testAChangedDefinitionRestartsInPlace() throws {
        var sim = try SimCluster(cluster: SimCluster.config(nodes: 3), resources: app)
        XCTAssertNotNil(sim.run(until: 4000) { $0.holders(of: "app") == [2] })
        sim.run(500)
        let t = sim.now
        sim.propose(on: 1, requestId: 9, text: app.replacingOccurrences(of: "monitor_interval_ms = 2000", with: "monitor_interval_ms = 2000\nparams = { fake = \"2\" }"))
        sim.run(2000)
        XCTAssertEqual(sim.replies[9]?.ok, true, sim.replies[9]?.message ?? "")
        let after = sim.actions.filter { $0.0 >= t && $0.2 == "app" }.map { "\($0.3 ? "start" : "stop")@n\($0.1)" }
        XCTAssertEqual(after, ["stop@n2", "start@n2"])
        // An unchanged definition restarts nothing.
        let t2 = sim.now
        sim.propose(on: 3, requestId: 10, text: app.replacingOccurrences(of: "monitor_interval_ms = 2000", with: "monitor_interval_ms = 2000\nparams = { fake = \"2\" }") + "\n")
        sim.run(2000)
        XCTAssertEqual(sim.actions.filter { $0.0 >= t2 }.count, 0)
    }

    /// A vanished address moves at once and is forgotten after 30 s by the core (the shell only
    /// reports what it saw); a hard failure stays until cleanup.
    func testTransientAddressFailuresExpireInTheCore() throws {
        let ip = "[[ip]]\nname = \"vip\"\naddress = \"192.0.2.50/24\"\ninterface = \"eth0\"\npreferred = [\"n2\"]\n"
        var sim = try SimCluster(cluster: SimCluster.config(nodes: 3), resources: ip)
        XCTAssertNotNil(sim.run(until: 4000) { $0.holders(of: "vip") == [2] })
        let t0 = sim.now
        sim.fail(2, "vip", reason: "address vanished", kind: .transient)
        XCTAssertNotNil(sim.run(until: 2000) { $0.holders(of: "vip").count == 1 && $0.holders(of: "vip") != [2] })
        XCTAssertNotNil(sim.engine(2)?.failed["vip"])
        sim.run(t0 + Engine.transientFailureMs - 500 - sim.now)
        XCTAssertNotNil(sim.engine(2)?.failed["vip"], "still failed before 30 s")
        sim.run(1000)
        XCTAssertNil(sim.engine(2)?.failed["vip"], "forgotten after 30 s")
        XCTAssertEqual(sim.holders(of: "vip").count, 1, "and it does not move back (stickiness)")
        XCTAssertEqual(sim.violations, [])
    }
}
