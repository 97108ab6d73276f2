import XCTest
import VigilCore
import VigilTestKit

/// Leases that hold: loss, duplication-free reordering, coordinator death, stalled daemons and
/// clock rate differences, on virtual time with the invariants checked at every millisecond.
final class LeaseSimulationTests: XCTestCase {
    /// One address per node, so every node has something to lose.
    static let threeAddresses = (1...3).map { i in
        """
        [[ip]]
        name = "vip\(i)"
        address = "192.0.2.\(50 + i)/24"
        interface = "eth0"
        preferred = ["n\(i)"]
        """
    }.joined(separator: "\n")

    struct Counts: Equatable, CustomStringConvertible {
        var leaseLosses = 0, stops = 0, ownerChanges = 0, memberLost = 0, coordinatorChanges = 0
        var description: String {
            "lease_losses=\(leaseLosses) restarts=\(stops) owner_changes=\(ownerChanges) member_flaps=\(memberLost) coordinator_changes=\(coordinatorChanges)"
        }
    }

    static func counts(_ sim: SimCluster, since t0: UInt64) -> Counts {
        var c = Counts()
        for (t, _, e) in sim.events where t >= t0 {
            switch e {
            case .leaseLost: c.leaseLosses += 1
            case .peerLost: c.memberLost += 1
            case .coordinatorChanged: c.coordinatorChanges += 1
            default: break
            }
        }
        for a in sim.actions where a.0 >= t0 {
            if !a.3 { c.stops += 1 } else { c.ownerChanges += 1 }
        }
        return c
    }

    func settled(links: Int = 1, seed: UInt64 = 1, interval: Int = 100, timeout: Int = 400) throws -> SimCluster {
        var sim = try SimCluster(cluster: SimCluster.config(nodes: 3, links: links, interval: interval, timeout: timeout),
                                 resources: Self.threeAddresses, seed: seed)
        let t = sim.run(until: 5000) { s in (1...3).allSatisfy { s.holders(of: "vip\($0)") == [UInt32($0)] } }
        XCTAssertNotNil(t, "addresses never settled")
        sim.run(1000)
        return sim
    }

    func testMeasureLoss() throws {
        for loss in [0.05, 0.2, 0.3] {
            var sim = try settled(seed: 7, interval: 50, timeout: 400)
            let t0 = sim.now
            sim.setAll(loss: loss, delay: 1, jitter: 2)
            sim.run(120_000)
            print("loss=\(loss) \(Self.counts(sim, since: t0)) violations=\(sim.violations.count)")
        }
    }
}
