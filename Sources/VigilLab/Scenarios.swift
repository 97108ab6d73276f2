import Foundation
import Glibc

/// A client in the lab's client namespace pinging an address every 10 ms.
public final class Probe {
    let process: Process
    let outPath: String
    let lab: Lab

    public init(lab: Lab, address: String, intervalSeconds: String = "0.01") throws {
        self.lab = lab
        outPath = lab.workDir + "/probe-\(UInt32.random(in: 0...UInt32.max)).out"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        guard let fh = FileHandle(forWritingAtPath: outPath) else { throw LabError("cannot open \(outPath)") }
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        let v6 = address.contains(":")
        process.arguments = ["netns", "exec", lab.clientNS, "ping"] + (v6 ? ["-6"] : []) + ["-n", "-D", "-i", intervalSeconds, "-W", "1", address]
        process.standardOutput = fh
        process.standardError = fh
        try process.run()
    }

    deinit { stop() }

    public func stop() {
        if process.isRunning {
            Glibc.kill(process.processIdentifier, SIGINT)
            Lab.reap(process.processIdentifier)
        }
    }

    /// Reply times on the monotonic clock (ms).
    public func replies() -> [Double] {
        let text = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line -> Double? in
            guard line.contains("bytes from"), line.hasPrefix("["), let end = line.firstIndex(of: "]"),
                let t = Double(line[line.index(after: line.startIndex)..<end])
            else { return nil }
            return (t + lab.monoMinusReal) * 1000
        }
    }

    /// The longest gap between consecutive replies within [from, to] (monotonic ms).
    public func longestGap(from: Double, to: Double) -> (gap: Double, lastBefore: Double, firstAfter: Double)? {
        Lab.longestGap(replies().filter { $0 >= from && $0 <= to })
    }
}

public enum Scenarios {
    public static let vip = "198.18.0.50"
    public static let vip6 = "fd00:18::50"

    public static func resources(preferred: String, v6: Bool = false) -> String {
        var s = """
            # Floating service address on the lab's service network (link 0).
            [[ip]]
            name = "web-ip"
            address = "\(vip)/24"
            interface = "eth0"
            preferred = ["\(preferred)"]

            """
        if v6 {
            s += """

                [[ip]]
                name = "web-ip6"
                address = "\(vip6)/64"
                interface = "eth0"
                preferred = ["\(preferred)"]

                """
        }
        return s
    }

    /// The web service group: floating address, the example HTTP server bound to it, and
    /// ocf:heartbeat:Dummy from Debian's resource-agents as a third member.
    public static func appResources(preferred: String, docroot: String, monitorMs: Int = 1000, threshold: Int = 3) -> String {
        """
        [[ip]]
        name = "web-ip"
        address = "\(vip)/24"
        interface = "eth0"
        preferred = ["\(preferred)"]

        [[resource]]
        name = "web"
        agent = "ocf:vigil:httpd"
        params = { address = "\(vip)", port = "8080", docroot = "\(docroot)" }
        monitor_interval_ms = \(monitorMs)
        monitor_timeout_ms = 5000
        start_timeout_ms = 10000
        stop_timeout_ms = 10000
        migration_threshold = \(threshold)

        [[resource]]
        name = "cache"
        agent = "ocf:heartbeat:Dummy"
        monitor_interval_ms = \(monitorMs)

        [[group]]
        name = "websvc"
        members = ["web-ip", "web", "cache"]

        """
    }

    public static var webURL: String { "http://\(vip):8080/" }

    public struct FailoverResult: Sendable {
        public var outageMs: Double
        public var victim: Int
        public var newOwner: Int?
        public var killAt: Double
        public var timeline: [(String, Double)]
    }

    /// Brings up the cluster with a floating IP on `preferred`, then kills its owner.
    public static func unplannedFailover(lab: Lab, preferred: Int, log: (String) -> Void = { _ in }) throws -> FailoverResult {
        // Under Corosync a lease outlasts a ring re-formation: everything takes longer.
        let corosync = lab.options.corosyncToken != nil
        try lab.startAll()
        try lab.waitFor("a quorate cluster", timeout: corosync ? 90 : 15) {
            lab.hactl(1, ["status", "--output", "json"]).out.contains("\"quorate\" : true")
        }
        log("cluster up: \(lab.options.nodes) nodes in namespaces \(lab.ns(1))..\(lab.ns(lab.options.nodes))")
        let out = try lab.apply(1, resources: resources(preferred: lab.nodeName(preferred)))
        log("hactl apply: \(out.trimmingCharacters(in: .whitespacesAndNewlines))")
        try lab.waitFor("\(vip) on \(lab.nodeName(preferred))", timeout: 15) { lab.owners(of: vip) == [preferred] }
        let probe = try Probe(lab: lab, address: vip)
        defer { probe.stop() }
        try lab.waitFor("the client to get answers", timeout: 10) { probe.replies().count >= 30 }
        log("client in \(lab.clientNS) pings \(vip) every 10 ms; owner is \(lab.nodeName(preferred))")
        let victim = preferred
        let killAt = Double(Lab.monoNowMs())
        lab.kill(victim)
        if corosync { lab.killCorosync(victim) }
        try lab.setLinks(victim, up: false)
        log("killed \(lab.nodeName(victim)) (SIGKILL\(corosync ? ", its Corosync too" : "")) and took its links down")
        let before = probe.replies().count
        try lab.waitFor("answers to resume", timeout: corosync ? 60 : 15) {
            let r = probe.replies()
            return r.count > before + 30 && (r.last ?? 0) > killAt
        }
        probe.stop()
        guard let g = probe.longestGap(from: killAt - 2000, to: Double(Lab.monoNowMs())) else {
            throw LabError("no replies recorded")
        }
        let newOwner = lab.owners(of: vip).first { $0 != victim }
        var timeline: [(String, Double)] = [("owner killed", killAt), ("last answer before", g.lastBefore)]
        let ev = lab.allEvents().filter { Double($0.mono) >= killAt }
        let victimName = lab.nodeName(victim)
        if let e = ev.first(where: { $0.text.hasPrefix("member-lost node=\(victimName)") }) { timeline.append(("detected (\(e.node): member lost)", Double(e.mono))) }
        if let e = ev.first(where: { $0.text.hasPrefix("decided resource=web-ip") }) { timeline.append(("decided (\(e.node): \(e.text.split(separator: " ").last ?? ""))", Double(e.mono))) }
        if let e = ev.first(where: { $0.text.hasPrefix("address-added resource=web-ip") }) { timeline.append(("address added (\(e.node))", Double(e.mono))) }
        if let e = ev.first(where: { $0.text.hasPrefix("announced resource=web-ip") }) { timeline.append(("announced (\(e.node): gratuitous ARP 1)", Double(e.mono))) }
        timeline.append(("first answer after", g.firstAfter))
        timeline.sort { $0.1 < $1.1 }
        return FailoverResult(outageMs: g.gap, victim: victim, newOwner: newOwner, killAt: killAt, timeline: timeline)
    }
}
