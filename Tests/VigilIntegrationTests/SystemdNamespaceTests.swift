import Foundation
import Glibc
import XCTest
import VigilCore
import VigilLab

/// Issue 13, `systemd:UNIT` resources with real systemd: every lab node runs a private systemd
/// (PID 1 of its own namespace, see LabSystemd.swift; the test machine has no systemd as PID 1),
/// and clusterd starts, stops and monitors a unit through its D-Bus API. Needs root and
/// /lib/systemd/systemd; with CI=true a machine without them fails this test.
final class SystemdNamespaceTests: NamespaceTestCase {
    static let unit = """
        [Unit]
        Description=Vigil test service
        DefaultDependencies=no

        [Service]
        ExecStart=/bin/sleep infinity
        Restart=always

        """

    func systemdLab() throws -> Lab {
        let lab = try makeLab(heartbeatLinks: 1)
        guard FileManager.default.isExecutableFile(atPath: "/lib/systemd/systemd") else {
            if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail("systemd is not installed: .ci/install-deps.sh installs it") }
            throw XCTSkip("needs /lib/systemd/systemd (Debian's systemd package) for a private systemd per node")
        }
        lab.privateSystemd = true
        try startQuorate(lab)
        for i in 1...3 {
            try lab.writeRunFile(i, "/run/systemd/system/vigil-test-app.service", Self.unit)
            XCTAssertEqual(lab.systemctl(i, ["daemon-reload"]).code, 0)
        }
        return lab
    }

    func active(_ lab: Lab, _ i: Int, _ unit: String = "vigil-test-app.service") -> String {
        lab.systemctl(i, ["is-active", unit]).out.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func svc(_ lab: Lab) -> ClusterStatus.ResourceStatus? { (try? status(lab, 1))?.resources.first { $0.name == "svc" } }

    func testAUnitIsStartedMonitoredRecoveredAndMovedThroughSystemd() throws {
        let lab = try systemdLab()
        _ = try lab.apply(1, resources: """
            [[resource]]
            name = "svc"
            agent = "systemd:vigil-test-app.service"
            preferred = ["node2", "node3"]
            monitor_interval_ms = 1000
            """)
        try lab.waitFor("svc started on node2", timeout: 20) { self.svc(lab).map { $0.runningOn == ["node2"] && $0.state == "started" } ?? false }
        XCTAssertEqual(active(lab, 2), "active")
        XCTAssertEqual(active(lab, 1), "inactive")
        XCTAssertEqual(active(lab, 3), "inactive")
        // The drop-in: ordered before clusterd's unit, and systemd restarts nothing itself
        // (the unit's own Restart=always is overridden).
        let dropIn = lab.readRunFile(2, "/run/systemd/system/vigil-test-app.service.d/50-vigil.conf") ?? ""
        XCTAssertTrue(dropIn.contains("Before=vigil-clusterd.service"), dropIn)
        XCTAssertEqual(lab.systemctl(2, ["show", "-p", "Restart", "--value", "vigil-test-app.service"]).out.trimmingCharacters(in: .whitespacesAndNewlines), "no")
        XCTAssertTrue(lab.systemctl(2, ["show", "-p", "Before", "--value", "vigil-test-app.service"]).out.contains("vigil-clusterd.service"))

        // Its process killed: the monitor sees the unit failed, and the cluster restarts it there.
        let t0 = Int(Lab.monoNowMs())
        XCTAssertEqual(lab.systemctl(2, ["kill", "--signal=KILL", "vigil-test-app.service"]).code, 0)
        try lab.waitFor("the failure seen", timeout: 10) { lab.events(2).contains { $0.mono >= t0 && $0.text.hasPrefix("resource-failed resource=svc") } }
        try lab.waitFor("svc running again", timeout: 20) {
            self.svc(lab).map { $0.state == "started" && $0.runningOn.count == 1 } ?? false && (1...3).contains { self.active(lab, $0) == "active" }
        }
        let after = try XCTUnwrap(svc(lab)?.runningOn.first)
        XCTAssertEqual((1...3).filter { self.active(lab, $0) == "active" }.map { "node\($0)" }, [after], "runs exactly where the cluster says")

        // A planned move: stopped through systemd on the old node, started on the new.
        let target = after == "node3" ? "node1" : "node3"
        let mv = lab.hactl(1, ["move", "svc", target, "--wait", "20"])
        XCTAssertEqual(mv.code, 0, mv.err + mv.out)
        XCTAssertEqual(active(lab, Int(target.dropFirst(4)) ?? 0), "active")
        XCTAssertEqual((1...3).filter { self.active(lab, $0) == "active" }.count, 1)
        // Nothing moves or restarts when nothing is wrong.
        let quiet = Int(Lab.monoNowMs())
        Thread.sleep(forTimeInterval: 3)
        for i in 1...3 {
            XCTAssertFalse(lab.events(i).contains { $0.mono >= quiet && ($0.text.hasPrefix("resource-st") || $0.text.hasPrefix("resource-failed")) }, "node\(i) acted while all was well")
        }
    }

    /// A unit enabled at boot is refused (by hactl apply, and by a node asked to start it); a
    /// unit that is not a service cannot be named; hactl agent list shows the services.
    func testUnitsTheClusterCannotOwnAreRefused() throws {
        let lab = try systemdLab()
        for i in 1...3 {
            try lab.writeRunFile(i, "/run/systemd/system/vigil-test-boot.service", Self.unit + "[Install]\nWantedBy=multi-user.target\n")
            XCTAssertEqual(lab.systemctl(i, ["daemon-reload"]).code, 0)
        }
        // Enabled on node1 only.
        let en = lab.systemctl(1, ["enable", "--runtime", "vigil-test-boot.service"])
        XCTAssertEqual(en.code, 0, en.err)
        let list = lab.hactlLocal(1, ["agent", "list"]).out
        XCTAssertTrue(list.contains("systemd:vigil-test-app.service"), list)
        XCTAssertTrue(list.contains("systemd:vigil-test-boot.service (enabled at boot"), list)
        let path = lab.workDir + "/boot.toml"
        try "[[resource]]\nname = \"boot\"\nagent = \"systemd:vigil-test-boot.service\"\n".write(toFile: path, atomically: true, encoding: .utf8)
        let r = lab.hactl(1, ["apply", "-f", path])
        XCTAssertNotEqual(r.code, 0)
        XCTAssertTrue((r.err + r.out).contains("enabled to start at boot"), r.err + r.out)
        XCTAssertEqual(try status(lab, 1).configVersion, 0, "nothing applied")
        try "[[resource]]\nname = \"off\"\nagent = \"systemd:poweroff.target\"\n".write(toFile: path, atomically: true, encoding: .utf8)
        let t = lab.hactl(1, ["apply", "-f", path])
        XCTAssertNotEqual(t.code, 0)
        XCTAssertTrue((t.err + t.out).contains("only systemd services"), t.err + t.out)
        // Applied from node2 (where it is not enabled), node1 still refuses to start it.
        _ = try lab.apply(2, resources: "[[resource]]\nname = \"boot\"\nagent = \"systemd:vigil-test-boot.service\"\npreferred = [\"node1\"]\n")
        try lab.waitFor("boot started elsewhere", timeout: 20) {
            (try? self.status(lab, 1))?.resources.first { $0.name == "boot" }.map { $0.state == "started" && $0.runningOn.count == 1 && $0.runningOn != ["node1"] } ?? false
        }
        XCTAssertEqual(active(lab, 1, "vigil-test-boot.service"), "inactive")
        XCTAssertTrue(lab.events(1).contains { $0.text.contains("enabled to start at boot") }, lab.tail(lab.logFile(1), lines: 20))
    }
}
