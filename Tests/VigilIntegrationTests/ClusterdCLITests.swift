import Foundation
import Glibc
import XCTest
import VigilLab
import VigilCore

/// `clusterd --check-config` on real files: every mistake is refused with the file, the key
/// and what is wrong. Needs no privileges.
final class ClusterdCLITests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "vigil-cli-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: dir)
    }

    func writeKey(bytes: Int = 64, mode: mode_t = 0o600) -> String {
        let path = dir + "/authkey"
        try? FileManager.default.removeItem(atPath: path)
        _ = FileManager.default.createFile(atPath: path, contents: Data((0..<bytes).map { UInt8($0 & 0xFF) }))
        chmod(path, mode)
        return path
    }

    func cluster(key: String, extra: String = "") -> String {
        """
        [cluster]
        name = "cli"
        key_file = "\(key)"
        \(extra)
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
    }

    func check(_ text: String, node: String = "a") -> (code: Int32, out: String, err: String) {
        let path = dir + "/cluster.toml"
        try? text.write(toFile: path, atomically: true, encoding: .utf8)
        return Lab.run(NamespaceTestCase.binDir + "/clusterd", ["--config", path, "--node", node, "--check-config"])
    }

    /// A damaged incarnation counter stops the start, naming the file (it used to be read as 0).
    /// Runs clusterd for real up to the point where it reads its state, before any socket.
    func testADamagedIncarnationFileStopsTheStart() throws {
        let state = dir + "/state"
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        chmod(state, 0o700)
        try "not a number\n".write(toFile: state + "/incarnation", atomically: true, encoding: .utf8)
        let path = dir + "/cluster.toml"
        try cluster(key: writeKey(), extra: "state_dir = \"\(state)\"\nrealtime = false").write(toFile: path, atomically: true, encoding: .utf8)
        let r = Lab.run(NamespaceTestCase.binDir + "/clusterd", ["--config", path, "--node", "a"])
        XCTAssertNotEqual(r.code, 0)
        XCTAssertTrue(r.err.contains(state + "/incarnation holds 'not a number', not a number: refusing to start"), r.err)
        XCTAssertEqual(try String(contentsOfFile: state + "/incarnation", encoding: .utf8), "not a number\n", "the file was changed")
    }

    /// A state directory others may write to stops the start, naming it.
    func testAStateDirectoryOthersMayWriteStopsTheStart() throws {
        let state = dir + "/shared-state"
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        chmod(state, 0o777)
        let path = dir + "/cluster.toml"
        try cluster(key: writeKey(), extra: "state_dir = \"\(state)\"\nrealtime = false").write(toFile: path, atomically: true, encoding: .utf8)
        let r = Lab.run(NamespaceTestCase.binDir + "/clusterd", ["--config", path, "--node", "a"])
        XCTAssertNotEqual(r.code, 0)
        XCTAssertTrue(r.err.contains("state directory \(state): it is writable by group or others (mode 777)"), r.err)
    }

    func testGoodConfigPrintsTheTimingRelation() {
        let r = check(cluster(key: writeKey()))
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertTrue(r.out.contains("majority 2"), r.out)
        XCTAssertTrue(r.out.contains("lease 350 ms"), r.out)
    }

    func testKeyProblemsAreRefused() {
        var r = check(cluster(key: writeKey(mode: 0o640)))
        XCTAssertEqual(r.code, 2)
        XCTAssertTrue(r.err.contains("cluster.key_file") && r.err.contains("must not be accessible by group or others"), r.err)
        r = check(cluster(key: writeKey(bytes: 16)))
        XCTAssertEqual(r.code, 2)
        XCTAssertTrue(r.err.contains("holds 16 bytes; at least 32"), r.err)
        r = check(cluster(key: dir + "/missing"))
        XCTAssertEqual(r.code, 2)
        XCTAssertTrue(r.err.contains("No such file"), r.err)
    }

    func testConfigMistakesNameFileLineAndKey() {
        let key = writeKey()
        var r = check(cluster(key: key, extra: "colour = \"blue\""))
        XCTAssertEqual(r.code, 2)
        XCTAssertTrue(r.err.contains("cluster.toml:4: cluster.colour: unknown key"), r.err)
        r = check(cluster(key: key).replacingOccurrences(of: "id = 3", with: "id = 1"))
        XCTAssertTrue(r.err.contains("duplicate node id 1"), r.err)
        r = check(cluster(key: key).replacingOccurrences(of: "192.0.2.3", with: "192.0.2.2"))
        XCTAssertTrue(r.err.contains("also used by node 'b'"), r.err)
        r = check(cluster(key: key), node: "zz")
        XCTAssertTrue(r.err.contains("--node 'zz' is not one of: a, b, c"), r.err)
        r = check(cluster(key: key, extra: "[timing]\nheartbeat_interval_ms = 300\nfailure_timeout_ms = 200"))
        XCTAssertTrue(r.err.contains("failure_timeout_ms: 200 ms must be larger than heartbeat_interval_ms"), r.err)
    }
}

/// The files we ship must stay valid.
final class ShippedExamplesTests: XCTestCase {
    func testShippedClusterAndResourceFilesValidate() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for rel in ["Resources/cluster.toml", "Examples/three-node/cluster.toml"] {
            let text = try String(contentsOf: root.appendingPathComponent(rel), encoding: .utf8)
            let c = try ClusterConfig.parse(text, file: rel)
            XCTAssertEqual(c.nodes.count, 3, rel)
            let res = try String(contentsOf: root.appendingPathComponent("Examples/three-node/resources.toml"), encoding: .utf8)
            let set = try ResourceSet.parse(res, file: "resources.toml", cluster: c)
            XCTAssertEqual(set.ips.map(\.name), ["web-ip", "web-ip6"])
            XCTAssertEqual(set.ips[0].interface(on: "gamma"), "bond0")
        }
        let two = try ClusterConfig.parse(String(contentsOf: root.appendingPathComponent("Examples/two-node/cluster.toml"), encoding: .utf8), file: "two-node")
        XCTAssertEqual(two.dataNodes.map(\.name), ["db1", "db2"])
        XCTAssertEqual(two.witnesses.count, 1)
        let twoRes = try String(contentsOf: root.appendingPathComponent("Examples/two-node/resources.toml"), encoding: .utf8)
        let twoSet = try ResourceSet.parse(twoRes, file: "resources.toml", cluster: two)
        XCTAssertEqual(twoSet.ips.map(\.name), ["db-ip"])
        XCTAssertTrue(twoSet.options("db").requiresFencing)
        XCTAssertEqual(twoSet.fencing.levels(for: "db1").map { $0.map(\.name) }, [["can-reach-gateway", "ipmi-db1"]])
        XCTAssertFalse(Redaction.redactSecrets(twoRes).contains("change-me"))
    }
}
