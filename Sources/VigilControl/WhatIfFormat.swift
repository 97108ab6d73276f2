#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import VigilCore

/// `hactl simulate` and `hactl apply --dry-run`: reading the changes asked for, simulating on a
/// snapshot file (offline), and printing the report.
public enum WhatIfFormat {
    /// `RESOURCE@NODE` (the node is after the last '@').
    public static func parseFail(_ s: String) -> WhatIf.Change? {
        guard let at = s.lastIndex(of: "@") else { return nil }
        let r = String(s[..<at]), n = String(s[s.index(after: at)...])
        guard !r.isEmpty, !n.isEmpty else { return nil }
        return .fail(resource: r, node: n)
    }

    /// The simulation on a file written by `hactl snapshot`, without a cluster. The cluster is
    /// rebuilt from the snapshot's node list; the configuration in it was accepted by that
    /// cluster. A new resources file (`-f`) is checked against that node list only (fencing
    /// coverage cannot be: the live `hactl apply --dry-run` checks everything).
    public static func offline(_ s: Snapshot, changes: [WhatIf.Change], newText: String?, file: String) throws -> WhatIf.Report {
        var t = "[cluster]\nname = \(quoted(s.status.cluster))\nkey_file = \"/dev/null\"\n"
        // (A watchdog stands in for the fencing the real cluster had when it accepted the file.)
        t += "[watchdog]\ndevice = \"/dev/null\"\n[[link]]\nname = \"l0\"\nport = 5405\n"
        for n in s.status.nodes {
            let id = n.id.rawValue
            t += "[[node]]\nname = \(quoted(n.name))\nid = \(id)\naddresses = [\"10.\((id >> 16) & 255).\((id >> 8) & 255).\(id & 255)\"]\n"
            if n.role == "witness" { t += "role = \"witness\"\n" }
        }
        let cluster: ClusterConfig
        do { cluster = try ClusterConfig.parse(t, file: "snapshot") } catch { throw WhatIf.Refusal("the snapshot's node list is not usable: \(error)") }
        let current: ResourceSet
        do { current = try ResourceSet.parse(s.config, file: "snapshot", cluster: cluster) } catch { throw WhatIf.Refusal("the snapshot's configuration does not parse: \(error)") }
        let standby = Set(s.standby)
        let online = Set(s.status.nodes.filter { $0.state == "local" || $0.state == "online" }.map(\.name))
        let nodes = s.nodes.map { WhatIf.NodeInput(name: $0.name, online: online.contains($0.name), standby: standby.contains($0.name), held: $0.held, failed: $0.failed) }
        return try WhatIf.run(cluster: cluster, current: current, nodes: nodes, changes: changes, newText: newText, file: file)
    }

    static func quoted(_ s: String) -> String {
        "\"" + s.replacingAll("\\", with: "\\\\").replacingAll("\"", with: "\\\"") + "\""
    }

    /// The report as an operator reads it.
    public static func table(_ r: WhatIf.Report, dryRun: Bool = false) -> String {
        var out: [String] = []
        if let why = r.refused {
            out.append("REFUSED: \(why)")
            out.append("Nothing would change: the cluster would refuse this file.")
            return out.joined(separator: "\n")
        }
        if !r.imagined.isEmpty && !dryRun { out.append("Imagined: " + r.imagined.joined(separator: "; ")) }
        if let a = r.added, let d = r.removed, let c = r.changed {
            out.append("Added: \(a.isEmpty ? "none" : a.joined(separator: ", "))")
            out.append("Removed: \(d.isEmpty ? "none" : d.joined(separator: ", "))")
            out.append("Changed: \(c.isEmpty ? "none" : c.joined(separator: ", "))")
        }
        out.append("")
        out.append("Placement:")
        let rows = [["RESOURCE", "NODE", ""]] + r.placement.map { [$0.resource, $0.node ?? "stopped", $0.reason ?? ""] }
        out += StatusFormatter.render(rows).map { "  " + $0 }
        out.append("")
        if r.actions.isEmpty {
            out.append("Actions: none (nothing would change)")
        } else {
            out.append("Actions, in order:")
            for (i, a) in r.actions.enumerated() { out.append("  \(i + 1). \(a)") }
        }
        return out.joined(separator: "\n")
    }
}
