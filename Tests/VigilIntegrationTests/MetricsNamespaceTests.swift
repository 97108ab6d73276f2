import Foundation
import XCTest
import VigilCore
import VigilLab

/// Issue 12, metrics: `[metrics] listen` serves Prometheus' text format from clusterd's loop;
/// a scrape parsed here shows membership, quorum, where resources run, and the failover the
/// test just caused (count and duration) on the coordinator.
final class MetricsNamespaceTests: NamespaceTestCase {
    /// One scrape of node `i`'s endpoint, as (series with labels) -> value.
    func scrape(_ lab: Lab, _ i: Int, path: String = "/metrics") -> (code: String, metrics: [String: Double]) {
        let r = Lab.run("/usr/sbin/ip", ["netns", "exec", lab.ns(i), "curl", "-s", "--max-time", "3", "-w", "\n%{http_code}", "http://127.0.0.1:9464\(path)"])
        var lines = r.out.split(separator: "\n").map(String.init)
        let code = lines.popLast() ?? ""
        var out: [String: Double] = [:]
        for l in lines where !l.hasPrefix("#") {
            guard let sp = l.lastIndex(of: " "), let v = Double(l[l.index(after: sp)...]) else { continue }
            out[String(l[..<sp])] = v
        }
        return (code, out)
    }

    func testAScrapeShowsTheClusterAndTheFailoverItJustHad() throws {
        let lab = try makeLab(heartbeatLinks: 1, extraClusterLines: "[metrics]\nlisten = \"127.0.0.1:9464\"\n")
        try startQuorate(lab)
        _ = try lab.apply(1, resources: Scenarios.resources(preferred: "node2"))
        try lab.waitFor("the address on node2", timeout: 15) { lab.owners(of: Scenarios.vip) == [2] }
        try lab.waitFor("node1 to report it on node2", timeout: 10) {
            self.scrape(lab, 1).metrics["vigil_resource_running{resource=\"web-ip\",node=\"node2\"}"] == 1
        }
        let before = scrape(lab, 1)
        XCTAssertEqual(before.code, "200")
        XCTAssertEqual(before.metrics["vigil_quorate"], 1)
        XCTAssertEqual(before.metrics["vigil_is_coordinator"], 1)
        XCTAssertEqual(before.metrics["vigil_node_member{node=\"node2\"}"], 1)
        XCTAssertEqual(before.metrics["vigil_link_up{node=\"node2\",link=\"ring0\"}"], 1)
        XCTAssertNil(before.metrics["vigil_failovers_total{resource=\"web-ip\"}"])
        XCTAssertEqual(before.metrics["vigil_failover_duration_seconds_count"], 0)
        XCTAssertNotNil(before.metrics["vigil_agent_operation_duration_seconds_count{action=\"monitor\"}"] ?? before.metrics["vigil_packets_accepted_total"])

        lab.kill(2)
        try lab.setLinks(2, up: false)
        try lab.waitFor("the address elsewhere", timeout: 15) { lab.owners(of: Scenarios.vip).count == 1 && lab.owners(of: Scenarios.vip) != [2] }
        try lab.waitFor("the failover counted", timeout: 10) { self.scrape(lab, 1).metrics["vigil_failovers_total{resource=\"web-ip\"}"] == 1 }
        let after = scrape(lab, 1).metrics
        XCTAssertEqual(after["vigil_node_member{node=\"node2\"}"], 0)
        XCTAssertEqual(after["vigil_failover_duration_seconds_count"], 1)
        let seconds = try XCTUnwrap(after["vigil_failover_duration_seconds_sum"])
        // (From the decision to the start: within the same millisecond when the coordinator
        // itself takes it over.)
        XCTAssertGreaterThanOrEqual(seconds, 0)
        XCTAssertLessThan(seconds, 10)
        let newOwner = lab.owners(of: Scenarios.vip)[0]
        XCTAssertEqual(after["vigil_resource_running{resource=\"web-ip\",node=\"node\(newOwner)\"}"], 1)
        print("metrics: failover of web-ip counted, duration \(seconds) s")

        // Anything but GET /metrics is refused; the endpoint keeps serving.
        XCTAssertEqual(scrape(lab, 1, path: "/other").code, "404")
        let post = Lab.run("/usr/sbin/ip", ["netns", "exec", lab.ns(1), "curl", "-s", "-X", "POST", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:9464/metrics"])
        XCTAssertEqual(post.out, "405")
        XCTAssertEqual(scrape(lab, 1).code, "200")
    }

    func testAListenAddressThatIsNotOneIsRefused() {
        let base = "[cluster]\nname = \"m\"\nkey_file = \"/dev/null\"\n[[link]]\nport = 5405\n"
            + (1...3).map { "[[node]]\nname = \"n\($0)\"\nid = \($0)\naddresses = [\"10.0.0.\($0)\"]\n" }.joined()
        XCTAssertThrowsError(try ClusterConfig.parse(base + "[metrics]\nlisten = \"localhost:9464\"\n", file: "c.toml")) { e in
            XCTAssertTrue("\(e)".contains("metrics.listen") && "\(e)".contains("is not ADDRESS:PORT"), "\(e)")
        }
        let ok = try? ClusterConfig.parse(base + "[metrics]\nlisten = \"[::1]:9464\"\n", file: "c.toml")
        XCTAssertEqual(ok?.metricsListen?.port, 9464)
        XCTAssertEqual(ok?.metricsListen?.address.family, .v6)
    }
}
