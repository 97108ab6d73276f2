import XCTest
@testable import VigilCore
import VigilTestKit

/// `hactl move`, `ban` and `clear` as edits of the resources text: what they add, what they
/// remove, what they refuse, and what the parsed configuration then says.
final class ConstraintEditTests: XCTestCase {
    static let text = """
        [[ip]]
        name = "vip"
        address = "192.0.2.10/24"
        interface = "eth0"

        [[resource]]
        name = "web"
        agent = "ocf:heartbeat:Dummy"

        [[resource]]
        name = "db"
        agent = "ocf:heartbeat:Dummy"

        [[group]]
        name = "svc"
        members = ["vip", "web"]

        [[location]]
        resource = "db"
        node = "n3"
        score = 20
        """

    var cluster: ClusterConfig { get throws { try SimCluster.config(nodes: 3, links: 1) } }
    let now: UInt64 = 1_796_000_000_000  // 2026-11-30T...

    func set(_ t: String) throws -> ResourceSet { try ResourceSet.parse(t, file: "r.toml", cluster: try cluster) }

    func edit(_ r: ConstraintEdit.Request, _ t: String = ConstraintEditTests.text, running: [String] = []) throws -> ConstraintEdit.Result {
        try ConstraintEdit.apply(r, to: t, set: try set(t), cluster: try cluster, runningOn: running, wallNowMs: now)
    }

    func testMoveToANodeAddsAPreferenceThatParsesAndSteers() throws {
        let r = try edit(.move(resource: "db", node: "n2", lifetimeMs: nil))
        XCTAssertTrue(r.message.contains("db moves to n2; it stays until hactl clear db"), r.message)
        let s = try set(r.text)
        XCTAssertEqual(s.operatorConstraints, [OperatorConstraint(kind: .move, resource: "db", node: "n2", expiresMs: nil)])
        XCTAssertEqual(s.options("db").locations["n2"], Score.infinity)
        XCTAssertEqual(s.options("db").locations["n3"], 20, "the operator's own location stays")
        // A second move replaces the first.
        let again = try edit(.move(resource: "db", node: "n1", lifetimeMs: nil), r.text)
        XCTAssertEqual(try set(again.text).operatorConstraints.map(\.node), ["n1"])
        XCTAssertNil(try set(again.text).options("db").locations["n2"])
    }

    func testAGroupMemberMovesWithItsGroup() throws {
        let r = try edit(.move(resource: "web", node: "n2", lifetimeMs: 3_600_000))
        XCTAssertTrue(r.message.contains("svc moves to n2 (a member of group svc: the group moves as one)"), r.message)
        let s = try set(r.text)
        XCTAssertEqual(s.operatorConstraints, [OperatorConstraint(kind: .move, resource: "svc", node: "n2", expiresMs: now + 3_600_000)])
        XCTAssertEqual(s.options("vip").locations["n2"], Score.infinity)
        XCTAssertEqual(s.options("web").locations["n2"], Score.infinity)
        XCTAssertTrue(r.text.contains("expires = \"\(WallTime.format(now + 3_600_000))\""), r.text)
    }

    func testMoveWithoutANodeBansWhereItRuns() throws {
        let r = try edit(.move(resource: "db", node: nil, lifetimeMs: nil), running: ["n3"])
        XCTAssertEqual(try set(r.text).operatorConstraints, [OperatorConstraint(kind: .ban, resource: "db", node: "n3", expiresMs: nil)])
        XCTAssertEqual(try set(r.text).options("db").locations["n3"], -Score.infinity)
        XCTAssertThrowsError(try edit(.move(resource: "db", node: nil, lifetimeMs: nil))) { e in
            XCTAssertTrue("\(e)".contains("db runs nowhere now: name the node"), "\(e)")
        }
    }

    func testBanAndClear() throws {
        let a = try edit(.ban(resource: "db", node: "n1", lifetimeMs: nil))
        let b = try edit(.ban(resource: "db", node: "n2", lifetimeMs: nil), a.text)
        XCTAssertEqual(try set(b.text).operatorConstraints.map(\.node), ["n1", "n2"])
        let c = try edit(.clear(resource: "db"), b.text)
        XCTAssertTrue(c.message.contains("cleared 2 constraints of db"), c.message)
        XCTAssertEqual(try set(c.text).operatorConstraints, [])
        XCTAssertEqual(try set(c.text).options("db").locations, ["n3": 20], "only the operator's own location is left")
        XCTAssertFalse(c.text.contains("# hactl"), c.text)
        XCTAssertEqual(c.text.trimmingCharacters(in: .whitespacesAndNewlines), Self.text.trimmingCharacters(in: .whitespacesAndNewlines))
        XCTAssertThrowsError(try edit(.clear(resource: "db"), c.text)) { e in
            XCTAssertTrue("\(e)".contains("db has no constraint from hactl move or ban"), "\(e)")
        }
    }

    func testRefusals() throws {
        for (req, why) in [
            (ConstraintEdit.Request.move(resource: "nope", node: "n1", lifetimeMs: nil), "'nope' is not a resource or group"),
            (.ban(resource: "db", node: "n9", lifetimeMs: nil), "'n9' is not a node of cluster"),
        ] {
            XCTAssertThrowsError(try edit(req)) { e in XCTAssertTrue("\(e)".contains(why), "\(e)") }
        }
        // Hand-written tables that claim hactl's origin must say what hactl writes.
        let bad = Self.text + "\n[[location]]\nresource = \"db\"\nnode = \"n1\"\nscore = 5\norigin = \"hactl move\"\n"
        XCTAssertThrowsError(try set(bad)) { e in XCTAssertTrue("\(e)".contains("is not an origin hactl writes"), "\(e)") }
        let badTime = Self.text + "\n[[location]]\nresource = \"db\"\nnode = \"n1\"\nscore = \"-inf\"\norigin = \"hactl ban\"\nexpires = \"tomorrow\"\n"
        XCTAssertThrowsError(try set(badTime)) { e in XCTAssertTrue("\(e)".contains("YYYY-MM-DDTHH:MM:SSZ"), "\(e)") }
    }

    func testExpiryRemovesOnlyWhatEnded() throws {
        let a = try edit(.ban(resource: "db", node: "n1", lifetimeMs: 60_000))
        let b = try edit(.ban(resource: "db", node: "n2", lifetimeMs: nil), a.text)
        let s = try set(b.text)
        XCTAssertNil(ConstraintEdit.expiring(b.text, set: s, wallNowMs: now + 59_000))
        let e = try XCTUnwrap(ConstraintEdit.expiring(b.text, set: s, wallNowMs: now + 60_000))
        XCTAssertEqual(e.ended.map(\.node), ["n1"])
        XCTAssertEqual(try set(e.text).operatorConstraints.map(\.node), ["n2"])
    }

    func testWallTimeRoundTrips() {
        XCTAssertEqual(WallTime.format(0), "1970-01-01T00:00:00Z")
        XCTAssertEqual(WallTime.format(951_782_400_000), "2000-02-29T00:00:00Z")
        XCTAssertEqual(WallTime.parse("2000-02-29T00:00:00Z"), 951_782_400_000)
        for ms: UInt64 in [0, 86_399_000, 1_796_567_890_000, 4_102_444_800_000] {
            XCTAssertEqual(WallTime.parse(WallTime.format(ms)), ms)
        }
        for bad in ["2001-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-12-06 20:00:00Z", "2026-12-06T20:00:00", ""] {
            XCTAssertNil(WallTime.parse(bad), bad)
        }
    }
}

