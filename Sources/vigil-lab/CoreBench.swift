import ArgumentParser
import Foundation
import VigilCore
import VigilTestKit

/// The deterministic core alone, in simulated time: how much CPU the engines of a settled
/// cluster spend per second of cluster time (no sockets, no kernel). Separates the core's share
/// of a node's idle CPU from the daemon's and the network stack's.
struct CoreBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "core-bench",
        abstract: "Engines of a settled simulated cluster: CPU per node per second of cluster time (no root needed).")
    @Option(help: "Nodes.") var nodes: Int = 3
    @Option(help: "Floating addresses.") var addresses: Int = 3
    @Option(help: "Seconds of cluster time to measure.") var seconds: Int = 60

    func run() throws {
        guard (3...20).contains(nodes), (0...5000).contains(addresses), (1...3600).contains(seconds) else {
            throw ValidationError("--nodes 3...20, --addresses 0...5000, --seconds 1...3600")
        }
        let text = (0..<addresses).map { i in
            "[[ip]]\nname = \"a\(i)\"\naddress = \"198.19.\(i / 250).\(i % 250 + 1)/16\"\ninterface = \"eth0\"\npreferred = [\"n\(i % nodes + 1)\"]\n"
        }.joined()
        var sim = try SimCluster(cluster: SimCluster.config(nodes: nodes, links: 1), resources: text)
        let placed = sim.run(until: 60_000) { s in
            (0..<addresses).allSatisfy { s.holders(of: "a\($0)").count == 1 } && !s.coordinators.isEmpty
        }
        guard placed != nil else { throw ValidationError("the simulated cluster did not settle in 60 s") }
        sim.run(5000)
        let ms = UInt64(seconds) * 1000
        let before = (1...nodes).map { sim.engine(NodeID.n($0))?.work.evaluations ?? 0 }
        sim.engineNanos = 0
        sim.run(ms)
        let evaluations = (1...nodes).map { (sim.engine(NodeID.n($0))?.work.evaluations ?? 0) }.enumerated().map { $1 - before[$0] }
        let engineNs = Double(sim.engineNanos)
        let perNodePct = engineNs / Double(nodes) / Double(ms * 1_000_000) * 100
        let perEvaluationUs = engineNs / Double(max(1, evaluations.reduce(0, +))) / 1000
        print("evaluations per node per second: " + evaluations.map { String(format: "%.1f", Double($0) / Double(seconds)) }.joined(separator: " "))
        print("violations=\(sim.violations.count)")
        print(String(format: "core_cpu_pct_per_node=%.4f us_per_evaluation=%.1f nodes=%d addresses=%d", perNodePct, perEvaluationUs, nodes, addresses))
    }
}
