import XCTest
@preconcurrency import Crypto
import VigilCore
import VigilWire

final class EnvelopeTests: XCTestCase {
    let key = makeKey(Array(repeating: 7, count: 32))
    let cid = Envelope.clusterId("lab")
    func header(seq: UInt64 = 1, to recipient: UInt32 = 1, recipientIncarnation: UInt64 = 20, link: UInt8 = 0) -> Envelope.Header {
        Envelope.Header(kind: 1, link: link, clusterId: cid, sender: 2, incarnation: 10, seq: seq, recipient: recipient, recipientIncarnation: recipientIncarnation)
    }
    /// Node 1 in incarnation 20, reading link 0.
    let here = Envelope.Destination(node: 1, incarnation: 20, link: 0)
    let msg = Message.heartbeat(Heartbeat(sentAt: 5, vote: NodeID(rawValue: 1), held: ["vip"]))

    func testSealedPacketOpens() throws {
        let p = Envelope.seal(msg, header: header(), key: key)
        guard case .success(let (h, m)) = Envelope.open(p, key: key, clusterId: cid, at: here) else { return XCTFail() }
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
        XCTAssertEqual(Envelope.open(p, key: makeKey(Array(repeating: 8, count: 32)), clusterId: cid, at: here).failureValue, .badMAC)
        for i in 6..<p.count {
            var q = p
            q[i] ^= 0x01
            XCTAssertNotNil(Envelope.open(q, key: key, clusterId: cid, at: here).failureValue, "flip at \(i) accepted")
        }
    }

    func testOtherProtocolVersionIsReportedNotMisread() {
        var p = Envelope.seal(msg, header: header(), key: key)
        p[5] = 9
        XCTAssertEqual(Envelope.open(p, key: key, clusterId: cid, at: here).failureValue, .incompatibleVersion(9))
        XCTAssertEqual(Envelope.open(Array("hello world".utf8), key: key, clusterId: cid, at: here).failureValue, .notVigil)
        XCTAssertEqual(Envelope.open([1, 2], key: key, clusterId: cid, at: here).failureValue, .tooShort)
    }

    /// A rolling upgrade: the previous version is accepted for one release (and says so in the
    /// header, so the node answers in it); one version further back is not. A heartbeat that
    /// claims version 7 but is a history message (which version 7 does not know) is no version-7 packet.
    func testThePreviousVersionIsAcceptedForOneRelease() throws {
        var h = header()
        h.version = Envelope.previousVersion
        let p = Envelope.seal(msg, header: h, key: key)
        let opened = try XCTUnwrap(Envelope.open(p, key: key, clusterId: cid, at: here).successValue)
        XCTAssertEqual(opened.0.version, Envelope.previousVersion)
        XCTAssertEqual(opened.1, msg)
        h.version = Envelope.previousVersion - 1
        XCTAssertEqual(Envelope.open(Envelope.seal(msg, header: h, key: key), key: key, clusterId: cid, at: here).failureValue,
                       .incompatibleVersion(Envelope.previousVersion - 1))
        // Version 8 added the history kinds: a packet claiming 7 that carries one is no
        // version-7 packet; at 8 it opens.
        let ask = Message.historyRequest(requestId: 1, after: 0, sinceWallMs: 0, sentAt: 9)
        h.version = Envelope.previousVersion
        XCTAssertNotNil(Envelope.open(Envelope.seal(ask, header: h, key: key), key: key, clusterId: cid, at: here).failureValue)
        h.version = Envelope.protocolVersion
        let current = try XCTUnwrap(Envelope.open(Envelope.seal(ask, header: h, key: key), key: key, clusterId: cid, at: here).successValue)
        XCTAssertEqual(current.1, ask)
        // Migration lines (version 7) pass at 7.
        var beat = Heartbeat(sentAt: 5, configVersion: 3)
        beat.migration = [MigrationEntry(resource: "vm", kind: .migrateTo, node: NodeID(rawValue: 2)!)]
        h.version = Envelope.previousVersion
        let older = try XCTUnwrap(Envelope.open(Envelope.seal(.heartbeat(beat), header: h, key: key), key: key, clusterId: cid, at: here).successValue)
        guard case .heartbeat(let back) = older.1 else { return XCTFail("not a heartbeat") }
        XCTAssertEqual(back.migration, beat.migration)
    }

    func testOtherClusterIsRejected() {
        let p = Envelope.seal(msg, header: header(), key: key)
        XCTAssertEqual(Envelope.open(p, key: key, clusterId: cid &+ 1, at: here).failureValue, .foreignCluster(cid))
    }

    /// Issue 9, finding 2: a packet is valid only at its recipient, in the recipient's life the
    /// sender knew (or before it knew any), and on the link it was sent on.
    func testPacketsAreBoundToRecipientIncarnationAndLink() {
        let p = Envelope.seal(msg, header: header(), key: key)
        let atNode3 = Envelope.Destination(node: 3, incarnation: 20, link: 0)
        XCTAssertEqual(Envelope.open(p, key: key, clusterId: cid, at: atNode3).failureValue, .otherRecipient(1, 20), "a heartbeat from 2 to 1 accepted at 3")
        let restarted = Envelope.Destination(node: 1, incarnation: 21, link: 0)
        XCTAssertEqual(Envelope.open(p, key: key, clusterId: cid, at: restarted).failureValue, .otherRecipient(1, 20), "a packet for a previous life accepted")
        let otherLink = Envelope.Destination(node: 1, incarnation: 20, link: 1)
        XCTAssertEqual(Envelope.open(p, key: key, clusterId: cid, at: otherLink).failureValue, .otherLink(0), "a link-0 packet accepted on link 1")
        let first = Envelope.seal(msg, header: header(recipientIncarnation: 0), key: key)
        XCTAssertNotNil(Envelope.open(first, key: key, clusterId: cid, at: restarted).successValue, "before the sender heard the recipient")
        XCTAssertEqual(Envelope.open(first, key: key, clusterId: cid, at: atNode3).failureValue, .otherRecipient(1, 0))
        // The recipient fields are under the MAC: rewriting them breaks it.
        for i in 32..<44 {
            var q = p
            q[i] ^= 0x01
            XCTAssertEqual(Envelope.open(q, key: key, clusterId: cid, at: here).failureValue, .badMAC, "byte \(i)")
        }
    }

    /// Issue 9, finding 3: a datagram longer than any node sends, or whose length field does not
    /// match, is dropped before any MAC is computed.
    func testOversizeAndMislabelledDatagramsAreDroppedBeforeTheMAC() {
        var p = Envelope.seal(msg, header: header(), key: key)
        p += [UInt8](repeating: 0, count: Envelope.maxPacket)
        XCTAssertEqual(Envelope.open(p, key: key, clusterId: cid, at: here).failureValue, .tooLong)
        var q = Envelope.seal(msg, header: header(), key: key)
        q.append(0)
        XCTAssertEqual(Envelope.open(q, key: key, clusterId: cid, at: here).failureValue, .badLength)
        let big = Message.configData(version: 1, digest: 2, offset: 0, total: UInt32(Message.maxChunk), chunk: [UInt8](repeating: 65, count: Message.maxChunk),
                                     standby: (0..<32).map { String(repeating: "n", count: 28) + "\($0)" })
        let sealed = Envelope.seal(big, header: header(), key: key)
        XCTAssertLessThanOrEqual(sealed.count, Envelope.maxPacket, "the largest message a node sends must pass")
        XCTAssertNotNil(Envelope.open(sealed, key: key, clusterId: cid, at: here).successValue)
    }

    /// Issue 9, finding 5: configuration messages (agents' passwords) are encrypted, a
    /// configuration message in clear is refused, and `encryption = "all"` refuses any clear one.
    func testConfigurationMessagesAreEncryptedAndClearOnesRefused() throws {
        let text = "[[resource]]\nname = \"db\"\nparams = { password = \"hunter2-secret\" }\n"
        let config = Message.configData(version: 3, digest: 9, offset: 0, total: UInt32(text.utf8.count), chunk: Array(text.utf8), standby: [])
        let sealed = Envelope.seal(config, header: header(), key: key)
        XCTAssertEqual(sealed[6], 3 | Envelope.encryptedFlag)
        XCTAssertNil(sealed.firstRange(of: Array("hunter2".utf8)), "the password is readable on the wire")
        guard case .success(let (h, m)) = Envelope.open(sealed, key: key, clusterId: cid, at: here) else { return XCTFail("does not open") }
        XCTAssertEqual(m, config)
        XCTAssertEqual(h.kind, 3)

        // The same message sealed in clear (an old or hostile sender holding the key): refused.
        var clearHeader = header()
        clearHeader.kind = 3
        let clear = Envelope.seal(payload: config.encodePayload(), header: clearHeader, authenticator: PacketAuthenticator(key: key))
        XCTAssertEqual(Envelope.open(clear, key: key, clusterId: cid, at: here).failureValue, .notEncrypted(3))

        // Heartbeats travel in clear by default, and are refused in clear under "all".
        let hb = Envelope.seal(msg, header: header(), key: key)
        XCTAssertEqual(hb[6], 1)
        let all = Envelope.Policy(clusterKey: key, encryptAll: true)
        XCTAssertEqual(Envelope.open(hb, authenticator: PacketAuthenticator(key: key), policy: all, clusterId: cid, at: here).failureValue, .notEncrypted(1))
        let hbSealed = Envelope.seal(payload: msg.encodePayload(), header: header(), authenticator: PacketAuthenticator(key: key), cipher: all.cipher)
        XCTAssertEqual(Envelope.open(hbSealed, authenticator: PacketAuthenticator(key: key), policy: all, clusterId: cid, at: here).successValue?.1, msg)

        // Encrypted under another key (the MAC aside): does not decrypt.
        let other = Envelope.Policy(clusterKey: makeKey(Array(repeating: 9, count: 32)))
        XCTAssertEqual(Envelope.open(sealed, authenticator: PacketAuthenticator(key: key), policy: other, clusterId: cid, at: here).failureValue, .undecryptable)
        // The key depends on the sender's life: the same bytes under another incarnation are garbage.
        var otherLife = header()
        otherLife.incarnation = 11
        let a = Envelope.seal(config, header: header(), key: key)
        let b = Envelope.seal(config, header: otherLife, key: key)
        XCTAssertNotEqual(Array(a[48..<(a.count - 32)]), Array(b[48..<(b.count - 32)]))
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

extension Result {
    var successValue: Success? {
        if case .success(let s) = self { return s }
        return nil
    }
}
