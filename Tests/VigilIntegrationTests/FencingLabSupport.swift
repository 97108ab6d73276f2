import Foundation
import XCTest
import VigilCore
import VigilLab

/// What the fencing and watchdog namespace tests share.
extension NamespaceTestCase {
    func requireFenceDummy() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/fence_dummy") else {
            XCTFail("fence_dummy is missing: install Debian's fence-agents (.ci/install-deps.sh does)")
            throw LabError("no fence_dummy")
        }
    }

    /// Adds a line to the [cluster] table of the lab's cluster file (before the nodes start).
    func addClusterLine(_ lab: Lab, _ line: String) throws {
        let cfg = try String(contentsOfFile: lab.configPath, encoding: .utf8)
        try cfg.replacingOccurrences(of: "[cluster]\n", with: "[cluster]\n\(line)\n").write(toFile: lab.configPath, atomically: true, encoding: .utf8)
    }

    /// Where `r` runs, started, as node `asking` sees it (one status read).
    func runningOn(_ lab: Lab, _ r: String, asking node: Int = 1) -> [String] {
        ((try? status(lab, node))?.resources.first { $0.name == r }).map { $0.state == "started" ? $0.runningOn : [] } ?? []
    }

    /// Starts the cluster with db (ocf:heartbeat:Dummy) preferring node3 and a fence_dummy device
    /// (its own status file) covering every node, and waits for db on node3.
    func startWithDummyFencedDb(_ lab: Lab) throws {
        try startQuorate(lab)
        _ = try lab.apply(1, resources: """
            [[resource]]
            name = "db"
            agent = "ocf:heartbeat:Dummy"
            preferred = ["node3"]

            [[fence]]
            name = "dummy"
            agent = "fence_dummy"
            hosts = ["node1", "node2", "node3"]
            params = { status_file = "\(lab.workDir)/fence_dummy.status" }
            """)
        try lab.waitFor("db on node3", timeout: 30) { self.runningOn(lab, "db") == ["node3"] }
    }
}
