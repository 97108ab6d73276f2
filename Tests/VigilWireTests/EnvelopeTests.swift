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
    let msg = Message.heartbeat(Heartbeat(sentAt: 5, vote: NodeID(rawValue: 1), held: ["vip"]))

    func testSealedPacketOpens() throws {
        let p = Envelope.seal(msg, header: header(), key: key)
        guard case .success(let (h, m)) = Envelope.open(p, key: key, clusterId: cid) else { return XCTFail() }
        XCTAssertEqual(h, header())
        XCTAssertEqual(m, msg)
    }

    /// The packet MAC is HMAC-SHA256: RFC 4231 test cases 1, 2 and 6 (a key longer than a
    /// block), and swift-crypto's HMAC for the key sizes Vigil uses and many message lengths.
    func testPacketMACIsHMACSHA256() {
        func hex(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined() }
        let cases: [([UInt8], [UInt8], String)] = [
            (Array(repeating: 0x0b, count: 20), Array("Hi There".utf8),
             "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
            (Array("Jefe".utf8), Array("what do ya want for nothing?".utf8),
             "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
            (Array(repeating: 0xaa, count: 131), Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8),
             "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
        ]
        for (k, m, want) in cases {
            XCTAssertEqual(hex(PacketAuthenticator(key: makeKey(k)).mac(of: m)), want)
        }
        for keyLength in [16, 32, 64, 65, 200] {
            let k = SymmetricKey(data: (0..<keyLength).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
            let a = PacketAuthenticator(key: k)
            for n in [0, 1, 55, 56, 63, 64, 65, 300, 1500] {
                let m = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 13) }
                XCTAssertEqual(a.mac(of: m), Array(HMAC<SHA256>.authenticationCode(for: m, using: k)), "key \(keyLength) message \(n)")
            }
        }
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
