import Foundation
import Glibc
import XCTest
import VigilCore
import VigilLab

/// Watchdog self-fencing with real processes: each lab node's guardian holds a stand-in watchdog
/// (a FIFO whose reader resets the node's namespace when petting stops; the kernel's one
/// softdog would reset the whole machine). No fence device is configured: the watchdog alone
/// makes `requires = "fencing"` safe.
final class WatchdogNamespaceTests: NamespaceTestCase {
    func testAStalledNodeIsResetByItsWatchdogBeforeItsApplicationStartsElsewhere() throws {
        let lab = try makeLab(heartbeatLinks: 1)
        let standIns = try WatchdogStandIn.install(lab: lab, timeoutS: 3, nodes: [1, 2, 3])
        defer { for s in standIns { s.stop() } }
        try startQuorate(lab)
        _ = try lab.apply(1, resources: """
            [[resource]]
            name = "db"
            agent = "ocf:heartbeat:Dummy"
            preferred = ["node3"]
            monitor_interval_ms = 2000
            """)
        func db() -> [String] { runningOn(lab, "db") }
        try lab.waitFor("db on node3", timeout: 30) { db() == ["node3"] }
        // Nothing wrong for a while: every guardian pets, nobody is reset.
        Thread.sleep(forTimeInterval: 4)
        for s in standIns {
            XCTAssertGreaterThan(s.petCount, 3, "node\(s.node)'s guardian does not pet")
            XCTAssertNil(s.resetAt, "node\(s.node) reset with nothing wrong")
        }
        XCTAssertTrue(lab.events(3).contains { $0.text.contains("watchdog \(lab.workDir)/wd-node3 armed, timeout 3 s (a FIFO: stand-in)") })
        let t0 = Int(Lab.monoNowMs())
        lab.pause(3, true)
        try lab.waitFor("db running elsewhere", timeout: 60) { let w = db(); return !w.isEmpty && !w.contains("node3") }
        let reset = try XCTUnwrap(standIns[2].resetAt, "node3's watchdog did not reset it")
        XCTAssertNil(standIns[0].resetAt)
        XCTAssertNil(standIns[1].resetAt)
        XCTAssertTrue(lab.pids(in: 3, matching: "").isEmpty, "node3 still has processes")
        let all = lab.allEvents().filter { $0.mono >= t0 }
        let fenced = try XCTUnwrap(all.first { $0.text.hasPrefix("fence-succeeded node=node3") })
        XCTAssertTrue(fenced.text.contains("device=watchdog"), fenced.text)
        let started = try XCTUnwrap(all.first { $0.text == "resource-starting resource=db" })
        XCTAssertGreaterThan(UInt64(started.mono), reset, "db started before node3's watchdog reset it")
        lab.kill(3)
    }

    /// fence_reaction = "panic": a node fenced while it still runs (fence_dummy powers nothing
    /// off) stops petting, and its watchdog resets it.
    func testPanicReactionResetsANodeFencedWhileRunning() throws {
        try requireFenceDummy()
        let lab = try makeLab(heartbeatLinks: 1)
        let standIns = try WatchdogStandIn.install(lab: lab, timeoutS: 2, nodes: [1, 2, 3])
        defer { for s in standIns { s.stop() } }
        try addClusterLine(lab, "fence_reaction = \"panic\"")
        try startWithDummyFencedDb(lab)
        let r = lab.hactl(1, ["fence", "node3", "--yes"])
        XCTAssertEqual(r.code, 0, r.out + r.err)
        try lab.waitFor("node3 reset by its watchdog", timeout: 15) { standIns[2].resetAt != nil }
        XCTAssertTrue(lab.events(3).contains { $0.text.hasPrefix("fenced-while-running") })
        XCTAssertNil(standIns[0].resetAt)
        XCTAssertNil(standIns[1].resetAt)
        lab.kill(3)
    }

    /// A configuration that relies on a watchdog that is not there (or is not one) stops the start.
    func testAMissingWatchdogStopsTheStart() throws {
        let lab = try makeLab(heartbeatLinks: 1)
        for (device, expected) in [("/nonexistent/watchdog", "No such file"), (lab.configPath, "is not a watchdog device")] {
            let cfg = try String(contentsOfFile: lab.configPath, encoding: .utf8)
            let base = cfg.components(separatedBy: "\n[watchdog]").first ?? cfg
            try (base + "\n[watchdog]\ndevice = \"\(device)\"\ntimeout_s = 5\n").write(toFile: lab.configPath, atomically: true, encoding: .utf8)
            try lab.startNode(1)
            try lab.waitFor("clusterd to refuse to start", timeout: 15) { !lab.isRunning(1) }
            let log = lab.tail(lab.logFile(1), lines: 20)
            XCTAssertTrue(log.contains("watchdog \(device)") && log.contains(expected), log)
            lab.kill(1)
        }
    }
}

extension WatchdogNamespaceTests {
    /// The real device path (WDIOC_SETTIMEOUT, WDIOC_GETTIMEOUT, pets, the magic close): only
    /// where /dev/watchdog already exists and is softdog with soft_noboot=1 (tests never load
    /// softdog: there is one per kernel, and its expiry would reboot the machine and every lab node).
    func testTheGuardianArmsAndDisarmsARealSoftdog() throws {
        let noboot = (try? String(contentsOfFile: "/sys/module/softdog/parameters/soft_noboot", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        guard FileManager.default.fileExists(atPath: "/dev/watchdog"), noboot == "1" else {
            throw XCTSkip("needs /dev/watchdog from softdog loaded with soft_noboot=1 (never loaded by the tests)")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.binDir + "/clusterd")
        p.arguments = ["--guardian", "--node", "wdtest", "--watchdog-device", "/dev/watchdog", "--watchdog-timeout", "5"]
        let input = Pipe(), output = Pipe()
        p.standardInput = input
        p.standardError = output
        p.standardOutput = output
        try p.run()
        Thread.sleep(forTimeInterval: 2)
        try input.fileHandleForWriting.close()
        p.waitUntilExit()
        let log = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertTrue(log.contains("watchdog /dev/watchdog armed, timeout 5 s"), log)
        XCTAssertTrue(log.contains("watchdog disarmed"), log)
        XCTAssertEqual(p.terminationStatus, 0, log)
    }
}
