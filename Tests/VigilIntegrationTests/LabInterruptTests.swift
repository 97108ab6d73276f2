import Foundation
import Glibc
import XCTest
import VigilLab

/// A benchmark interrupted mid-run (SIGTERM, as Ctrl-C or a timeout sends) leaves nothing
/// behind: no namespace, no clusterd or guardian, no work directory.
final class LabInterruptTests: NamespaceTestCase {
    /// The namespaces of labs made by process `pid` (named `vl<pid % 1000>x<serial>-...`).
    func namespaces(ofLabsIn pid: pid_t) -> [String] {
        Lab.namespaceNames().filter { name in
            guard name.hasPrefix("vl\(pid % 1000)x"), let dash = name.firstIndex(of: "-") else { return false }
            return name[name.index(name.startIndex, offsetBy: "vl\(pid % 1000)x".count)..<dash].allSatisfy(\.isNumber)
        }
    }

    func testAnInterruptedBenchmarkRemovesWhatItMade() throws {
        if geteuid() != 0 {
            if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail("namespace tests need root and CI=true: refusing to skip") }
            throw XCTSkip("needs root")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.binDir + "/vigil-lab")
        p.arguments = ["bench", "--idle", "--links", "1", "--seconds", "600", "--bin", Self.binDir]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let pid = p.processIdentifier
        var daemons: [pid_t] = []
        defer {
            // Whatever the outcome, nothing of this run stays (the same removal by hand).
            if p.isRunning { kill(pid, SIGKILL) }
            let left = namespaces(ofLabsIn: pid)
            Lab.removeNamespaces(left)
            for n in left {
                try? FileManager.default.removeItem(atPath: NSTemporaryDirectory() + "vigil-lab-" + String(n[..<(n.firstIndex(of: "-") ?? n.endIndex)]))
            }
        }
        // Wait until the three nodes run (clusterd and its guardian in each node's namespace).
        let deadline = Date().addingTimeInterval(90)
        while Date() < deadline && p.isRunning {
            let nodes = namespaces(ofLabsIn: pid).filter { $0.hasSuffix("-n1") || $0.hasSuffix("-n2") || $0.hasSuffix("-n3") }
            daemons = nodes.flatMap { Lab.run("/usr/sbin/ip", ["netns", "pids", $0]).out.split(separator: "\n").compactMap { pid_t($0) } }
            if nodes.count == 3 && daemons.count >= 6 { break }
            Thread.sleep(forTimeInterval: 0.5)
        }
        XCTAssertTrue(p.isRunning, "vigil-lab ended before it was interrupted")
        XCTAssertGreaterThanOrEqual(daemons.count, 6, "the lab's nodes did not come up")
        let made = namespaces(ofLabsIn: pid)
        XCTAssertFalse(made.isEmpty)
        kill(pid, SIGTERM)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .exit)
        XCTAssertEqual(p.terminationStatus, 128 + SIGTERM)
        XCTAssertEqual(namespaces(ofLabsIn: pid), [], "namespaces left behind")
        // The daemons were killed (a zombie waiting for whoever reaps orphans here counts as
        // gone: it runs nothing).
        func running(_ pid: pid_t) -> Bool {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            return stat[stat.index(after: close)...].split(separator: " ").first != "Z"
        }
        let gone = Date().addingTimeInterval(10)
        var alive = daemons
        while !alive.isEmpty && Date() < gone {
            alive = alive.filter(running)
            if !alive.isEmpty { Thread.sleep(forTimeInterval: 0.2) }
        }
        XCTAssertEqual(alive, [], "processes of the lab still running")
        let dirs = (try? FileManager.default.contentsOfDirectory(atPath: NSTemporaryDirectory())) ?? []
        for n in made {
            let prefix = String(n[..<(n.firstIndex(of: "-") ?? n.endIndex)])
            XCTAssertFalse(dirs.contains("vigil-lab-\(prefix)"), "work directory of \(prefix) left behind")
        }
    }
}
