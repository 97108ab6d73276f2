import Prometheus
import VigilCore
import VigilIPC
import VigilSystem

/// clusterd's Prometheus metrics (issue 12), served from its own loop by `MetricsEndpoint`
/// when the cluster file has `[metrics] listen = "HOST:PORT"`. What accumulates (failovers,
/// their durations, agent operations) lives in one registry; what is a state (membership,
/// links, quorum, resources, counters) is read afresh for each scrape, so a resource removed
/// from the configuration leaves no stale series behind.
final class DaemonMetrics {
    let registry = PrometheusCollectorRegistry()
    private let failoverSeconds: ValueHistogram
    private var failoverBegun: [String: UInt64] = [:]
    private var agentSeconds: [AgentOperation: ValueHistogram] = [:]
    static let failoverBuckets: [Double] = [0.1, 0.2, 0.35, 0.5, 1, 2, 5, 10, 30, 60, 300]
    static let agentBuckets: [Double] = [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 120]

    init() {
        failoverSeconds = registry.makeValueHistogram(
            descriptor: .init(metricName: "vigil_failover_duration", unitName: "seconds",
                              helpText: "Coordinator: from a failover's decision to the resource started elsewhere"),
            labels: [], buckets: Self.failoverBuckets)
    }

    /// Failovers this coordinator began and completed (by resource), and how long each took.
    func observe(_ e: EngineEvent, now: UInt64) {
        switch e {
        case .failoverBegun(let r, _, _):
            failoverBegun[r] = now
        case .failoverCompleted(let r, _, _, _):
            registry.makeCounter(descriptor: .init(metricName: "vigil_failovers", unitName: "total", helpText: "Failovers completed, by resource (counted by the coordinator)"),
                                 labels: [("resource", r)]).increment()
            if let t = failoverBegun.removeValue(forKey: r) { failoverSeconds.record(Double(now - min(now, t)) / 1000) }
        default:
            break
        }
    }

    func agentOperation(_ op: AgentOperation, ms: UInt64) {
        let h = agentSeconds[op] ?? registry.makeValueHistogram(
            descriptor: .init(metricName: "vigil_agent_operation_duration", unitName: "seconds", helpText: "Resource agent operations on this node, by action"),
            labels: [("action", op.rawValue)], buckets: Self.agentBuckets)
        agentSeconds[op] = h
        h.record(Double(ms) / 1000)
    }

    /// The text format: the accumulated series, then the state as `status` shows it now.
    func render(_ s: ClusterStatus, hookQueue: Int) -> [UInt8] {
        var out = registry.emitToBuffer()
        let now = PrometheusCollectorRegistry()
        func gauge(_ name: String, _ help: String, _ labels: [(String, String)], _ v: Double) {
            now.makeGauge(descriptor: .init(metricName: name, unitName: "", helpText: help), labels: labels).set(v)
        }
        gauge("vigil_quorate", "This node holds a lease (1) or not (0)", [], s.quorate ? 1 : 0)
        gauge("vigil_is_coordinator", "This node is the coordinator", [], s.localIsCoordinator ? 1 : 0)
        if let c = s.coordinator { gauge("vigil_coordinator", "The coordinator this node follows", [("node", c)], 1) }
        gauge("vigil_config_version", "Resource configuration version in force here", [], Double(s.configVersion))
        for n in s.nodes {
            gauge("vigil_node_member", "Node in two-way contact (1), or this node", [("node", n.name)], n.state == "online" || n.state == "local" ? 1 : 0)
            for l in n.links {
                gauge("vigil_link_up", "Heartbeat link to the node up", [("node", n.name), ("link", l.name)], l.up ? 1 : 0)
                if let ms = l.lastHeardMsAgo {
                    gauge("vigil_link_last_heard_seconds", "Since the node was last heard on the link", [("node", n.name), ("link", l.name)], Double(ms) / 1000)
                }
            }
        }
        for r in s.resources {
            gauge("vigil_resource_state", "Each resource's state as this node sees it (1 for the current one)", [("resource", r.name), ("state", r.state)], 1)
            for n in r.runningOn { gauge("vigil_resource_running", "Nodes reporting the resource as held", [("resource", r.name), ("node", n)], 1) }
        }
        let c = s.counters
        let dropped: [(String, UInt64)] = [("forged", c.forged), ("replayed", c.replayed), ("malformed", c.malformed), ("incompatible", c.incompatible),
                                           ("foreign_cluster", c.foreignCluster), ("unknown_sender", c.unknownSender), ("misdirected", c.misdirected ?? 0),
                                           ("oversize", c.oversize ?? 0)]
        for (reason, v) in dropped {
            now.makeCounter(descriptor: .init(metricName: "vigil_packets_dropped", unitName: "total", helpText: "Datagrams dropped, by reason"),
                            labels: [("reason", reason)]).increment(by: Int64(v))
        }
        now.makeCounter(descriptor: .init(metricName: "vigil_packets_accepted", unitName: "total", helpText: "Authentic datagrams accepted"), labels: []).increment(by: Int64(c.accepted))
        gauge("vigil_hook_queue_length", "Hook runs waiting", [], Double(hookQueue))
        now.emit(into: &out)
        return out
    }
}
