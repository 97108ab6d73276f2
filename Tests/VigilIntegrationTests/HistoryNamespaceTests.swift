import Foundation
import Glibc
import XCTest
import VigilCore
import VigilLab
@testable import VigilSystem
@testable import VigilDaemon

/// Issue 12, history: every node journals its events; `hactl history` merges the journals of
/// the reachable nodes on the asking node's wall clock. The lab's nodes get clocks of their own
/// here: node2's monotonic clock 100,000 s ahead and its wall clock 7 s behind, node3's 250,000 s
/// and 5 s ahead (a time namespace and libfaketime), so a merge by raw wall or monotonic time
/// would put events seconds or days out of order.
final class HistoryNamespaceTests: NamespaceTestCase {
    func history(_ lab: Lab, _ node: Int, _ args: [String] = []) throws -> History.Report {
        let r = lab.hactl(node, ["history", "-o", "json"] + args)
        guard r.code == 0 else { throw LabError("hactl history on node\(node) failed: \(r.err)\(r.out)") }
        return try JSONDecoder().decode(History.Report.self, from: Data(r.out.utf8))
    }

    func testAFailoverReadsAsOneTimelineAcrossOffsetClocks() throws {
        let lab = try makeLab(heartbeatLinks: 1)
        lab.clocks = [2: (monotonicS: 100_000, wallS: -7), 3: (monotonicS: 250_000, wallS: 5)]
        try startQuorate(lab)
        _ = try lab.apply(1, resources: """
            [[ip]]
            name = "web-ip"
            address = "\(Scenarios.vip)/24"
            interface = "eth0"
            preferred = ["node3", "node2"]

            [[resource]]
            name = "app"
            agent = "ocf:heartbeat:Dummy"
            preferred = ["node3", "node2"]
            """)
        try lab.waitFor("web-ip and app on node3", timeout: 20) {
            lab.owners(of: Scenarios.vip) == [3]
                && (try? self.status(lab, 1))?.resources.first { $0.name == "app" }.map { $0.runningOn == ["node3"] && $0.state == "started" } == true
        }
        // Before the failure: node1 reaches both peers' journals, and measures their clocks.
        let before = try history(lab, 1)
        let n2 = try XCTUnwrap(before.nodes.first { $0.name == "node2" })
        let n3 = try XCTUnwrap(before.nodes.first { $0.name == "node3" })
        for (n, expected) in [(n2, -7000.0), (n3, 5000.0)] {
            XCTAssertTrue(n.complete, "\(n)")
            XCTAssertEqual(n.offsetSource, "heartbeat-echoes")
            let o = try XCTUnwrap(n.wallOffsetMs)
            XCTAssertEqual(o, expected, accuracy: 60, "\(n.name)'s wall clock offset")
            XCTAssertLessThan(try XCTUnwrap(n.uncertaintyMs), 20)
            XCTAssertGreaterThan(n.records, 3)
        }
        XCTAssertTrue(before.events.contains { $0.node == "node3" && $0.text == "resource-started resource=web-ip" })

        lab.kill(3)
        try lab.waitFor("web-ip and app on node2", timeout: 20) {
            lab.owners(of: Scenarios.vip) == [2]
                && (try? self.status(lab, 1))?.resources.first { $0.name == "app" }.map { $0.runningOn == ["node2"] && $0.state == "started" } == true
        }
        Thread.sleep(forTimeInterval: 1)  // the announcements' journal lines
        let r = try history(lab, 1)
        XCTAssertEqual(r.format, 1)
        XCTAssertEqual(r.nodes.first { $0.name == "node3" }?.note, "not reachable: its journal is not included")
        // Both survivors declared node3 lost within a heartbeat or two of each other: corrected,
        // their records are close; by their own wall clocks they are 7 s apart.
        let lost = r.events.filter { $0.kind == "member-lost" && $0.fields["node"] == "node3" }
        let l1 = try XCTUnwrap(lost.first { $0.node == "node1" }), l2 = try XCTUnwrap(lost.first { $0.node == "node2" })
        XCTAssertLessThan(abs(l1.wallMs - l2.wallMs), 400, "corrected times of one moment: \(lost)")
        XCTAssertGreaterThan(abs(l1.localWallMs - l2.localWallMs), 6000)
        // Each node's own order, and the whole in time order.
        for n in ["node1", "node2", "node3"] {
            let seqs = r.events.filter { $0.node == n }.map(\.seq)
            XCTAssertEqual(seqs, seqs.sorted(), n)
        }
        XCTAssertEqual(r.events.map(\.wallMs), r.events.map(\.wallMs).sorted())
        // The failover of the address: every step, in order, on node2, with an outage estimate.
        let f = try XCTUnwrap(r.failovers.first { $0.resource == "web-ip" }, "\(r.failovers)")
        XCTAssertEqual(f.from, "node3")
        XCTAssertEqual(f.to, "node2")
        let steps = try [f.lost, f.detected, f.decided, f.started].map { try XCTUnwrap($0, "\(f)") }
        XCTAssertEqual(steps, steps.sorted(), "\(f)")
        let announced = try XCTUnwrap(f.announced, "\(f)")
        XCTAssertGreaterThanOrEqual(announced, try XCTUnwrap(f.decided))
        let outage = try XCTUnwrap(f.clientOutageMs)
        XCTAssertGreaterThan(outage, 100)
        XCTAssertLessThan(outage, 5000)
        XCTAssertNotNil(r.failovers.first { $0.resource == "app" && $0.to == "node2" && $0.started != nil })
        // Filters.
        let onlyIP = try history(lab, 2, ["--resource", "web-ip", "--since", "10m"])
        XCTAssertFalse(onlyIP.events.isEmpty)
        XCTAssertTrue(onlyIP.events.allSatisfy { $0.fields["resource"] == "web-ip" })
        XCTAssertEqual(onlyIP.failovers.map(\.resource), ["web-ip"])
        let text = lab.hactl(1, ["history", "--node", "node3"])
        XCTAssertEqual(text.code, 0, text.err)
        print(text.out)
        XCTAssertTrue(text.out.contains("Failover of web-ip from node3 to node2"), text.out)
        XCTAssertTrue(text.out.contains("client-visible outage"), text.out)
        XCTAssertEqual(lab.hactl(1, ["history", "--since", "yesterday"]).code, 64)

        // node3 back: its journal survived on disk (what it ran before it was killed), and its
        // clock is measured again (a new life).
        try lab.startNode(3)
        try lab.waitFor("node3 a member again", timeout: 20) {
            (try? self.status(lab, 1))?.nodes.first { $0.name == "node3" }?.state == "online"
        }
        let after = try history(lab, 1)
        let n3b = try XCTUnwrap(after.nodes.first { $0.name == "node3" })
        XCTAssertTrue(n3b.complete, "\(n3b)")
        XCTAssertEqual(try XCTUnwrap(n3b.wallOffsetMs), 5000, accuracy: 60)
        XCTAssertTrue(after.events.contains { $0.node == "node3" && $0.text == "resource-started resource=web-ip" })
        XCTAssertTrue(after.events.contains { $0.node == "node3" && $0.kind == "coordinator-changed" && $0.wallMs > l1.wallMs })
    }

    /// The journal file: bounded (rotated into journal.1), reloaded at start with seq going on,
    /// damaged lines skipped; a symbolic link planted at its name is not followed.
    func testTheJournalRotatesReloadsAndSkipsDamage() throws {
        let dir = NSTemporaryDirectory() + "vigil-journal-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let worker = try Worker(name: "journal-test")
        defer { worker.finish() }
        let log = EventLog(node: "t")
        let j = JournalStore(dir: dir, worker: worker, log: log, maxFileBytes: 4096)
        for i in 1...200 { j.record("resource-started resource=r\(i)") }
        worker.submit {}
        var waited = 0
        while (try? Data(contentsOf: URL(fileURLWithPath: dir + "/journal.1"))) == nil, waited < 200 { usleep(10_000); waited += 1 }
        Thread.sleep(forTimeInterval: 0.2)
        let cur = try Data(contentsOf: URL(fileURLWithPath: dir + "/journal")), old = try Data(contentsOf: URL(fileURLWithPath: dir + "/journal.1"))
        XCTAssertLessThanOrEqual(cur.count, 4096)
        XCTAssertLessThanOrEqual(old.count, 4096)
        XCTAssertEqual(j.records(after: 195, sinceWallMs: .min).map(\.seq), [196, 197, 198, 199, 200])
        // Damage at the end (a torn line) and in the middle.
        let fh = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/journal"))
        fh.seekToEndOfFile()
        fh.write(Data("garbage\u{0}line\nv1 9 9 9".utf8))
        try fh.close()
        let again = JournalStore(dir: dir, worker: worker, log: log, maxFileBytes: 4096)
        let kept = again.records(after: 0, sinceWallMs: .min)
        XCTAssertEqual(kept.last?.seq, 200)
        XCTAssertEqual(kept.map(\.seq), kept.map(\.seq).sorted())
        XCTAssertGreaterThan(kept.count, 40)
        again.record("quorum-gained")
        XCTAssertEqual(again.records(after: 200, sinceWallMs: .min).map(\.seq), [201])
        // A planted link: nothing is written through it.
        let victim = dir + "/victim"
        XCTAssertTrue(FileManager.default.createFile(atPath: victim, contents: Data("keep\n".utf8)))
        let d2 = dir + "/planted"
        try FileManager.default.createDirectory(atPath: d2, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: d2 + "/journal", withDestinationPath: victim)
        let p = JournalStore(dir: d2, worker: worker, log: log)
        p.record("quorum-gained")
        worker.submit {}
        Thread.sleep(forTimeInterval: 0.3)
        XCTAssertEqual(try String(contentsOfFile: victim, encoding: .utf8), "keep\n")
    }
}
