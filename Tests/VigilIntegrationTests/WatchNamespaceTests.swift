import Foundation
import Glibc
import XCTest
import VigilCore
import VigilLab

/// Issue 12, live status: `hactl status --watch` redraws on every change clusterd pushes (no
/// polling): with `--output json`, one line per change, each stamped with hactl's monotonic
/// clock, which the lab's nodes share with the test, so the delay from clusterd's log line
/// to the watcher's line is measured on one clock.
final class WatchNamespaceTests: NamespaceTestCase {
    func testAWatcherSeesAChangeWithin100Ms() throws {
        let lab = try makeLab(heartbeatLinks: 1)
        try startQuorate(lab)
        let out = lab.workDir + "/watch.jsonl"
        XCTAssertTrue(FileManager.default.createFile(atPath: out, contents: nil))
        let fh = try XCTUnwrap(FileHandle(forWritingAtPath: out))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        p.arguments = ["netns", "exec", lab.ns(1), Self.binDir + "/hactl", "status", "--watch", "--output", "json", "--ipc", "vigil-\(lab.prefix)-node1"]
        p.standardOutput = fh
        p.standardError = fh
        try p.run()
        defer {
            if p.isRunning { kill(p.processIdentifier, SIGTERM) }
            p.waitUntilExit()
        }
        func lines() -> [ClusterStatus] {
            let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").compactMap { try? JSONDecoder().decode(ClusterStatus.self, from: Data($0.utf8)) }
        }
        try lab.waitFor("the first status", timeout: 10) { !lines().isEmpty }
        XCTAssertNotNil(lines().first?.watchedAtMonoMs)
        // A change: node3 dies. node1 logs member-lost; the watcher's next line shows it.
        lab.kill(3)
        try lab.setLinks(3, up: false)
        try lab.waitFor("a line with node3 gone", timeout: 10) { lines().contains { $0.nodes.first { $0.name == "node3" }?.state != "online" } }
        let lost = try XCTUnwrap(lab.events(1).first { $0.text.hasPrefix("member-lost node=node3") })
        let seen = try XCTUnwrap(lines().first { $0.nodes.first { $0.name == "node3" }?.state != "online" }?.watchedAtMonoMs)
        let delay = Int(seen) - lost.mono
        print("watch: member-lost logged at \(lost.mono), shown at \(seen): \(delay) ms")
        XCTAssertGreaterThanOrEqual(delay, 0)
        XCTAssertLessThan(delay, 100, "the watcher showed the change \(delay) ms after clusterd logged it")
        // Pushes follow events, not a clock: over three seconds, no more lines than node1 logged
        // events (a poller would add lines while nothing happens).
        let count = lines().count, from = Int(Lab.monoNowMs())
        Thread.sleep(forTimeInterval: 3)
        let events = lab.events(1).filter { $0.mono >= from }.count
        // (+1: a push for an event just before the window may land inside it.)
        XCTAssertLessThanOrEqual(lines().count - count, events + 1, "more lines than events: the watcher polls")
        XCTAssertTrue(p.isRunning, "the watcher stopped")
    }
}
