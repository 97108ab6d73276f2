import Foundation
import VigilCore
import VigilFuzz
import VigilTestKit
import VigilWire
import XCTest

/// Every input of the checked-in fuzz corpus (seeds, and every crash the fuzzer found, kept as
/// a regression) goes through its target: none may trap. `VIGIL_WRITE_SEEDS=1 swift test
/// --filter FuzzCorpusTests` writes the seeds again from the tests' messages and Examples/.
final class FuzzCorpusTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    static var corpus: String { root.appendingPathComponent("Corpus").path }
    static var repo: URL { root.deletingLastPathComponent().deletingLastPathComponent() }

    func testEveryCorpusInputRunsWithoutTrapping() throws {
        XCTAssertTrue(FuzzTargets.ready, "the targets' fixed cluster or resources do not parse: they would fuzz nothing")
        if ProcessInfo.processInfo.environment["VIGIL_WRITE_SEEDS"] == "1" { try writeSeeds() }
        for target in FuzzTargets.all {
            let dir = Self.corpus + "/" + target
            let files = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
            XCTAssertFalse(files.isEmpty, "no corpus for \(target) in \(dir)")
            for f in files.sorted() {
                let data = Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/" + f)))
                FuzzTargets.run(target, data)
            }
        }
    }

    func writeSeeds() throws {
        func write(_ target: String, _ name: String, _ bytes: [UInt8]) throws {
            let dir = Self.corpus + "/" + target
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try Data(bytes).write(to: URL(fileURLWithPath: dir + "/seed-" + name))
        }
        var h = Heartbeat(sentAt: 123, echoIncarnation: 100, echo: 77, vote: 2, isCoordinator: true, leaseMs: 375,
                          configVersion: 4, configDigest: 0xDEAD, held: ["a", "b"], failed: ["c"], assignments: ["a": 1], members: [1, 2, 3])
        h.epoch = 9
        h.withdrawals = [3: 4]
        let messages: [Message] = [
            .heartbeat(h), .configRequest(version: 3, offset: 0),
            .configData(version: 5, digest: 77, offset: 0, total: 6, chunk: Array("x = 1\n".utf8), standby: ["n2"]),
            .configProposal(requestId: 9, offset: 0, total: 2, chunk: Array("é".utf8)), .configResult(requestId: 9, ok: false, version: 2, message: "no"),
            .cleanup(resource: "web"), .standbyProposal(requestId: 3, node: "n1", on: true),
            .fenceRequest(requestId: 4, node: "n3", confirm: false), .fenceDelegate(node: "n1"),
            .statePage(StatePage(part: .facts, rev: 2, index: 0, count: 1, entries: [.init(name: "a", value: 3), .init(name: "b", value: 1)])),
            .statePage(StatePage(part: .assignments, rev: 2, index: 0, count: 2, entries: [.init(name: "a", value: 1)])),
        ]
        let key = makeKey(Array(repeating: 0x5a, count: 32))
        var engineInput: [UInt8] = []
        for (i, m) in messages.enumerated() {
            let payload = m.encodePayload()
            try write("message", "\(i)", [m.kind] + payload)
            let header = Envelope.Header(kind: m.kind, link: 0, clusterId: Envelope.clusterId("fuzz"), sender: 2, incarnation: 5, seq: UInt64(i + 1),
                                         recipient: 1, recipientIncarnation: 100)
            try write("envelope", "\(i)", Envelope.seal(m, header: header, key: key))
            engineInput += [UInt8(i % 2), m.kind, UInt8(payload.count >> 8), UInt8(payload.count & 0xff)] + payload
        }
        try write("engine", "all", engineInput)
        for (i, path) in ["Examples/three-node/cluster.toml", "Examples/three-node/resources.toml", "Examples/two-node/cluster.toml",
                          "Examples/two-node/resources.toml", "Resources/cluster.toml"].enumerated() {
            try write("config", "\(i)", Array(try Data(contentsOf: Self.repo.appendingPathComponent(path))))
        }
        try write("statefile", "0", Array(VersionedResources(version: 7, text: "[[ip]]\nname = \"a\"\n", standby: ["n2"]).stateFileText.utf8))
        try write("metadata", "0", Array("""
            <?xml version="1.0"?>
            <!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">
            <resource-agent name="Dummy" version="1.0">
            <version>1.1</version>
            <longdesc lang="en">A dummy.</longdesc>
            <parameters>
            <parameter name="state" unique="1" required="0" private="1"><content type="string" default="/run/x"/></parameter>
            </parameters>
            <actions><action name="start" timeout="20s"/><action name="monitor" timeout="20s" interval="10s" depth="0"/></actions>
            </resource-agent>
            """.utf8))
        // A netlink dump: one RTM_NEWADDR (IPv4 10.0.0.1/24 on ifindex 2) and NLMSG_DONE, sequence 7.
        func u16(_ v: Int) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8)] }
        func u32(_ v: Int) -> [UInt8] { u16(v & 0xffff) + u16(v >> 16) }
        let attr = u16(8) + u16(2) + [10, 0, 0, 1]  // IFA_LOCAL
        let ifa: [UInt8] = [2, 24, 0, 0] + u32(2)
        let body = ifa + attr
        let newaddr = u32(16 + body.count) + u16(20) + u16(2) + u32(7) + u32(0) + body
        let done = u32(20) + u16(3) + u16(2) + u32(7) + u32(0) + u32(0)
        try write("netlink", "0", newaddr + done)
    }
}
