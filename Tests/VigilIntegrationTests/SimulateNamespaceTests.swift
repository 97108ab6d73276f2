import Foundation
import Glibc
import XCTest
import VigilCore
import VigilLab

/// Issue 12, what-if: `hactl simulate` predicts exactly what the cluster then does (standby, a
/// node lost, a failure), and `hactl apply --dry-run` changes nothing and lists what `apply`
/// then does, or why it would be refused.
final class SimulateNamespaceTests: NamespaceTestCase {
    static let resources = """
        [[ip]]
        name = "web-ip"
        address = "\(Scenarios.vip)/24"
        interface = "eth0"
        preferred = ["node1", "node2"]

        [[resource]]
        name = "db"
        agent = "ocf:heartbeat:Dummy"
        preferred = ["node2", "node3"]
        migration_threshold = 1
        monitor_interval_ms = 1000

        [[resource]]
        name = "app"
        agent = "ocf:heartbeat:Dummy"
        preferred = ["node3", "node1"]
        """

    func start(_ lab: Lab) throws {
        try startQuorate(lab)
        _ = try lab.apply(1, resources: Self.resources)
        try lab.waitFor("everything placed", timeout: 30) { self.placement(lab) == ["web-ip": "node1", "db": "node2", "app": "node3"] }
    }

    /// Where each resource runs, started, as node1 reports (nil: nowhere).
    func placement(_ lab: Lab, from node: Int = 1) -> [String: String?] {
        guard let s = try? status(lab, node) else { return [:] }
        var out: [String: String?] = [:]
        for r in s.resources { out[r.name] = r.state == "started" && r.runningOn.count == 1 ? r.runningOn[0] : nil }
        return out
    }

    func simulate(_ lab: Lab, _ args: [String], on node: Int = 1) throws -> WhatIf.Report {
        let r = lab.hactl(node, ["simulate", "-o", "json"] + args)
        guard r.code == 0 else { throw LabError("hactl simulate \(args) failed: \(r.err)\(r.out)") }
        return try JSONDecoder().decode(WhatIf.Report.self, from: Data(r.out.utf8))
    }

    func predicted(_ r: WhatIf.Report) -> [String: String?] {
        Dictionary(uniqueKeysWithValues: r.placement.map { ($0.resource, $0.node) })
    }

    /// The actions the nodes logged since `t0`, as the simulator words them (a restart is a
    /// stop and a start on one node).
    func observed(_ lab: Lab, since t0: Int, nodes: [Int] = [1, 2, 3]) -> Set<String> {
        var out: Set<String> = []
        for i in nodes {
            for e in lab.events(i) where e.mono >= t0 {
                let w = e.text.split(separator: " ")
                guard w.count >= 2, w[1].hasPrefix("resource=") else { continue }
                let r = w[1].dropFirst("resource=".count)
                if w[0] == "resource-stopping" { out.insert("stop \(r) on node\(i)") }
                if w[0] == "resource-starting" { out.insert("start \(r) on node\(i)") }
            }
        }
        return out
    }

    func expanded(_ actions: [String]) -> Set<String> {
        Set(actions.flatMap { a -> [String] in
            guard a.hasPrefix("restart ") else { return [a] }
            let rest = a.dropFirst("restart ".count)
            return ["stop \(rest)", "start \(rest)"]
        })
    }

    func testStandbyIsPredicted() throws {
        let lab = try makeLab(heartbeatLinks: 1)
        try start(lab)
        let r = try simulate(lab, ["--standby", "node3"])
        XCTAssertEqual(r.imagined, ["node node3 in standby"])
        XCTAssertEqual(predicted(r)["app"], "node1")
        XCTAssertEqual(r.actions, ["stop app on node3", "start app on node1"])
        XCTAssertEqual(placement(lab)["app"], "node3", "simulate changed something")
        let t0 = Int(Lab.monoNowMs())
        XCTAssertEqual(lab.hactl(1, ["standby", "node3", "--wait", "20"]).code, 0)
        try lab.waitFor("the predicted placement", timeout: 20) { self.placement(lab) == self.predicted(r) }
        Thread.sleep(forTimeInterval: 1)
        XCTAssertEqual(observed(lab, since: t0), expanded(r.actions))
    }

    func testANodeLostIsPredicted() throws {
        let lab = try makeLab(heartbeatLinks: 1)
        try start(lab)
        let r = try simulate(lab, ["--node-down", "node2"])
        XCTAssertEqual(predicted(r)["db"], "node3")
        XCTAssertEqual(r.actions, ["start db on node3"], "a lost node's resources start elsewhere; nothing else moves")
        // The same from a snapshot file, offline.
        let snap = lab.workDir + "/snap.json"
        XCTAssertEqual(lab.hactl(3, ["snapshot", "-o", snap]).code, 0)
        let offline = lab.hactl(3, ["simulate", "--snapshot", snap, "--node-down", "node2", "-o", "json"])
        XCTAssertEqual(offline.code, 0, offline.err)
        let fromFile = try JSONDecoder().decode(WhatIf.Report.self, from: Data(offline.out.utf8))
        XCTAssertEqual(fromFile.actions, r.actions)
        XCTAssertEqual(fromFile.placement, r.placement)
        let t0 = Int(Lab.monoNowMs())
        lab.kill(2)
        try lab.setLinks(2, up: false)
        try lab.waitFor("the predicted placement", timeout: 20) { self.placement(lab) == self.predicted(r) }
        Thread.sleep(forTimeInterval: 1)
        XCTAssertEqual(observed(lab, since: t0, nodes: [1, 3]), expanded(r.actions))
    }

    func testAFailureIsPredicted() throws {
        let lab = try makeLab(heartbeatLinks: 1)
        try start(lab)
        let r = try simulate(lab, ["--fail", "db@node2"])
        XCTAssertEqual(r.actions, ["stop db on node2", "start db on node3"])
        // Then it really fails there: Dummy's state file vanishes from node2's private /run.
        let pid = try XCTUnwrap(lab.pid(2))
        let t0 = Int(Lab.monoNowMs())
        let rm = Lab.run("/usr/bin/nsenter", ["-t", "\(pid)", "-m", "rm", "-f", "/run/resource-agents/Dummy-db.state"])
        XCTAssertEqual(rm.code, 0, rm.err)
        try lab.waitFor("the predicted placement", timeout: 20) { self.placement(lab) == self.predicted(r) }
        Thread.sleep(forTimeInterval: 1)
        XCTAssertEqual(observed(lab, since: t0), expanded(r.actions))
        // A bad --fail is a usage error; an unknown node is refused by name.
        XCTAssertEqual(lab.hactl(1, ["simulate", "--fail", "db"]).code, 64)
        let unknown = lab.hactl(1, ["simulate", "--node-down", "node9"])
        XCTAssertEqual(unknown.code, 1)
        XCTAssertTrue(unknown.err.contains("--node-down: 'node9' is not a node"), unknown.err)
    }

    func testApplyDryRunChangesNothingAndListsWhatApplyDoes() throws {
        let lab = try makeLab(heartbeatLinks: 1)
        try start(lab)
        let path = lab.workDir + "/next.toml"
        try """
            [[resource]]
            name = "db"
            agent = "ocf:heartbeat:Dummy"
            preferred = ["node2", "node3"]
            migration_threshold = 1
            monitor_interval_ms = 1000

            [[resource]]
            name = "app"
            agent = "ocf:heartbeat:Dummy"
            preferred = ["node3", "node1"]
            params = { fake = "changed" }

            [[resource]]
            name = "extra"
            agent = "ocf:heartbeat:Dummy"
            preferred = ["node1"]
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let v = try status(lab, 1).configVersion
        let dry = lab.hactl(2, ["apply", "--dry-run", "-f", path, "-o", "json"])
        XCTAssertEqual(dry.code, 0, dry.err)
        let r = try JSONDecoder().decode(WhatIf.Report.self, from: Data(dry.out.utf8))
        XCTAssertEqual(r.added, ["extra"])
        XCTAssertEqual(r.removed, ["web-ip"])
        XCTAssertEqual(r.changed, ["app"])
        XCTAssertEqual(Set(r.actions), ["stop web-ip on node1", "start extra on node1", "restart app on node3"])
        XCTAssertEqual(try status(lab, 1).configVersion, v, "a dry run changed the configuration")
        XCTAssertTrue(lab.hactl(2, ["apply", "--dry-run", "-f", path]).out.contains("Removed: web-ip"))
        // Now for real: exactly those actions.
        let t0 = Int(Lab.monoNowMs())
        XCTAssertEqual(lab.hactl(2, ["apply", "-f", path]).code, 0)
        try lab.waitFor("the predicted placement", timeout: 20) { self.placement(lab) == self.predicted(r) }
        Thread.sleep(forTimeInterval: 1)
        XCTAssertEqual(observed(lab, since: t0), expanded(r.actions))
        // A file the cluster would refuse: said so, named, and nothing changes.
        let bad = lab.workDir + "/bad.toml"
        try "[[resource]]\nname = \"x\"\nagent = \"ocf:heartbeat:Dummy\"\npreferred = [\"node9\"]\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let v2 = try status(lab, 1).configVersion
        let refused = lab.hactl(1, ["apply", "--dry-run", "-f", bad])
        XCTAssertEqual(refused.code, 1)
        XCTAssertTrue(refused.out.contains("REFUSED: ") && refused.out.contains("node9") && refused.out.contains("bad.toml"), refused.out + refused.err)
        XCTAssertEqual(try status(lab, 1).configVersion, v2)
    }
}
