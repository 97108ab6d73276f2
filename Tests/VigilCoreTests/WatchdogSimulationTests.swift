import XCTest
@testable import VigilCore
import VigilTestKit

/// Watchdog self-fencing on virtual time: every node's guardian (not paused with its daemon)
/// pets while the engine allows; a watchdog not petted for its timeout resets the node.
final class WatchdogSimulationTests: XCTestCase {
    static let resources = """
        [[resource]]
        name = "db"
        agent = "ocf:heartbeat:Dummy"
        preferred = ["n3"]

        [[ip]]
        name = "vip"
        address = "192.0.2.61/24"
        interface = "eth0"
        preferred = ["n2"]
        """

    func settled(timeoutS: Int = 5, seed: UInt64 = 1) throws -> SimCluster {
        var c = try SimCluster.config(nodes: 3, links: 1)
        c.watchdog = Watchdog(device: "/dev/watchdog", timeoutS: timeoutS)
        var sim = try SimCluster(cluster: c, resources: Self.resources, seed: seed)
        XCTAssertNotNil(sim.run(until: 10_000) { $0.holders(of: "db") == [3] && $0.holders(of: "vip") == [2] })
        sim.run(1000)
        return sim
    }

    func testWithAWatchdogFencingIsTheDefault() throws {
        var c = try SimCluster.config(nodes: 3, links: 1)
        c.watchdog = Watchdog(device: "/dev/watchdog", timeoutS: 5)
        XCTAssertTrue(try ResourceSet.parse(Self.resources, file: "r.toml", cluster: c).options("db").requiresFencing)
        let parsed = try ClusterConfig.parse("""
            [cluster]
            name = "c"
            key_file = "/k"
            [watchdog]
            device = "/run/wd-{node}"
            timeout_s = 7
            [[link]]
            port = 5405
            [[node]]
            name = "a"
            id = 1
            addresses = ["10.0.0.1"]
            """, file: "c.toml")
        XCTAssertEqual(parsed.watchdog?.device(for: "a"), "/run/wd-a")
        XCTAssertEqual(parsed.watchdog?.timeoutS, 7)
        XCTAssertThrowsError(try ClusterConfig.parse("[cluster]\nname = \"c\"\nkey_file = \"/k\"\n[watchdog]\ntimeout_s = 0\n[[link]]\nport = 1\n[[node]]\nname = \"a\"\nid = 1\naddresses = [\"10.0.0.1\"]\n", file: "c.toml")) {
            XCTAssertTrue("\($0)".contains("timeout_s"), "\($0)")
        }
    }

    /// A hung node running db: its guardian stops petting when its lease ends, the watchdog resets
    /// it, and the coordinator starts db elsewhere only after withdrawal + timeout·(1+ρ) + margin.
    func testAHungNodeIsResetByItsWatchdogBeforeItsApplicationStartsElsewhere() throws {
        var sim = try settled()
        let t0 = sim.now
        sim.pause(3)
        XCTAssertNotNil(sim.run(until: 30_000) { !$0.holders(of: "db").isEmpty && !$0.holders(of: "db").contains(3) },
                        "db never recovered: \(sim.engine(1)?.waitingReason ?? [:])")
        let reset = try XCTUnwrap(sim.watchdogResets.first { $0.node == 3 }, "n3 was not reset")
        let start = try XCTUnwrap(sim.actions.first { $0.0 > t0 && $0.2 == "db" && $0.3 })
        XCTAssertGreaterThan(start.0, reset.at, "db started at \(start.0) before n3's watchdog reset it at \(reset.at)")
        XCTAssertEqual(sim.watchdogResets.count, 1, "\(sim.watchdogResets)")
        XCTAssertTrue(sim.fences.isEmpty, "no device exists: nothing to run")
        XCTAssertEqual(sim.violations, [])
    }

    /// Nothing wrong, or only loss: no node is ever reset.
    func testLossNeverTriggersAWatchdog() throws {
        var sim = try settled()
        for (k, _) in sim.paths { sim.paths[k]?.loss = 0.2 }
        sim.run(60_000)
        XCTAssertTrue(sim.watchdogResets.isEmpty, "\(sim.watchdogResets)")
        XCTAssertEqual(sim.holders(of: "db"), [3])
        XCTAssertEqual(sim.violations, [])
    }

    /// A node running nothing that needs fencing pets freely, even hung: only its addresses
    /// follow the lease (the guardian removes them).
    func testANodeWithoutFencingResourcesIsNotReset() throws {
        var sim = try settled()
        sim.pause(2)
        XCTAssertNotNil(sim.run(until: 15_000) { $0.holders(of: "vip").contains { $0 != 2 } })
        sim.run(10_000)
        XCTAssertTrue(sim.watchdogResets.isEmpty, "\(sim.watchdogResets)")
        XCTAssertEqual(sim.violations, [])
    }

    /// A stop that fails with only a watchdog: the node stops petting at once and is reset; the
    /// resource is recovered elsewhere after the reset.
    func testAFailedStopResetsTheNodeThroughItsWatchdog() throws {
        var sim = try settled()
        sim.failingStops[3] = ["db"]
        let t0 = sim.now
        sim.fail(3, "db", reason: "monitor failed", kind: .hard)
        XCTAssertNotNil(sim.run(until: 30_000) { s in s.holders(of: "db").contains { $0 != 3 } }, "\(sim.engine(1)?.waitingReason ?? [:])")
        let reset = try XCTUnwrap(sim.watchdogResets.first { $0.node == 3 })
        XCTAssertLessThan(reset.at - t0, 6000, "the node kept petting after its stop failed")
        let start = try XCTUnwrap(sim.actions.first { $0.0 > t0 && $0.2 == "db" && $0.3 })
        XCTAssertGreaterThan(start.0, reset.at)
        XCTAssertEqual(sim.violations, [])
    }

    func testPetUntilFollowsWhatRunsHere() throws {
        let sim = try settled()
        let e3 = try XCTUnwrap(sim.engine(3)), e2 = try XCTUnwrap(sim.engine(2))
        XCTAssertEqual(e3.watchdogPetUntil(now: sim.clock(3)), e3.leaseUntil, "db runs on n3: pet only within the lease")
        XCTAssertEqual(e2.watchdogPetUntil(now: sim.clock(2)), Watchdog.petFreely, "only an address on n2")
        XCTAssertTrue(Watchdog.shouldPet(now: 5, petUntil: 6) && !Watchdog.shouldPet(now: 6, petUntil: 6))
        XCTAssertEqual(Watchdog(device: "/d", timeoutS: 10).fenceDelayMs, 10_000 + 10 + Watchdog.marginMs)
    }
}

extension WatchdogSimulationTests {
    /// fence_reaction = "panic": a node that learns it was fenced while it still runs stops
    /// petting and its watchdog resets it; "panic" without a watchdog is refused.
    func testPanicReactionResetsTheNodeThroughItsWatchdog() throws {
        var c = try SimCluster.config(nodes: 3, links: 1)
        c.watchdog = Watchdog(device: "/dev/watchdog", timeoutS: 2)
        c.fenceReaction = .panic
        let res = Self.resources + "\n[[fence]]\nname = \"dummy\"\nagent = \"fence_dummy\"\nhosts = [\"n1\", \"n2\", \"n3\"]\n"
        var sim = try SimCluster(cluster: c, resources: res, seed: 1)
        XCTAssertNotNil(sim.run(until: 10_000) { $0.holders(of: "db") == [3] })
        sim.fenceMisses = [3]
        sim.requestFence(on: 2, node: "n3", confirm: false, requestId: 1)
        XCTAssertNotNil(sim.run(until: 10_000) { $0.watchdogResets.contains { $0.node == 3 } }, "n3 did not reset itself")
        XCTAssertEqual(sim.violations, [])
        XCTAssertThrowsError(try ClusterConfig.parse("[cluster]\nname = \"c\"\nkey_file = \"/k\"\nfence_reaction = \"panic\"\n[[link]]\nport = 1\n[[node]]\nname = \"a\"\nid = 1\naddresses = [\"10.0.0.1\"]\n", file: "c.toml")) {
            XCTAssertTrue("\($0)".contains("add a [watchdog] table"), "\($0)")
        }
    }
}
