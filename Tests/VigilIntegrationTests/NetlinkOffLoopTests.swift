import Foundation
import Glibc
import XCTest
import VigilCore
@testable import VigilSystem
@testable import VigilDaemon

/// Hardening finding 10: rtnetlink carries out a request inside `send`, waiting for the kernel's
/// `rtnl_lock`, which other processes can hold for seconds. The loop that carries heartbeats
/// must keep its rhythm while an address add, remove or dump is stuck there. The stand-in below
/// stalls inside the calls as the kernel would; everything else (the loop, the netlink thread,
/// the results' path back) is the daemon's own. Needs no privileges.
final class NetlinkOffLoopTests: XCTestCase {
    /// Stalls every call by `stall` seconds and records what was asked.
    final class StallingNetlink: AddressBackend, @unchecked Sendable {
        let lock = NSLock()
        var stall: Double
        var calls: [String] = []
        var present: Set<IPAddress> = []
        var failList = false
        var failRemove = false
        init(stall: Double) { self.stall = stall }
        private func record(_ s: String) {
            lock.lock()
            calls.append(s)
            let d = stall
            lock.unlock()
            Thread.sleep(forTimeInterval: d)
        }
        func add(_ prefix: IPPrefix, interface: String) throws {
            record("add \(prefix.address)")
            lock.lock(); present.insert(prefix.address); lock.unlock()
        }
        func remove(_ prefix: IPPrefix, interface: String) throws {
            record("remove \(prefix.address)")
            lock.lock(); let fail = failRemove; lock.unlock()
            if fail { throw SystemError("remove \(prefix) from \(interface)", errno: EBUSY) }
            lock.lock(); present.remove(prefix.address); lock.unlock()
        }
        func removeIfOurs(_ prefix: IPPrefix, interface: String) throws {
            record("remove-if-ours \(prefix.address)")
            lock.lock(); present.remove(prefix.address); lock.unlock()
        }
        func list() throws -> [AddressManager.Found] {
            record("list")
            lock.lock(); defer { lock.unlock() }
            if failList { throw SystemError("netlink receive (list addresses)", errno: EAGAIN) }
            return present.map { AddressManager.Found(address: $0, prefixLength: 32, ifindex: 1, proto: AddressManager.proto, label: nil) }
        }
        var snapshot: [String] { lock.lock(); defer { lock.unlock() }; return calls }
    }

    /// Two addresses on `lo` (present and up in any namespace), announcements off.
    func definitions() throws -> ResourceSet {
        let cluster = try ClusterConfig.parse("""
            [cluster]
            name = "offloop"
            key_file = "/nonexistent/authkey"
            [[link]]
            port = 5405
            [[node]]
            name = "a"
            id = 1
            addresses = ["192.0.2.1"]
            """, file: "cluster.toml")
        return try ResourceSet.parse("""
            [[ip]]
            name = "one"
            address = "198.18.7.1/32"
            interface = "lo"
            announce_count = 0
            monitor_interval_ms = 1000
            [[ip]]
            name = "two"
            address = "198.18.7.2/32"
            interface = "lo"
            announce_count = 0
            monitor_interval_ms = 1000
            """, file: "resources.toml", cluster: cluster)
    }

    /// A loop, a stand-in netlink stalling `stall` s per call, and the two addresses defined.
    func setUp(stall: Double) throws -> (Reactor, StallingNetlink, FloatingIPs) {
        let reactor = try Reactor()
        let nl = StallingNetlink(stall: stall)
        let ips = try FloatingIPs(nodeName: "a", log: EventLog(node: "a"), reactor: reactor, backend: nl, watchEvents: false)
        ips.setDefinitions(try definitions())
        return (reactor, nl, ips)
    }

    struct Run {
        var maxGapMs: UInt64 = 0
        var outcomes: [[FloatingIPs.Outcome]] = []
        var heldWhileInFlight = true
        var vanished: [String] = []
    }

    /// Runs a loop with a 10 ms timer until `done` says so (or 10 s passed), calling `step`
    /// with the time since the start on every timer round.
    func runLoop(_ ips: FloatingIPs, reactor: Reactor, step: @escaping (UInt64, inout Run) -> Void,
                 done: @escaping (Run) -> Bool) -> Run {
        var run = Run()
        let t0 = MonotonicClock.nowMs()
        var last = t0
        var next = t0
        reactor.nextWake = { next }
        ips.onResults = { run.outcomes.append($0) }
        ips.onVanished = { name, _ in run.vanished.append(name) }
        reactor.onTick = {
            let now = MonotonicClock.nowMs()
            run.maxGapMs = max(run.maxGapMs, now - last)
            last = now
            next = now + 10
            step(now - t0, &run)
            if done(run) || now - t0 > 10_000 { reactor.stop() }
        }
        reactor.run()
        return run
    }

    func testTheLoopKeepsItsRhythmWhileNetlinkStalls() throws {
        let (reactor, nl, ips) = try setUp(stall: 0.8)
        var asked = false
        let run = runLoop(ips, reactor: reactor, step: { _, run in
            if !asked {
                asked = true
                XCTAssertNil(ips.start("one", until: .max))
                XCTAssertNil(ips.start("two", until: .max))
                // Held from the moment it is asked for: the guardian is armed before the add.
                run.heldWhileInFlight = ips.holdsAny
            } else if run.outcomes.isEmpty {
                run.heldWhileInFlight = run.heldWhileInFlight && ips.holdsAny
            }
        }, done: { !$0.outcomes.isEmpty })
        // Two adds of 0.8 s each: 1.6 s in the kernel; the loop never waited for them.
        XCTAssertEqual(run.outcomes.count, 1, "both results come back in one batch")
        XCTAssertEqual(run.outcomes.first?.map(\.request.name), ["one", "two"])
        XCTAssertEqual(run.outcomes.first?.compactMap(\.error), [])
        XCTAssertLessThan(run.maxGapMs, 400, "a timer round of the loop waited for netlink")
        XCTAssertTrue(run.heldWhileInFlight)
        XCTAssertEqual(Set(ips.active.keys), ["one", "two"])
        XCTAssertEqual(nl.snapshot, ["add 198.18.7.1", "add 198.18.7.2"])
        ips.stopAll()
    }

    func testNothingIsAddedOnceTheLeaseRanOutWhileTheRequestWaited() throws {
        let (reactor, nl, ips) = try setUp(stall: 0.5)
        var asked = false
        let run = runLoop(ips, reactor: reactor, step: { _, _ in
            guard !asked else { return }
            asked = true
            let now = MonotonicClock.nowMs()
            XCTAssertNil(ips.start("one", until: .max))
            // Its lease ends while the first add is still stuck in the kernel.
            XCTAssertNil(ips.start("two", until: now + 200))
        }, done: { !$0.outcomes.isEmpty })
        let results = run.outcomes.flatMap { $0 }
        XCTAssertEqual(results.map(\.request.name), ["one", "two"])
        XCTAssertNil(results.first?.error)
        XCTAssertTrue(results.last?.error?.contains("lease ran out") ?? false, "\(results)")
        XCTAssertEqual(nl.snapshot, ["add 198.18.7.1"], "an add past the lease reached the kernel")
        XCTAssertEqual(Set(ips.active.keys), ["one"])
        XCTAssertTrue(ips.holdsAny)
        ips.stopAll()
        XCTAssertFalse(ips.holdsAny)
        XCTAssertEqual(nl.snapshot.last, "remove 198.18.7.1")
    }

    /// The add itself is held by the kernel past the lease (and so past the guardian's sweep):
    /// the netlink thread takes it off again at once, and the start is reported failed.
    func testAnAddThatLandsAfterTheLeaseIsTakenOffAgain() throws {
        let (reactor, nl, ips) = try setUp(stall: 0.4)
        var asked = false
        let run = runLoop(ips, reactor: reactor, step: { _, _ in
            guard !asked else { return }
            asked = true
            XCTAssertNil(ips.start("one", until: MonotonicClock.nowMs() + 200))
        }, done: { !$0.outcomes.isEmpty })
        let r = try XCTUnwrap(run.outcomes.first?.first)
        XCTAssertTrue(r.error?.contains("removed again") ?? false, "\(r)")
        XCTAssertEqual(nl.snapshot, ["add 198.18.7.1", "remove 198.18.7.1"])
        XCTAssertTrue(ips.active.isEmpty)
        XCTAssertFalse(ips.holdsAny)
    }

    /// A removal that fails leaves the address counted as held (the guardian stays armed) and
    /// the stop reported failed; a later stop tries again.
    func testAFailedRemovalKeepsTheAddressHeld() throws {
        let (reactor, nl, ips) = try setUp(stall: 0.05)
        var phase = 0
        let run = runLoop(ips, reactor: reactor, step: { _, run in
            switch phase {
            case 0:
                phase = 1
                XCTAssertNil(ips.start("one", until: .max))
            case 1 where run.outcomes.count == 1:
                phase = 2
                nl.lock.lock(); nl.failRemove = true; nl.lock.unlock()
                ips.stop("one")
            case 2 where run.outcomes.count == 2:
                phase = 3
                XCTAssertTrue(ips.holdsAny, "a failed removal must keep the guardian armed")
                nl.lock.lock(); nl.failRemove = false; nl.lock.unlock()
                ips.stop("one")
            default: break
            }
        }, done: { $0.outcomes.count == 3 })
        let results = run.outcomes.flatMap { $0 }
        XCTAssertEqual(results.count, 3)
        XCTAssertNotNil(results[1].error)
        XCTAssertNil(results[2].error)
        XCTAssertFalse(ips.holdsAny)
        XCTAssertEqual(nl.snapshot, ["add 198.18.7.1", "remove 198.18.7.1", "remove 198.18.7.1"])
    }

    func testAStopWhileTheAddIsInFlightWinsAndTheDumpWaitsItsTurn() throws {
        let (reactor, nl, ips) = try setUp(stall: 0.3)
        var phase = 0
        let run = runLoop(ips, reactor: reactor, step: { ms, run in
            switch phase {
            case 0:
                phase = 1
                XCTAssertNil(ips.start("one", until: .max))
                XCTAssertNil(ips.start("two", until: .max))
            case 1 where ms > 50:
                // Asked while the adds are still in the kernel.
                phase = 2
                ips.stop("one")
            case 2 where run.outcomes.count == 2:
                // Both settled: "two" is held. It vanishes behind our back; the monitor's dump
                // (on the netlink thread too) notices; a failing dump says nothing.
                phase = 3
                nl.lock.lock(); nl.present.remove(IPAddress("198.18.7.2")!); nl.failList = true; nl.lock.unlock()
                _ = ips.monitor(now: MonotonicClock.nowMs() + 2000)
            case 3 where nl.snapshot.last == "list" && ms > 1500:
                phase = 4
                nl.lock.lock(); nl.failList = false; nl.lock.unlock()
                _ = ips.monitor(now: MonotonicClock.nowMs() + 4000)
            default: break
            }
        }, done: { !$0.vanished.isEmpty })
        XCTAssertEqual(run.outcomes.count, 2)
        XCTAssertEqual(run.outcomes.flatMap { $0 }.map(\.isStart), [true, true, false])
        XCTAssertEqual(Set(ips.active.keys), ["two"], "the later stop must settle 'one'")
        XCTAssertEqual(run.vanished, ["two"], "only the address that vanished, and only from a dump that worked")
        XCTAssertEqual(nl.snapshot.filter { $0 == "list" }.count, 2)
        XCTAssertLessThan(run.maxGapMs, 250)
        ips.stopAll()
    }
}
