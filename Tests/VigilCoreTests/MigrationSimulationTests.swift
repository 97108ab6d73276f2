import XCTest
@testable import VigilCore
import VigilTestKit

/// Live migration on virtual time (issue 11, item 2): a planned move of an `allow_migrate`
/// resource runs migrate_to on the source, migrate_from on the target, then the source's stop,
/// and never a start; failures fall back to stopping on both and starting; a failover is a
/// start; a group with a member that cannot migrate stops and starts. The simulated agent
/// behaves as Debian's Dummy: migrate_to stops the instance on the source, migrate_from starts
/// it on the target, so the simulator's "never held by two nodes" invariant holds throughout.
final class MigrationSimulationTests: XCTestCase {
    static let text = """
        [[resource]]
        name = "vm"
        agent = "ocf:heartbeat:Dummy"
        allow_migrate = true
        preferred = ["n1"]
        """

    func settled(_ text: String = MigrationSimulationTests.text, _ r: String = "vm") throws -> SimCluster {
        var sim = try SimCluster(cluster: SimCluster.config(nodes: 3, links: 1), resources: text)
        XCTAssertNotNil(sim.run(until: 10_000) { $0.holders(of: r) == [1] }, "never placed")
        sim.run(1000)
        return sim
    }

    /// `hactl move RESOURCE NODE`, through the coordinator as hactl does.
    func move(_ sim: inout SimCluster, _ r: String, to node: String) throws {
        let e = try XCTUnwrap(sim.engine(1))
        let cluster = try SimCluster.config(nodes: 3, links: 1)
        let edit = try ConstraintEdit.apply(.move(resource: r, node: node, lifetimeMs: nil), to: e.resources.text, set: e.resourceSet,
                                            cluster: cluster, runningOn: [], wallNowMs: 1_796_000_000_000)
        sim.propose(on: 1, requestId: 7, text: edit.text)
    }

    /// Every coordinator's migration records ended (none leaks a slot or an order).
    /// (After a second more: the last orders ride on the next heartbeats.)
    func assertNoMigrationLeft(_ sim: inout SimCluster, except crashed: Set<Int> = [], file: StaticString = #filePath, line: UInt = #line) {
        sim.run(1000)
        for i in 1...3 where !crashed.contains(i) {
            XCTAssertEqual(sim.engine(.n(i))?.office?.migrations.count ?? 0, 0, "n\(i) still has migration records", file: file, line: line)
            XCTAssertEqual(sim.engine(.n(i))?.migration.orders.count ?? 0, 0, "n\(i) still has migration orders \(sim.engine(.n(i))?.migration.orders ?? [:]) office \(sim.engine(.n(1))?.office?.migrations ?? [:])", file: file, line: line)
        }
    }

    func events(_ sim: SimCluster, since t0: UInt64, on id: NodeID) -> [String] {
        sim.events.filter { $0.0 >= t0 && $0.1 == id }.map { "\($0.2)" }.filter {
            $0.hasPrefix("resource-") || $0.hasPrefix("migration-")
        }
    }

    func testAPlannedMoveMigratesAndNeverStarts() throws {
        var sim = try settled()
        let t0 = sim.now
        try move(&sim, "vm", to: "n2")
        XCTAssertNotNil(sim.run(until: 10_000) { $0.holders(of: "vm") == [2] && $0.engine(1)?.local["vm"] == nil }, "not migrated")
        XCTAssertEqual(sim.migrationActions.map { "\($0.1) \($0.2) \($0.3.rawValue)" }, ["1 vm migrate_to", "2 vm migrate_from"])
        // n1 is the source and the coordinator: its own steps and the coordinator's, in order.
        XCTAssertEqual(events(sim, since: t0, on: 1), [
            "migration-begun resource=vm from=n1 to=n2", "resource-migrating resource=vm to=n2", "resource-migrated resource=vm to=n2",
            "migration-completed resource=vm from=n1 to=n2", "resource-stopping resource=vm", "resource-stopped resource=vm",
        ])
        let n1 = events(sim, since: t0, on: 1)
        // The source's stop comes last, after the coordinator saw the target started.
        XCTAssertEqual(n1.last, "resource-stopped resource=vm", "\(n1)")
        XCTAssertTrue(n1.firstIndex(of: "migration-completed resource=vm from=n1 to=n2").map { $0 < (n1.firstIndex(of: "resource-stopping resource=vm") ?? -1) } ?? false, "\(n1)")
        XCTAssertEqual(events(sim, since: t0, on: 2), ["resource-migrating-in resource=vm from=n1", "resource-starting resource=vm", "resource-started resource=vm"])
        // No start anywhere: only the migrate_from brought it up on n2.
        XCTAssertEqual(sim.actions.filter { $0.0 >= t0 && $0.3 }.map { "\($0.1) \($0.2)" }, ["2 vm"])
        XCTAssertEqual(sim.violations, [])
        assertNoMigrationLeft(&sim)
        // And it stays: nothing moves afterwards.
        let t1 = sim.now
        sim.run(5000)
        XCTAssertEqual(sim.actions.filter { $0.0 >= t1 }.count, 0)
    }

    /// Standby drains a node by migration too (a planned move).
    func testStandbyMigrates() throws {
        var sim = try settled()
        sim.standby(on: 2, node: "n1", true, requestId: 11)
        XCTAssertNotNil(sim.run(until: 10_000) { s in s.holders(of: "vm").count == 1 && s.holders(of: "vm") != [1] && s.engine(1)?.local["vm"] == nil },
                        "\(sim.status(1)?.resources.map { "\($0.name) \($0.state) \($0.runningOn) \($0.detail ?? "")" } ?? []) standby=\(sim.engine(1)?.resources.standby ?? []) replies=\(sim.replies)")
        XCTAssertEqual(sim.migrationActions.map { "\($0.1) \($0.3.rawValue)" }.first, "1 migrate_to")
        XCTAssertEqual(sim.migrationActions.count, 2)
        XCTAssertEqual(sim.violations, [])
        assertNoMigrationLeft(&sim)
    }

    /// The coordinator dies between migrate_to and migrate_from: the migrated instance is
    /// stopped on the source (it never restarts by itself) and a new coordinator starts the
    /// resource once, somewhere; never two holders.
    func testACoordinatorLostMidMigrationEndsInOneInstance() throws {
        var sim = try settled()
        // n1 is the source and the coordinator; it completes migrate_to and is then lost.
        try move(&sim, "vm", to: "n2")
        XCTAssertNotNil(sim.run(until: 5000) { $0.migrationActions.count >= 1 })
        sim.crash(1)
        XCTAssertNotNil(sim.run(until: 20_000) { s in s.holders(of: "vm").count == 1 && s.holders(of: "vm") != [1] })
        sim.run(3000)
        XCTAssertEqual(sim.holders(of: "vm").count, 1)
        XCTAssertEqual(sim.violations, [])
        assertNoMigrationLeft(&sim, except: [1])
    }

    /// The operator changes their mind after migrate_to: the migration is abandoned, both nodes
    /// let go (the target stops what may have arrived), and only then does it start, once.
    func testAMoveBackAfterMigrateToEndsInOneStart() throws {
        var sim = try settled()
        sim.failingMigrations[.n(2)] = []
        try move(&sim, "vm", to: "n2")
        XCTAssertNotNil(sim.run(until: 5000) { $0.engine(1)?.local["vm"] == .migrated })
        // Before n2 runs migrate_from: clear the move (the preference for n1 takes it back).
        let e = try XCTUnwrap(sim.engine(1))
        let cleared = try ConstraintEdit.apply(.clear(resource: "vm"), to: e.resources.text, set: e.resourceSet,
                                               cluster: try SimCluster.config(nodes: 3, links: 1), runningOn: [], wallNowMs: 1_796_000_000_000)
        sim.propose(on: 1, requestId: 8, text: cleared.text)
        XCTAssertNotNil(sim.run(until: 15_000) { s in s.holders(of: "vm").count == 1 && s.engine(s.holders(of: "vm")[0])?.local["vm"] == .started })
        sim.run(3000)
        XCTAssertEqual(sim.holders(of: "vm").count, 1)
        XCTAssertEqual(sim.violations, [])
        assertNoMigrationLeft(&sim)
    }

    /// The resource removed from the configuration in the middle: the migration ends, its
    /// instance is stopped on the source, nothing leaks.
    func testRemovalMidMigrationLeavesNothingBehind() throws {
        var sim = try settled()
        try move(&sim, "vm", to: "n2")
        XCTAssertNotNil(sim.run(until: 5000) { $0.engine(1)?.office?.migrations.isEmpty == false })
        let e = try XCTUnwrap(sim.engine(1))
        sim.propose(on: 1, requestId: 9, text: e.resources.text + "\n[[resource]]\nname = \"other\"\nagent = \"ocf:heartbeat:Dummy\"\n")
        let removed = "[[resource]]\nname = \"other\"\nagent = \"ocf:heartbeat:Dummy\"\n"
        XCTAssertNotNil(sim.run(until: 5000) { $0.engine(1)?.resourceSet.names.contains("other") ?? false })
        sim.propose(on: 1, requestId: 10, text: removed)
        XCTAssertNotNil(sim.run(until: 15_000) { s in s.holders(of: "vm").isEmpty && (1...3).allSatisfy { s.engine(.n($0))?.local["vm"] == nil } },
                        "vm left behind: \((1...3).map { sim.engine(.n($0))?.local["vm"].map(\.rawValue) ?? "-" })")
        sim.run(2000)
        XCTAssertEqual(sim.violations, [])
        assertNoMigrationLeft(&sim)
    }

    func testAFailedMigrateToStopsOnBothThenStarts() throws {
        var sim = try settled()
        sim.failingMigrations[.n(1)] = ["vm"]
        let t0 = sim.now
        try move(&sim, "vm", to: "n2")
        XCTAssertNotNil(sim.run(until: 15_000) { $0.holders(of: "vm") == [2] && $0.engine(2)?.local["vm"] == .started }, "not recovered")
        XCTAssertEqual(sim.migrationActions.map { "\($0.1) \($0.3.rawValue)" }, ["1 migrate_to"], "no migrate_from after a failed migrate_to")
        let n2 = events(sim, since: t0, on: 2)
        // The target stops what a failed migrate_to may have left there, then starts it.
        XCTAssertEqual(n2, ["resource-stopping resource=vm", "resource-stopped resource=vm", "resource-starting resource=vm", "resource-started resource=vm"])
        let n1 = events(sim, since: t0, on: 1)
        XCTAssertTrue(n1.contains { $0.hasPrefix("resource-failed resource=vm") && $0.contains("migrate_to") }, "\(n1)")
        XCTAssertTrue(n1.contains("resource-stopped resource=vm"), "\(n1)")
        XCTAssertTrue(n1.contains { $0.hasPrefix("migration-aborted resource=vm") }, "\(n1)")
        XCTAssertEqual(sim.violations, [])
        assertNoMigrationLeft(&sim)
    }

    func testAFailedMigrateFromStopsOnBothThenStartsElsewhere() throws {
        var sim = try settled()
        sim.failingMigrations[.n(2)] = ["vm"]
        let t0 = sim.now
        try move(&sim, "vm", to: "n2")
        // Failed on n2, so it starts where it may (back on n1 by preference, or on n3).
        XCTAssertNotNil(sim.run(until: 15_000) { s in
            let h = s.holders(of: "vm")
            return h.count == 1 && h != [2] && s.engine(h[0])?.local["vm"] == .started && s.engine(2)?.local["vm"] == nil
        }, "not recovered: \(sim.holders(of: "vm"))")
        XCTAssertEqual(sim.migrationActions.map { "\($0.1) \($0.3.rawValue)" }, ["1 migrate_to", "2 migrate_from"])
        let n2 = events(sim, since: t0, on: 2)
        XCTAssertTrue(n2.contains { $0.hasPrefix("resource-failed resource=vm") && $0.contains("migrate_from") }, "\(n2)")
        XCTAssertTrue(n2.contains("resource-stopped resource=vm"), "\(n2)")
        // The source stopped its migrated instance, and the resource was then started by a start.
        XCTAssertTrue(events(sim, since: t0, on: 1).contains("resource-stopped resource=vm"))
        let starter = sim.holders(of: "vm")[0]
        XCTAssertTrue(events(sim, since: t0, on: starter).contains("resource-starting resource=vm"))
        XCTAssertEqual(sim.violations, [])
        assertNoMigrationLeft(&sim)
    }

    func testAFailoverIsAStartNotAMigration() throws {
        var sim = try settled()
        sim.crash(1)
        XCTAssertNotNil(sim.run(until: 15_000) { $0.holders(of: "vm").count == 1 && $0.holders(of: "vm") != [1] })
        XCTAssertEqual(sim.migrationActions.count, 0)
    }

    func testAGroupWithAMemberThatCannotMigrateStopsAndStarts() throws {
        let text = Self.text + """

            [[ip]]
            name = "vip"
            address = "192.0.2.70/24"
            interface = "eth0"

            [[group]]
            name = "svc"
            members = ["vm", "vip"]
            """
        var sim = try settled(text)
        XCTAssertNotNil(sim.run(until: 5000) { $0.holders(of: "vip") == [1] })
        try move(&sim, "vm", to: "n2")
        XCTAssertNotNil(sim.run(until: 15_000) { $0.holders(of: "vm") == [2] && $0.holders(of: "vip") == [2] && $0.engine(2)?.local["vip"] == .started })
        XCTAssertEqual(sim.migrationActions.count, 0, "a group migrates only when all its members can")
        XCTAssertEqual(sim.violations, [])
        assertNoMigrationLeft(&sim)
    }

    func testMigrationLinesRoundTripAndUnknownKindsAreRefused() throws {
        var h = Heartbeat(sentAt: PeerTime(ms: 5))
        h.migration = [MigrationEntry(resource: "vm", kind: .migrateTo, node: .n(2)), MigrationEntry(resource: "db", kind: .migrated, node: .n(3))]
        let bytes = Message.heartbeat(h).encodePayload()
        guard case .heartbeat(let back) = try Message.decode(kind: 1, payload: bytes) else { return XCTFail("not a heartbeat") }
        XCTAssertEqual(Set(back.migration), Set(h.migration))
        // Without migrations the heartbeat is what it was: nothing added on the wire.
        var plain = h
        plain.migration = []
        XCTAssertEqual(Message.heartbeat(plain).encodePayload().count + 2 + 2 * (1 + 2 + 1 + 4) , bytes.count)
        var bad = bytes
        // The first line's kind byte sits after the count (2) and "db" (1 + 2).
        let kindAt = Message.heartbeat(plain).encodePayload().count + 2 + 1 + 2
        bad[kindAt] = 9
        XCTAssertThrowsError(try Message.decode(kind: 1, payload: bad)) { e in
            XCTAssertTrue("\(e)".contains("unknown migration entry kind 9"), "\(e)")
        }
    }

    func testAllowMigrateIsForOCFAgentsOnly() throws {
        let cluster = try SimCluster.config(nodes: 3, links: 1)
        let text = "[[resource]]\nname = \"s\"\nagent = \"lsb:foo\"\nallow_migrate = true\n"
        XCTAssertThrowsError(try ResourceSet.parse(text, file: "r.toml", cluster: cluster)) { e in
            XCTAssertTrue("\(e)".contains("allow_migrate") && "\(e)".contains("only OCF agents migrate"), "\(e)")
        }
        let ok = try ResourceSet.parse(Self.text, file: "r.toml", cluster: cluster)
        XCTAssertTrue(ok.options("vm").allowMigrate)
        XCTAssertEqual(ok.options("vm").migrateTimeoutMs, 120_000)
    }
}
