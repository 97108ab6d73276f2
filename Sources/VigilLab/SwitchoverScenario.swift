import Foundation

extension Scenarios {
    public struct SwitchoverResult: Sendable {
        /// The longest gap the client saw around each planned move (ms).
        public var gapsMs: [Double]
    }

    /// A planned move of the floating address back and forth between node1 and node2
    /// (`hactl move web-ip NODE --wait`), `runs` times, while a client pings it every 10 ms;
    /// each move's longest gap between answers.
    public static func switchover(lab: Lab, runs: Int, log: (String) -> Void = { _ in }) throws -> SwitchoverResult {
        try lab.startAll()
        try lab.waitFor("a quorate cluster", timeout: 15) {
            lab.hactl(1, ["status", "--output", "json"]).out.contains("\"quorate\" : true")
        }
        _ = try lab.apply(1, resources: resources(preferred: "node1"))
        try lab.waitFor("\(vip) on node1", timeout: 15) { lab.owners(of: vip) == [1] }
        let probe = try Probe(lab: lab, address: vip)
        defer { probe.stop() }
        try lab.waitFor("the client to get answers", timeout: 10) { probe.replies().count >= 30 }
        var gaps: [Double] = []
        for k in 0..<runs {
            let to = k % 2 == 0 ? 2 : 1
            Thread.sleep(forTimeInterval: 0.5)
            let t0 = Double(Lab.monoNowMs())
            let r = lab.hactl(1, ["move", "web-ip", "node\(to)", "--wait", "15"])
            guard r.code == 0 else { throw LabError("hactl move web-ip node\(to) failed: \(r.err)\(r.out)") }
            guard lab.owners(of: vip) == [to] else { throw LabError("after the move \(vip) is on \(lab.owners(of: vip))") }
            // Answers again for a while after the move, then the longest gap since it began.
            let count = probe.replies().count
            try lab.waitFor("answers after the move", timeout: 10) { probe.replies().count > count + 20 }
            guard let g = probe.longestGap(from: t0 - 100, to: Double(Lab.monoNowMs())) else { throw LabError("no answers recorded") }
            gaps.append(g.gap)
            log("move \(k + 1) to node\(to): longest gap \(String(format: "%.0f", g.gap)) ms (\(r.out.split(separator: "\n").first ?? ""))")
        }
        _ = lab.hactl(1, ["clear", "web-ip"])
        return SwitchoverResult(gapsMs: gaps)
    }
}
