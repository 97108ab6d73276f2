import XCTest
@testable import VigilCore
import VigilTestKit

/// Maintenance and unmanaged resources on virtual time: nothing frozen is started, stopped,
/// restarted or moved, whatever fails or dies; leaving maintenance re-probes and recovers.
final class MaintenanceSimulationTests: XCTestCase {
    static let text = """
        [[ip]]
        name = "vip"
        address = "192.0.2.60/24"
        interface = "eth0"
        preferred = ["n2"]

        [[resource]]
        name = "db"
        agent = "ocf:heartbeat:Dummy"
        preferred = ["n3"]

        [[resource]]
        name = "app"
        agent = "ocf:heartbeat:Dummy"
        preferred = ["n1"]
        """

    func settled() throws -> SimCluster {
        var sim = try SimCluster(cluster: SimCluster.config(nodes: 3, links: 1), resources: Self.text)
        let t = sim.run(until: 10_000) { $0.holders(of: "vip") == [2] && $0.holders(of: "db") == [3] && $0.holders(of: "app") == [1] }
        XCTAssertNotNil(t, "never placed")
        sim.run(1000)
        return sim
    }

    /// Applies a maintenance edit through the coordinator, as `hactl` does, and waits for it.
    func change(_ sim: inout SimCluster, _ req: MaintenanceEdit.Request, nodes: [Int] = [1, 2, 3]) throws {
        let e = try XCTUnwrap(sim.engine(1))
        let r = try MaintenanceEdit.apply(req, to: e.resources.text, set: e.resourceSet)
        sim.propose(on: 1, requestId: 9, text: r.text)
        let v = e.resources.version + 1
        XCTAssertNotNil(sim.run(until: 5000) { s in nodes.allSatisfy { s.engine(.n($0))?.resources.version == v } }, "the change did not reach every node")
    }

    func testInMaintenanceNothingIsActedOnAndLeavingItRecovers() throws {
        var sim = try settled()
        try change(&sim, .cluster(on: true))
        XCTAssertTrue(sim.engine(2)?.resourceSet.maintenance ?? false)
        let t0 = sim.now
        // db fails on n3, n2 (holding vip) dies: nothing is stopped, restarted or moved.
        sim.kill("db", on: 3)
        sim.fail(3, "db", reason: "monitor: not running", kind: .soft)
        sim.crash(2)
        sim.run(15_000)
        XCTAssertEqual(sim.actions.filter { $0.0 >= t0 }.map { "\($0.1) \($0.2) \($0.3)" }, [], "something was acted on in maintenance")
        XCTAssertEqual(sim.holders(of: "vip"), [])
        XCTAssertEqual(sim.holders(of: "app"), [1], "app kept running")
        let st = try XCTUnwrap(sim.status(1))
        XCTAssertEqual(st.maintenance, true)
        XCTAssertTrue(st.resources.first { $0.name == "db" }?.detail?.hasPrefix("maintenance") ?? false, "\(st.resources)")
        // Out of maintenance: db restarts, vip comes up on a survivor.
        try change(&sim, .cluster(on: false), nodes: [1, 3])
        let back = sim.run(until: 20_000) { s in s.holders(of: "db").count == 1 && s.holders(of: "vip").count == 1 }
        XCTAssertNotNil(back, "not recovered after maintenance: \(sim.status(1)?.resources.map { "\($0.name) \($0.state) \($0.detail ?? "")" } ?? [])")
        XCTAssertEqual(sim.holders(of: "app"), [1], "app was left alone")
        XCTAssertEqual(sim.violations, [])
    }

    func testAnUnmanagedResourceIsLeftAloneAndTheOthersAreNot() throws {
        var sim = try settled()
        try change(&sim, .resource("db", managed: false))
        let t0 = sim.now
        sim.kill("db", on: 3)
        sim.fail(3, "db", reason: "monitor: not running", kind: .soft)
        sim.kill("app", on: 1)
        sim.fail(1, "app", reason: "monitor: not running", kind: .soft)
        sim.run(10_000)
        let acted = Set(sim.actions.filter { $0.0 >= t0 }.map(\.2))
        XCTAssertFalse(acted.contains("db"), "the unmanaged db was acted on")
        XCTAssertTrue(acted.contains("app"), "app was not recovered")
        XCTAssertEqual(sim.status(1)?.unmanaged, ["db"])
        // A definition change restarts nothing unmanaged either.
        try change(&sim, .resource("db", managed: true))
        XCTAssertNil(sim.status(1)?.unmanaged)
        XCTAssertEqual(sim.violations, [])
    }

    func testTheEditsAndTheirRefusals() throws {
        let set = try ResourceSet.parse(Self.text, file: "r", cluster: SimCluster.config(nodes: 3, links: 1))
        let on = try MaintenanceEdit.apply(.cluster(on: true), to: Self.text, set: set)
        let setOn = try ResourceSet.parse(on.text, file: "r", cluster: SimCluster.config(nodes: 3, links: 1))
        XCTAssertTrue(setOn.maintenance)
        XCTAssertThrowsError(try MaintenanceEdit.apply(.cluster(on: true), to: on.text, set: setOn))
        let off = try MaintenanceEdit.apply(.cluster(on: false), to: on.text, set: setOn)
        XCTAssertEqual(off.text.trimmingCharacters(in: .whitespacesAndNewlines), Self.text.trimmingCharacters(in: .whitespacesAndNewlines))
        XCTAssertThrowsError(try MaintenanceEdit.apply(.resource("nope", managed: false), to: Self.text, set: set)) { e in
            XCTAssertTrue("\(e)".contains("'nope' is not a resource"), "\(e)")
        }
        XCTAssertThrowsError(try MaintenanceEdit.apply(.resource("db", managed: true), to: Self.text, set: set)) { e in
            XCTAssertTrue("\(e)".contains("db is not unmanaged"), "\(e)")
        }
        XCTAssertThrowsError(try ResourceSet.parse(Self.text + "\n[[maintenance]]\nscope = \"node\"\n", file: "r", cluster: SimCluster.config(nodes: 3, links: 1)))
    }
}
