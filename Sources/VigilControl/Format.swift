#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import VigilCore

/// hactl's output: a table for people, JSON for scripts.
public enum StatusFormatter {
    public static func json(_ s: ClusterStatus) -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        guard let d = try? enc.encode(s) else { return "{}" }
        return String(decoding: d, as: UTF8.self)
    }

    public static func table(_ s: ClusterStatus) -> String {
        var out: [String] = []
        let quorum = s.quorate ? "yes" : "NO (policy: \(s.noQuorumPolicy))"
        out.append("Cluster \(s.cluster) — seen from \(s.localNode)")
        out.append("Quorum: \(quorum)   Coordinator: \(s.coordinator ?? "none")   Config version: \(s.configVersion)")
        out.append("")
        var rows = [["NODE", "ID", "STATE", "LINKS"]]
        for n in s.nodes {
            let links = n.state == "local" ? "-" : n.links.map { "\($0.name):\($0.up ? "up" : "DOWN")" }.joined(separator: " ")
            rows.append([n.name, "\(n.id)", n.state + ((n.standby ?? false) ? " (standby)" : "") + (n.role == "witness" ? " (witness)" : ""), links])
        }
        out.append(contentsOf: render(rows))
        // Two data nodes lean on their witness: without it, one more failure stops everything.
        for n in s.nodes where n.role == "witness" && n.state != "local" && n.state != "online" {
            out.append("WARNING: witness \(n.name) is unreachable (\(n.state)): one more lost node leaves no majority")
        }
        out.append("")
        if s.resources.isEmpty {
            out.append("No resources defined (hactl apply -f resources.toml).")
        } else {
            var r = [["RESOURCE", "GROUP", "WHAT", "NODE", "STATE", "FAILS", "DETAIL"]]
            for x in s.resources {
                let node = x.runningOn.isEmpty ? (x.assignedTo ?? "-") : x.runningOn.joined(separator: ",")
                r.append([x.name, x.group ?? "-", x.address, node, x.state, "\(x.failCount ?? 0)", x.detail ?? ""])
            }
            out.append(contentsOf: render(r))
        }
        if let f = s.fencing {
            out.append("")
            for x in f { out.append("FENCING: \(x.node) \(x.state)\(x.detail.map { " — \($0)" } ?? "")") }
        }
        if s.maintenance == true {
            out.insert("MAINTENANCE: the cluster is in maintenance: nothing is started, stopped or recovered (hactl maintenance off)", at: 0)
        }
        for u in s.unmanaged ?? [] { out.append("UNMANAGED: \(u) is monitored, never acted on (hactl manage \(u))") }
        if let cs = s.constraints {
            out.append("")
            for c in cs { out.append("CONSTRAINT: \(c)") }
        }
        if let devs = s.fenceDevices {
            out.append("")
            var r = [["FENCE DEVICE", "AGENT", "NODES", "MONITOR"]]
            for d in devs { r.append([d.name, d.agent, d.nodes.joined(separator: ","), d.ok.map { $0 ? "ok" : "FAILED: \(d.detail ?? "")" } ?? "not checked yet"]) }
            out.append(contentsOf: render(r))
        }
        let c = s.counters
        let misdirected = c.misdirected ?? 0, oversize = c.oversize ?? 0
        if c.forged + c.replayed + c.malformed + c.incompatible + c.foreignCluster + misdirected + oversize > 0 {
            out.append("")
            out.append("Dropped packets: forged=\(c.forged) replayed=\(c.replayed) malformed=\(c.malformed) incompatible=\(c.incompatible) other-cluster=\(c.foreignCluster)"
                + " misdirected=\(misdirected) oversize=\(oversize)")
        }
        for p in s.incompatiblePeers { out.append("Incompatible peer: \(p)") }
        for p in s.olderProtocolPeers ?? [] { out.append("Peer on the previous protocol: \(p) (upgrade it; answered in its version meanwhile)") }
        if let e = c.sendErrors, e > 0 { out.append("Send errors: \(e) (see the log)") }
        return out.joined(separator: "\n")
    }

    static func render(_ rows: [[String]]) -> [String] {
        guard let first = rows.first else { return [] }
        var widths = first.map(\.count)
        for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
        return rows.map { r in
            r.enumerated().map { i, c in i == r.count - 1 ? c : c + String(repeating: " ", count: max(0, widths[i] - c.count)) }
                .joined(separator: "  ").trimmed()
        }
    }
}
