import XCTest
@preconcurrency import Crypto
import VigilCore
import VigilWire

final class EnvelopeTests: XCTestCase {
    let key = makeKey(Array(repeating: 7, count: 32))
    let cid = Envelope.clusterId("lab")
    func header(seq: UInt64 = 1) -> Envelope.Header {
        Envelope.Header(kind: 1, link: 0, clusterId: cid, sender: 2, incarnation: 10, seq: seq)
    }
    let msg = Message.heartbeat(Heartbeat(sentAt: 5, vote: 1, held: ["vip"]))

    func testSealedPacketOpens() throws {
        let p = Envelope.seal(msg, header: header(), key: key)
        guard case .success(let (h, m)) = Envelope.open(p, key: key, clusterId: cid) else { return XCTFail() }
        XCTAssertEqual(h, header())
        XCTAssertEqual(m, msg)
    }

    func testWrongKeyAndEveryFlippedBitAreRejected() {
        let p = Envelope.seal(msg, header: header(), key: key)
        XCTAssertEqual(Envelope.open(p, key: makeKey(Array(repeating: 8, count: 32)), clusterId: cid).failureValue, .badMAC)
        for i in 6..<p.count {
            var q = p
            q[i] ^= 0x01
            XCTAssertNotNil(Envelope.open(q, key: key, clusterId: cid).failureValue, "flip at \(i) accepted")
        }
    }

    func testOtherProtocolVersionIsReportedNotMisread() {
        var p = Envelope.seal(msg, header: header(), key: key)
        p[5] = 9
        XCTAssertEqual(Envelope.open(p, key: key, clusterId: cid).failureValue, .incompatibleVersion(9))
        XCTAssertEqual(Envelope.open(Array("hello world".utf8), key: key, clusterId: cid).failureValue, .notVigil)
        XCTAssertEqual(Envelope.open([1, 2], key: key, clusterId: cid).failureValue, .tooShort)
    }

    func testOtherClusterIsRejected() {
        let p = Envelope.seal(msg, header: header(), key: key)
        XCTAssertEqual(Envelope.open(p, key: key, clusterId: cid &+ 1).failureValue, .foreignCluster(cid))
    }

    func testReplayGuard() {
        var g = ReplayGuard()
        XCTAssertTrue(g.accept(sender: 2, link: 0, incarnation: 10, seq: 1))
        XCTAssertFalse(g.accept(sender: 2, link: 0, incarnation: 10, seq: 1), "exact replay")
        XCTAssertTrue(g.accept(sender: 2, link: 1, incarnation: 10, seq: 1), "same packet on the other link")
        XCTAssertTrue(g.accept(sender: 2, link: 0, incarnation: 10, seq: 5))
        XCTAssertFalse(g.accept(sender: 2, link: 0, incarnation: 10, seq: 3), "older sequence")
        XCTAssertTrue(g.accept(sender: 2, link: 0, incarnation: 11, seq: 1), "restart")
        XCTAssertFalse(g.accept(sender: 2, link: 1, incarnation: 10, seq: 99), "previous incarnation")
    }
}

extension Result {
    var failureValue: Failure? {
        if case .failure(let f) = self { return f }
        return nil
    }
}
