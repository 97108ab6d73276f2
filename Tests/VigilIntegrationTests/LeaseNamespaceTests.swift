import Foundation
import XCTest
import VigilCore
import VigilLab

/// Leases with real processes: random frame loss in the switch, the coordinator's death while
/// every node serves, and a stalled owner watched by an ARP client.
final class LeaseNamespaceTests: NamespaceTestCase {
    func lab(heartbeatLinks: Int) throws -> Lab {
        let l = try makeLab(heartbeatLinks: heartbeatLinks)
        return l
    }

    /// 20 % of node-to-node frames dropped on the only heartbeat link for 40 s: nothing is
    /// stopped, restarted or moved, and no lease is lost (the benchmark runs it for minutes).
    func testRandomLossOnTheOnlyLinkChangesNothing() throws {
        let lab = try lab(heartbeatLinks: 1)
        let r = try Scenarios.loss(lab: lab, percent: 20, seconds: 40, links: [0])
        print("loss test: \(r) dropped_frames=\(r.droppedFrames)")
        XCTAssertGreaterThan(r.droppedFrames, 500, "the switch must really have dropped frames")
        XCTAssertEqual(r.leaseLosses, 0, "\(r)")
        XCTAssertEqual(r.restarts, 0, "\(r)")
        XCTAssertEqual(r.ownerChanges, 0, "\(r)")
    }

    /// The coordinator's node dies while the two others serve their addresses: they stop
    /// nothing, clients of their addresses see no gap beyond a few probe intervals, and the dead
    /// node's address answers elsewhere.
    func testCoordinatorDeathIsInvisibleToTheSurvivors() throws {
        let lab = try lab(heartbeatLinks: 2)
        let r = try Scenarios.coordinatorDeath(lab: lab)
        print("coordinator death: coordinator=node\(r.coordinator) gaps_ms=\(r.survivorGapMs) dead_coordinator_address_outage_ms=\(r.recoveredMs ?? -1)")
        XCTAssertEqual(r.survivorStops, [], "the survivors stopped something")
        for (node, gap) in r.survivorGapMs {
            // Pings every 10 ms; a generous bound for a loaded 2-core machine (the figure is in the README).
            XCTAssertLessThan(gap, 250, "node\(node)'s address had a gap of \(gap) ms")
        }
        let outage = try XCTUnwrap(r.recoveredMs, "the dead coordinator's address never answered elsewhere")
        XCTAssertLessThan(outage, 5000, "the dead coordinator's address was unreachable for \(outage) ms")
    }

    /// The owner's clusterd is stopped (SIGSTOP) for 5 s with its network up: its guardian
    /// removes the address at the lease deadline, before the majority adds it, so no ARP
    /// request is ever answered by two MACs; the majority serves it within the usual time.
    func testStalledOwnerIsNeverAnsweredByTwoMACs() throws {
        let lab = try lab(heartbeatLinks: 2)
        let r = try Scenarios.stalledOwner(lab: lab, seconds: 5)
        print("stall: \(r.arp) guardian_ms=\(r.guardianMs ?? -1) takeover_ms=\(r.takeoverMs ?? -1)")
        XCTAssertGreaterThan(r.arp.requests, 300)
        XCTAssertGreaterThan(r.arp.answered, r.arp.requests * 9 / 10, "the address must stay served: \(r.arp)")
        XCTAssertEqual(r.arp.dual, 0, "requests answered by two MACs: \(r.arp)")
        XCTAssertEqual(r.arp.macs.count, 2, "the address must have moved to another machine: \(r.arp)")
        let guardian = try XCTUnwrap(r.guardianMs, "the guardian never removed the address")
        let takeover = try XCTUnwrap(r.takeoverMs, "nobody took the address over")
        XCTAssertLessThan(guardian, takeover, "the stalled node's address must be gone before another adds it")
        XCTAssertLessThan(takeover, 3000)
        XCTAssertEqual(r.ownersAfter.count, 1, "after the stall: \(r.ownersAfter)")
    }

    /// The guardian runs beside every clusterd, with a real-time priority; if it dies, clusterd
    /// starts a new one, and the new one enforces the deadline (a stall right after still leaves
    /// no second owner).
    func testADeadGuardianIsRestartedAndStillGuards() throws {
        let lab = try lab(heartbeatLinks: 2)
        try Scenarios.startWithPerNodeAddresses(lab: lab)
        let old = try XCTUnwrap(lab.pids(in: 2, matching: "--guardian").first, "no guardian beside node2's clusterd")
        let sched = (try? String(contentsOfFile: "/proc/\(old)/stat", encoding: .utf8)) ?? ""
        // Field 41 (policy) after the command: SCHED_RR is 2.
        if let close = sched.lastIndex(of: ")") {
            let f = sched[sched.index(after: close)...].split(separator: " ")
            XCTAssertEqual(f.count > 38 ? f[38] : "", "2", "the guardian must run with SCHED_RR")
        }
        kill(old, SIGKILL)
        var fresh: pid_t?
        try lab.waitFor("a new guardian", timeout: 5) {
            fresh = lab.pids(in: 2, matching: "--guardian").first { $0 != old }
            return fresh != nil
        }
        XCTAssertTrue(lab.events(2).contains { $0.text.contains("guardian pid=\(old) died") }, "clusterd must log the guardian's death")
        // The new guardian has the deadline: stall clusterd, the address goes before anyone adds it.
        Thread.sleep(forTimeInterval: 0.5)
        let stopAt = Int(Lab.monoNowMs())
        lab.pause(2, true)
        try lab.waitFor("node2's address elsewhere", timeout: 10) { lab.owners(of: Scenarios.address(2)).contains { $0 != 2 } }
        lab.pause(2, false)
        let removed = try XCTUnwrap(lab.events(2).first { $0.mono >= stopAt && $0.text.hasPrefix("address-removed by=guardian") && $0.text.contains(Scenarios.address(2) + "/") },
                                    "the restarted guardian did not remove the address")
        let added = try XCTUnwrap(lab.allEvents().first { $0.mono >= stopAt && $0.node != "node2" && $0.text.hasPrefix("address-added") && $0.text.contains(Scenarios.address(2) + "/") })
        XCTAssertLessThan(removed.mono, added.mono)
    }
}
