import XCTest
import VigilCore
import VigilTestKit

/// The lease machine on its own: promises, echoes, ceasing, final withdrawals, refusals, epochs.
final class SupportLedgerTests: XCTestCase {
    let params = SupportLedger.Params(duration: 400, startQuiet: 500)

    func ledger(_ id: NodeID, inc: UInt64 = 1, now: UInt64 = 0) -> SupportLedger {
        SupportLedger(selfId: id, peers: [1, 2, 3], incarnation: inc, params: params, now: now)
    }

    func testNothingIsSupportedDuringTheStartQuiet() {
        var p = ledger(2)
        p.heard(from: 1, epoch: 77, sentAt: 10, now: 499)
        XCTAssertEqual(p.echo(for: 1).epoch, 0, "a node that just started has forgotten its promises")
        p.heard(from: 1, epoch: 77, sentAt: 20, now: 500)
        XCTAssertEqual(p.echo(for: 1).epoch, 77)
        XCTAssertEqual(p.echo(for: 1).sentAt, 20)
    }

    func testLeaseNeedsAMajorityOfPromisesAndCountsFromTheHoldersSendTime() {
        var h = ledger(1)
        XCTAssertEqual(h.leaseEnd(majority: 2), 0)
        // Peer 2 echoes our send time 1000: its promise ends at 1000 + D(1 - rho) on our clock.
        h.report(from: 2, supportEpoch: h.epoch, supportEcho: 1000, refused: 0, withdrawals: [:], epochsSeen: [:], now: 1010)
        XCTAssertEqual(h.leaseEnd(majority: 2), 1000 + 400 - 1)
        XCTAssertEqual(h.leaseEnd(majority: 3), 0, "five nodes need two supporters")
        // An older echo never shortens what a newer one gave.
        h.report(from: 2, supportEpoch: h.epoch, supportEcho: 900, refused: 0, withdrawals: [:], epochsSeen: [:], now: 1020)
        XCTAssertEqual(h.leaseEnd(majority: 2), 1399)
        // Echoes of another epoch, or from our future, count for nothing.
        h.report(from: 3, supportEpoch: h.epoch + 1, supportEcho: 2000, refused: 0, withdrawals: [:], epochsSeen: [:], now: 2100)
        h.report(from: 3, supportEpoch: h.epoch, supportEcho: 9000, refused: 0, withdrawals: [:], epochsSeen: [:], now: 2100)
        XCTAssertEqual(h.leaseEnd(majority: 2), 1399)
        XCTAssertEqual(ledger(1).leaseEnd(majority: 1), UInt64.max, "a one-node cluster needs nobody")
    }

    func testWithdrawalWaitsForThePromiseAndOnlyWhenAMajorityLostTheNode() {
        var p = ledger(2)
        p.heard(from: 1, epoch: 77, sentAt: 5, now: 1000)
        // Not a member, but the majority still has it: no ceasing (loss between one pair).
        XCTAssertEqual(p.update(now: 1400, member: { _ in false }, lostByMajority: { _ in false }), [])
        XCTAssertEqual(p.echo(for: 1).epoch, 77)
        // A majority lost it: cease now, final only after D(1+rho) since the last acceptance.
        XCTAssertEqual(p.update(now: 1400, member: { $0 != 1 }, lostByMajority: { $0 == 1 }), [.ceasing(1)])
        p.heard(from: 1, epoch: 77, sentAt: 6, now: 1401)
        XCTAssertEqual(p.echo(for: 1).epoch, 0, "while ceasing nothing is accepted or echoed")
        XCTAssertEqual(p.update(now: 1401, member: { $0 != 1 }, lostByMajority: { $0 == 1 }), [])
        XCTAssertEqual(p.update(now: 1402, member: { $0 != 1 }, lostByMajority: { $0 == 1 }), [.withdrew(1, upTo: 77)], "D + D*rho rounded up + 1 after the last acceptance")
        XCTAssertEqual(p.withdrawals, [1: 77])
        // Final: that epoch is never supported again; a newer one is.
        p.heard(from: 1, epoch: 77, sentAt: 7, now: 1500)
        XCTAssertEqual(p.echo(for: 1).epoch, 0)
        p.heard(from: 1, epoch: 78, sentAt: 8, now: 1500)
        XCTAssertEqual(p.echo(for: 1).epoch, 78)
    }

    func testCeasingIsCancelledWhenTheNodeIsBackBeforeTheWithdrawalIsFinal() {
        var p = ledger(2)
        p.heard(from: 1, epoch: 77, sentAt: 5, now: 1000)
        _ = p.update(now: 1300, member: { _ in false }, lostByMajority: { _ in true })
        XCTAssertEqual(p.update(now: 1350, member: { _ in true }, lostByMajority: { _ in false }), [.resumed(1)])
        p.heard(from: 1, epoch: 77, sentAt: 9, now: 1360)
        XCTAssertEqual(p.echo(for: 1).sentAt, 9)
        XCTAssertNil(p.withdrawn(1))
    }

    func testWithdrawalsOthersReportAreRefusedHereAndToldToTheHolder() {
        var p = ledger(2)
        p.heard(from: 1, epoch: 77, sentAt: 5, now: 1000)
        p.report(from: 3, supportEpoch: 0, supportEcho: 0, refused: 0, withdrawals: [1: 77], epochsSeen: [1: 77], now: 1001)
        XCTAssertEqual(p.echo(for: 1).epoch, 0, "a restarted supporter must not revive a withdrawn epoch")
        XCTAssertEqual(p.refused(1), 77)
        XCTAssertNil(p.withdrawn(1), "a refusal is not our own withdrawal: the coordinator must not count it")
        var h = ledger(1)
        h.report(from: 2, supportEpoch: h.epoch, supportEcho: 10, refused: h.epoch, withdrawals: [:], epochsSeen: [:], now: 20)
        XCTAssertTrue(h.currentEpochWithdrawn)
        XCTAssertEqual(h.leaseEnd(majority: 2), 0)
    }

    func testEpochsGrowAcrossLivesAndWithinOne() {
        var a = ledger(1, inc: 5)
        let first = a.epoch
        a.newEpoch()
        XCTAssertEqual(a.epoch, first + 1)
        XCTAssertGreaterThan(ledger(1, inc: 6).epoch, a.epoch, "a new incarnation starts above every epoch of the last")
        XCTAssertEqual(SupportLedger.firstEpoch(incarnation: UInt64.max) & 0xFF_FFFF, 1, "no trap on a damaged incarnation")
    }

    /// The epochs reported in every heartbeat are kept, not rebuilt: after any sequence of
    /// heartbeats, reports and new epochs they are ours and every peer's highest seen.
    func testEpochsSeenFollowEverythingThatShowsAnEpoch() {
        for seed in UInt64(1)...40 {
            var rng = SplitMix64(seed: seed)
            var l = SupportLedger(selfId: 2, peers: [1, 2, 3, 4, 5], incarnation: seed, params: params, now: 0)
            var now: UInt64 = 600
            for _ in 0..<60 {
                now += UInt64.random(in: 1...50, using: &rng)
                let peer = NodeID.n(Int.random(in: 1...5, using: &rng))
                let epoch = UInt64.random(in: 0...9, using: &rng)
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: l.heard(from: peer, epoch: epoch, sentAt: PeerTime(sentBy: now), now: now)
                case 1: l.report(from: peer, supportEpoch: 0, supportEcho: 0, refused: 0, withdrawals: [:],
                                 epochsSeen: [NodeID.n(Int.random(in: 1...5, using: &rng)): epoch == 9 ? .max : epoch], now: now)
                case 2: l.newEpoch()
                default: _ = l.update(now: now, member: { _ in true }, lostByMajority: { _ in false })
                }
                var expected: [NodeID: UInt64] = [l.selfId: l.epoch]
                for (id, p) in l.peers where p.highestSeen > 0 { expected[id] = p.highestSeen }
                XCTAssertEqual(l.epochsSeen, expected, "seed \(seed)")
            }
        }
    }

    /// The lease's end is the promise of the `majority - 1`-th best supporter: the same as taking
    /// it from the promises sorted, for every count of promises and every majority.
    func testLeaseEndIsTheNeededBestPromise() {
        for seed in UInt64(1)...200 {
            var rng = SplitMix64(seed: seed)
            var h = SupportLedger(selfId: 1, peers: (1...9).map { NodeID.n($0) }, incarnation: 1, params: params, now: 0)
            for peer in 2...9 where Bool.random(using: &rng) {
                // Few distinct send times, so that equal promises occur.
                let echo = UInt64.random(in: 1...4, using: &rng) * 100
                h.report(from: NodeID.n(peer), supportEpoch: h.epoch, supportEcho: echo, refused: 0,
                         withdrawals: [:], epochsSeen: [:], now: 1000)
            }
            let sorted = h.promises.values.sorted(by: >)
            for majority in 2...9 {
                let need = majority - 1
                XCTAssertEqual(h.leaseEnd(majority: majority), sorted.count >= need ? sorted[need - 1] : 0, "seed \(seed) majority \(majority)")
            }
        }
    }
}
