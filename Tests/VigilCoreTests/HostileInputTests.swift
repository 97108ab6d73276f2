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
