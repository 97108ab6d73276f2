import Foundation
import Glibc
import XCTest
import VigilCore
import VigilLab

/// Issue 11, live migration, with real clusterds and Debian's `ocf:heartbeat:Dummy`
/// unmodified (it implements migrate_to and migrate_from): `hactl move` runs migrate_to on
/// the source, migrate_from on the target, then the source's stop, and no start. An agent
/// whose migrate_to fails falls back to a stop on both nodes and a start.
final class MigrationNamespaceTests: NamespaceTestCase {
    /// The agent operations a node's clusterd ran on `resource` since `since` (its log lines
    /// `agent ACTION resource=R ...`), in order.
    func operations(_ lab: Lab, _ node: Int, _ resource: String, since: Int = 0) -> [String] {
        let text = (try? String(contentsOfFile: lab.logFile(node), encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line -> String? in
            let parts = line.split(separator: " ", maxSplits: 3)
            guard parts.count == 4, parts[0].hasPrefix("mono="), let m = Int(parts[0].dropFirst(5)), m >= since else { return nil }
            let words = parts[3].split(separator: " ")
            guard words.count >= 3, words[0] == "agent", words[2] == "resource=\(resource)" else { return nil }
            return "\(words[1])\(words.contains { $0.hasPrefix("result=\"ok") } ? "" : " failed")"
        }
    }

    /// A quorate lab running `vm` (the agent, allow_migrate) on node1.
    func vmOnNode1(agent: String) throws -> Lab {
        let lab = try makeLab(heartbeatLinks: 1)
        try startQuorate(lab)
        _ = try lab.apply(1, resources: "[[resource]]\nname = \"vm\"\nagent = \"\(agent)\"\nallow_migrate = true\npreferred = [\"node1\"]\n")
        // Its start logged and reported, so the start falls before any t0 a test takes next.
        try lab.waitFor("vm started on node1", timeout: 20) {
            self.operations(lab, 1, "vm") == ["start"]
                && (try? self.status(lab, 1))?.resources.first { $0.name == "vm" }.map { $0.runningOn == ["node1"] && $0.state == "started" } == true
        }
        return lab
    }

    func testAPlannedMoveMigratesDummyWithoutAStart() throws {
        let lab = try vmOnNode1(agent: "ocf:heartbeat:Dummy")
        let t0 = Int(Lab.monoNowMs())
        let r = lab.hactl(3, ["move", "vm", "node2", "--wait", "20"])
        XCTAssertEqual(r.code, 0, r.err + r.out)
        XCTAssertEqual(try status(lab, 1).resources.first { $0.name == "vm" }?.runningOn, ["node2"])
        try lab.waitFor("node1 to stop its migrated instance", timeout: 10) { self.operations(lab, 1, "vm", since: t0).last == "stop" }
        XCTAssertEqual(operations(lab, 1, "vm", since: t0), ["migrate_to", "stop"], lab.tail(lab.logFile(1), lines: 30))
        XCTAssertEqual(operations(lab, 2, "vm", since: t0), ["migrate_from"], "a migration starts nothing: " + lab.tail(lab.logFile(2), lines: 30))
        XCTAssertEqual(operations(lab, 3, "vm", since: t0), [])
        // The coordinator's view, and the order: the source's stop after the target's migrate_from.
        let ev = lab.allEvents().filter { $0.mono >= t0 }.map { "\($0.node) \($0.text)" }
        XCTAssertTrue(ev.contains { $0.hasPrefix("node1 migration-completed resource=vm from=node1 to=node2") }, "\(ev)")
        let from = ev.firstIndex { $0.hasPrefix("node2 resource-started resource=vm") }
        let stop = ev.firstIndex { $0.hasPrefix("node1 resource-stopping resource=vm") }
        XCTAssertNotNil(from)
        XCTAssertNotNil(stop)
        if let a = from, let b = stop { XCTAssertLessThan(a, b, "the source stopped before the target ran it") }
        // Settled: monitored on node2, nothing moves.
        Thread.sleep(forTimeInterval: 2)
        XCTAssertEqual(operations(lab, 2, "vm", since: t0), ["migrate_from"])
        XCTAssertEqual(try status(lab, 2).resources.first { $0.name == "vm" }?.state, "started")
    }

    func testAFailingMigrateToStopsOnBothThenStarts() throws {
        guard geteuid() == 0 else { throw XCTSkip("needs root") }
        let dir = "/usr/lib/ocf/resource.d/vigil-test"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Dummy's behaviour, but its migrate_to fails; state in the node's private /run.
        let script = """
            #!/bin/sh
            state=/run/resource-agents/migfail-$OCF_RESOURCE_INSTANCE
            case "$1" in
            meta-data) cat <<'XML'
            <?xml version="1.0"?>
            <resource-agent name="migfail" version="1">
              <version>1.0</version>
              <shortdesc lang="en">A resource whose migrate_to fails</shortdesc>
              <parameters/>
              <actions><action name="start" timeout="5s"/><action name="stop" timeout="5s"/><action name="monitor" timeout="5s"/>
              <action name="migrate_to" timeout="5s"/><action name="migrate_from" timeout="5s"/><action name="meta-data" timeout="5s"/></actions>
            </resource-agent>
            XML
                exit 0 ;;
            start|migrate_from) touch "$state"; exit 0 ;;
            stop) rm -f "$state"; exit 0 ;;
            monitor) [ -f "$state" ] && exit 0; exit 7 ;;
            migrate_to) echo "cannot reach $OCF_RESKEY_CRM_meta_migrate_target"; exit 1 ;;
            *) exit 3 ;;
            esac
            """
        let agent = dir + "/migfail"
        XCTAssertTrue(FileManager.default.createFile(atPath: agent, contents: Data(script.utf8), attributes: [.posixPermissions: 0o755]))
        let lab = try vmOnNode1(agent: "ocf:vigil-test:migfail")
        let t0 = Int(Lab.monoNowMs())
        XCTAssertEqual(lab.hactl(1, ["move", "vm", "node2"]).code, 0)
        try lab.waitFor("vm started on node2", timeout: 20) {
            (try? self.status(lab, 1))?.resources.first { $0.name == "vm" }.map { $0.runningOn == ["node2"] && $0.state == "started" } ?? false
        }
        XCTAssertEqual(operations(lab, 1, "vm", since: t0), ["migrate_to failed", "stop"], lab.tail(lab.logFile(1), lines: 30))
        // The target stops what the failed migration may have left there, then starts it.
        XCTAssertEqual(operations(lab, 2, "vm", since: t0), ["stop", "start"], lab.tail(lab.logFile(2), lines: 30))
        XCTAssertTrue(lab.allEvents().contains { $0.mono >= t0 && $0.text.hasPrefix("migration-aborted resource=vm from=node1 to=node2") })
    }

    /// `hactl apply` refuses allow_migrate for an agent whose meta-data lacks the two actions.
    func testAllowMigrateNeedsAnAgentThatMigrates() throws {
        let lab = try makeLab(heartbeatLinks: 1)
        try startQuorate(lab)
        let path = lab.workDir + "/nomigrate.toml"
        try """
            [[resource]]
            name = "addr"
            agent = "ocf:heartbeat:IPaddr2"
            allow_migrate = true
            params = { ip = "198.18.0.77" }
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let v = try status(lab, 1).configVersion
        let r = lab.hactl(1, ["apply", "-f", path])
        XCTAssertNotEqual(r.code, 0)
        XCTAssertTrue(r.err.contains("allow_migrate = true, but the agent does not advertise migrate_to or migrate_from"), r.err)
        XCTAssertEqual(try status(lab, 1).configVersion, v, "a refused apply changed the configuration")
    }
}
