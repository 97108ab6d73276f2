import XCTest
import VigilCore

/// Hostile and unusual files: refused with a clear error, never a crash (issue 9, finding 1).
final class HostileInputTests: XCTestCase {
    let cluster = """
        [cluster]
        name = "web"
        key_file = "/etc/vigil/authkey"

        [[link]]
        port = 5405

        [[node]]
        name = "a"
        id = 1
        addresses = ["192.0.2.1"]
        [[node]]
        name = "b"
        id = 2
        addresses = ["192.0.2.2"]
        [[node]]
        name = "c"
        id = 3
        addresses = ["192.0.2.3"]
        """

    /// 29,000 nested brackets (58 KB, under the resources file limit) used to overflow the
    /// reader's stack in `clusterd --check-config`, `hactl apply` and every peer.
    func testDeepNestingIsRefusedNotACrash() throws {
        let c = try ClusterConfig.parse(cluster, file: "cluster.toml")
        let n = 29_000
        for text in [
            "x = " + String(repeating: "[", count: n) + String(repeating: "]", count: n) + "\n",
            "x = " + String(repeating: "{ a = ", count: n / 6) + "1" + String(repeating: " }", count: n / 6) + "\n",
            "x = " + String(repeating: "[", count: n) + "\n",
        ] {
            XCTAssertThrowsError(try ResourceSet.parse(text, file: "resources.toml", cluster: c)) { e in
                XCTAssertTrue("\(e)".contains("nested more than 32 deep"), "\(e)")
                XCTAssertTrue("\(e)".contains("resources.toml:1"), "\(e)")
            }
            XCTAssertThrowsError(try ClusterConfig.parse(cluster + "\n[extra]\n" + text, file: "cluster.toml"))
        }
        // 32 levels are fine (and rejected only as an unknown key).
        let ok = "x = " + String(repeating: "[", count: 32) + String(repeating: "]", count: 32) + "\n"
        XCTAssertThrowsError(try ResourceSet.parse(ok, file: "r.toml", cluster: c)) { e in
            XCTAssertFalse("\(e)".contains("nested"), "\(e)")
        }
    }

    func testAgentMetadataNestedTooDeepIsRefused() {
        let xml = "<resource-agent name=\"x\">" + String(repeating: "<a>", count: 100_000) + String(repeating: "</a>", count: 100_000) + "</resource-agent>"
        guard case .failure(let e) = AgentMetadata.parse(xml) else { return XCTFail("accepted") }
        XCTAssertTrue(e.message.contains("more than 64 deep"), e.message)
    }

    /// In Swift "\r\n" is one Character: a file saved on Windows used to be refused.
    func testCRLFLineEndsReadLikeLF() throws {
        let lf = try ClusterConfig.parse(cluster, file: "cluster.toml")
        let crlf = try ClusterConfig.parse(cluster.replacingOccurrences(of: "\n", with: "\r\n") + "\r\n", file: "cluster.toml")
        XCTAssertEqual(lf, crlf)
        // The error for a bad line still names the right line.
        XCTAssertThrowsError(try ClusterConfig.parse(cluster.replacingOccurrences(of: "\n", with: "\r\n").replacingOccurrences(of: "id = 2", with: "id = two"), file: "cluster.toml")) { e in
            XCTAssertEqual((e as? ConfigError)?.line, 14, "\(e)")
        }
    }

    func testNumbersBeyond64BitsAreOutOfRange() {
        for n in ["99999999999999999999", "-99999999999999999999", "0xFFFFFFFFFFFFFFFFFF"] {
            XCTAssertThrowsError(try TOML.parse("x = \(n)\n")) { e in
                XCTAssertTrue("\(e)".contains("out of range"), "\(n): \(e)")
            }
        }
        XCTAssertThrowsError(try TOML.parse("x = abc\n")) { e in XCTAssertTrue("\(e)".contains("strings need quotes"), "\(e)") }
    }

    /// Lexed as Unicode scalars: a combining mark after a closing quote does not swallow it.
    func testACombiningMarkAfterAQuoteIsAnError() {
        XCTAssertThrowsError(try TOML.parse("x = \"a\"\u{301}\n")) { e in XCTAssertTrue("\(e)".contains("unexpected"), "\(e)") }
        XCTAssertEqual(try? TOML.parse("x = \"e\u{301}\"\n").entries["x"]?.value, .string("e\u{301}"))
    }
}

/// Incarnations (issue 9, finding 2, in part): unique per node within a second, strictly growing,
/// and a damaged counter file stops the start instead of being read as 0 (or trapping).
final class IncarnationTests: XCTestCase {
    func testUniqueAcrossNodesStartingInTheSameSecond() throws {
        let now: UInt64 = 1_796_227_981
        let all = try (0..<32).map { try Incarnation.next(stored: nil, nowSeconds: now, nodeIndex: $0) }
        XCTAssertEqual(Set(all).count, 32)
        for (i, n) in all.enumerated() {
            XCTAssertEqual(n % 32, UInt64(i))
            XCTAssertGreaterThanOrEqual(n, now * 1000)
            XCTAssertLessThan(n, now * 1000 + 32)
        }
        // Restarts within the same second, and after a clock that went back, still grow.
        var last = all[3]
        for t in [now, now, now - 100] {
            let n = try Incarnation.next(stored: "\(last)\n", nowSeconds: t, nodeIndex: 3)
            XCTAssertGreaterThan(n, last)
            XCTAssertEqual(n % 32, 3)
            last = n
        }
    }

    func testADamagedCounterIsRefused() {
        for bad in ["", "garbage", "-1", "12x", "\(UInt64.max)", "99999999999999999999999"] {
            XCTAssertThrowsError(try Incarnation.next(stored: bad, nowSeconds: 1_796_227_981, nodeIndex: 0), bad)
        }
        XCTAssertThrowsError(try Incarnation.next(stored: nil, nowSeconds: 1, nodeIndex: 32))
    }
}

/// The saved configuration (issue 9, finding 8, in part): a checksum makes any damage or
/// truncation an error, never a different configuration.
final class StateFileTests: XCTestCase {
    let saved = VersionedResources(version: 7, text: "[[ip]]\nname = \"v\"\naddress = \"192.0.2.9/24\"\ninterface = \"eth0\"\n", standby: ["b"])

    func testRoundTrip() throws {
        XCTAssertEqual(try VersionedResources.parseStateFile(saved.stateFileText), saved)
        let empty = VersionedResources(version: 3, text: "")
        XCTAssertEqual(try VersionedResources.parseStateFile(empty.stateFileText), empty)
    }

    func testEveryTruncationAndEveryFlippedByteIsRefused() {
        let bytes = Array(saved.stateFileText.utf8)
        for cut in 0..<bytes.count {
            XCTAssertThrowsError(try VersionedResources.parseStateFile(String(decoding: bytes[0..<cut], as: UTF8.self)), "truncated at \(cut)")
        }
        for i in stride(from: 0, to: bytes.count, by: 3) {
            var b = bytes
            b[i] ^= 0x01
            let text = String(decoding: b, as: UTF8.self)
            if let r = try? VersionedResources.parseStateFile(text) { XCTFail("byte \(i) flipped, read as version \(r.version): \(r.text)") }
        }
    }

    /// Files written before the checksum are still read (the upgrade path).
    func testTheFormatBeforeTheChecksumIsRead() throws {
        let old = "# vigil resource configuration, replicated by the coordinator; do not edit (use hactl apply)\nversion=4\nstandby=b\n" + saved.text
        let r = try VersionedResources.parseStateFile(old)
        XCTAssertEqual(r, VersionedResources(version: 4, text: saved.text, standby: ["b"], committed: true))
    }

    /// Whether a majority stored the version is saved with it, under the checksum; files of
    /// format 2 (checksum, no flag) are read as confirmed.
    func testTheConfirmationIsSavedAndChecked() throws {
        var confirmed = saved
        confirmed.committed = true
        for v in [saved, confirmed] {
            XCTAssertEqual(try VersionedResources.parseStateFile(v.stateFileText), v)
        }
        let forged = saved.stateFileText.replacingOccurrences(of: "committed=0", with: "committed=1")
        XCTAssertNotEqual(forged, saved.stateFileText)
        XCTAssertThrowsError(try VersionedResources.parseStateFile(forged), "a flag changed without its checksum")
        let format2 = VersionedResources.format2StateHeader + "version=7\nstandby=b\nchecksum=\(String(saved.stateChecksum(format: 2), radix: 16))\n" + saved.text
        XCTAssertEqual(try VersionedResources.parseStateFile(format2), confirmed)
    }

    /// Who takes whose configuration (see `VersionedResources.committed`).
    func testWhoYieldsToWhom() {
        let mine = VersionedResources(version: 5, text: "a")
        var mineConfirmed = mine
        mineConfirmed.committed = true
        let d = mine.digest &+ 1
        // From the coordinator: its word, unless it is behind a confirmed version of ours.
        XCTAssertTrue(mine.yields(to: 4, digest: d, committed: false, fromCoordinator: true))
        XCTAssertTrue(mineConfirmed.yields(to: 6, digest: d, committed: false, fromCoordinator: true))
        XCTAssertTrue(mineConfirmed.yields(to: 4, digest: d, committed: true, fromCoordinator: true))
        XCTAssertFalse(mineConfirmed.yields(to: 4, digest: d, committed: false, fromCoordinator: true))
        // From anyone else: only confirmed versions, only higher ones (or the same number
        // confirmed over ours unconfirmed); never a lower one (the coordinator may be on its
        // way to confirming ours).
        XCTAssertFalse(mine.yields(to: 9, digest: d, committed: false, fromCoordinator: false))
        XCTAssertFalse(mine.yields(to: 4, digest: d, committed: true, fromCoordinator: false))
        XCTAssertTrue(mine.yields(to: 5, digest: d, committed: true, fromCoordinator: false))
        XCTAssertTrue(mine.yields(to: 6, digest: d, committed: true, fromCoordinator: false))
        XCTAssertTrue(mineConfirmed.yields(to: 6, digest: d, committed: true, fromCoordinator: false))
        XCTAssertFalse(mineConfirmed.yields(to: 4, digest: d, committed: true, fromCoordinator: false))
        // The same content is never fetched again.
        XCTAssertFalse(mine.yields(to: 5, digest: mine.digest, committed: true, fromCoordinator: true))
    }
}
