import VigilCore

/// `hactl status --check`: one verdict for scripts and monitoring systems (Nagios' exit codes),
/// with one line saying why.
public enum StatusCheck {
    public enum Verdict: Int32, Sendable {
        case healthy = 0
        /// Something needs attention but the cluster serves: a resource not started, a failure
        /// counted, a node or a link down, a peer that speaks another protocol, a fencing.
        case degraded = 1
        /// This node has no quorum: it runs nothing.
        case noQuorum = 2
        /// clusterd cannot be reached (decided by the caller).
        case unreachable = 3
    }

    /// The verdict on a status and the line that explains it (at most a few reasons named).
    public static func evaluate(_ s: ClusterStatus) -> (Verdict, String) {
        guard s.quorate else {
            return (.noQuorum, "CRITICAL: \(s.localNode) has no quorum (\(s.votesForLocal) of \(s.majority) votes needed); it runs nothing")
        }
        var reasons: [String] = []
        // Nothing is recovered while these last: first in the line.
        if s.maintenance == true { reasons.append("the cluster is in maintenance: nothing is recovered (hactl maintenance off)") }
        for u in s.unmanaged ?? [] { reasons.append("\(u) is unmanaged (hactl manage \(u))") }
        for n in s.nodes where n.state != "local" && n.state != "online" {
            reasons.append("node \(n.name) is \(n.state)\(n.role == "witness" ? " (witness: one more loss leaves no majority)" : "")")
        }
        for n in s.nodes where n.state == "online" || n.state == "local" {
            for l in n.links where !l.up { reasons.append("link \(l.name) to \(n.name) is down") }
        }
        for r in s.resources {
            if r.state != "started" {
                reasons.append("resource \(r.name) is \(r.state)\(r.detail.map { " (\($0))" } ?? "")")
            } else if let f = r.failCount, f > 0 {
                reasons.append("resource \(r.name) failed \(f) time\(f == 1 ? "" : "s") (hactl cleanup \(r.name) once understood)")
            }
        }
        for f in s.fencing ?? [] { reasons.append("fencing of \(f.node): \(f.state)") }
        for p in s.incompatiblePeers { reasons.append("incompatible peer \(p)") }
        for p in s.olderProtocolPeers ?? [] { reasons.append("peer on the previous protocol \(p)") }
        guard !reasons.isEmpty else {
            let started = s.resources.count
            return (.healthy, "OK: \(s.nodes.count) nodes online, quorate, coordinator \(s.coordinator ?? "none"), \(started) resource\(started == 1 ? "" : "s") started")
        }
        let shown = reasons.prefix(3).joined(separator: "; ")
        return (.degraded, "WARNING: \(shown)\(reasons.count > 3 ? "; and \(reasons.count - 3) more" : "")")
    }
}
