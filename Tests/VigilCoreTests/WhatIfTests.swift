import XCTest
@testable import VigilCore
import VigilTestKit

/// The what-if core on its own: the scheduler's plan in the coordinator's words (migrations,
/// restarts, stops of removed resources) and its refusals.
final class WhatIfTests: XCTestCase {
    static let text = """
        [[resource]]
        name = "vm"
        agent = "ocf:heartbeat:Dummy"
        allow_migrate = true
        preferred = ["n1", "n2"]

        [[resource]]
        name = "db"
        agent = "ocf:heartbeat:Dummy"
        preferred = ["n2"]
        """

    func run(_ changes: [WhatIf.Change], newText: String? = nil) throws -> WhatIf.Report {
        let cluster = try SimCluster.config(nodes: 3, links: 1)
        let set = try ResourceSet.parse(Self.text, file: "r.toml", cluster: cluster)
        let nodes = [
            WhatIf.NodeInput(name: "n1", online: true, standby: false, held: ["vm"], failed: []),
            WhatIf.NodeInput(name: "n2", online: true, standby: false, held: ["db"], failed: []),
            WhatIf.NodeInput(name: "n3", online: true, standby: false, held: [], failed: []),
        ]
        return try WhatIf.run(cluster: cluster, current: set, nodes: nodes, changes: changes, newText: newText, file: "next.toml")
    }

    func testNothingImaginedChangesNothing() throws {
        let r = try run([])
        XCTAssertEqual(r.actions, [])
        XCTAssertEqual(r.placement.map { "\($0.resource)=\($0.node ?? "-")" }, ["vm=n1", "db=n2"])
    }

    func testAPlannedMoveOfAMigratableResourceIsAMigrationAndAFailureIsNot() throws {
        XCTAssertEqual(try run([.standby("n1")]).actions, ["migrate vm from n1 to n2"])
        XCTAssertEqual(try run([.fail(resource: "vm", node: "n1")]).actions, ["stop vm on n1", "start vm on n2"])
        XCTAssertEqual(try run([.nodeDown("n1")]).actions, ["start vm on n2"])
    }

    func testANewFileListsItsDifferenceAndItsActions() throws {
        let next = """
            [[resource]]
            name = "vm"
            agent = "ocf:heartbeat:Dummy"
            allow_migrate = true
            preferred = ["n1", "n2"]
            params = { fake = "other" }

            [[resource]]
            name = "web"
            agent = "ocf:heartbeat:Dummy"
            preferred = ["n3"]
            """
        let r = try run([], newText: next)
        XCTAssertEqual(r.added, ["web"])
        XCTAssertEqual(r.removed, ["db"])
        XCTAssertEqual(r.changed, ["vm"])
        XCTAssertEqual(r.actions, ["stop db on n2", "start web on n3", "restart vm on n1"])
        let bad = try run([], newText: "[[resource]]\nname = \"x\"\nagent = \"ocf:heartbeat:Dummy\"\npreferred = [\"n9\"]\n")
        XCTAssertTrue(bad.refused?.contains("next.toml") ?? false, "\(bad)")
        XCTAssertTrue(bad.refused?.contains("n9") ?? false)
        XCTAssertEqual(bad.actions, [])
    }

    func testUnknownNamesAreRefused() {
        XCTAssertThrowsError(try run([.nodeDown("n9")])) { XCTAssertTrue("\($0)".contains("--node-down: 'n9' is not a node")) }
        XCTAssertThrowsError(try run([.fail(resource: "nope", node: "n1")])) { XCTAssertTrue("\($0)".contains("--fail: 'nope' is not a resource")) }
    }
}
