import Glibc
import VigilCore
import VigilSystem

/// Fence agents installed on this machine (Debian's fence-agents: /usr/sbin/fence_*), their
/// meta-data, and the check of `[[fence]]` parameters that `hactl apply` runs.
public enum FenceCatalog {
    /// Parameters the cluster sets for every operation (and their older aliases).
    static let setByCluster: Set<String> = ["action", "option", "nodename", "plug", "port"]

    public static func isFenceAgent(_ name: String) -> Bool {
        (name.split(separator: "/").last.map(String.init) ?? name).hasPrefix("fence_")
    }

    public static func list() -> [String] {
        var out: Set<String> = []
        for dir in FenceDevice.searchPath {
            for n in AgentCatalog.entries(dir) where n.hasPrefix("fence_") && access("\(dir)/\(n)", X_OK) == 0 { out.insert(n) }
        }
        return out.sorted()
    }

    /// The agent's parameters from its own meta-data (`action=metadata` on stdin, as the
    /// cluster sends everything else).
    public static func metadata(_ agent: String) throws(AgentCatalog.InfoError) -> AgentMetadata {
        guard let path = FenceAgentPath.resolve(agent) else {
            throw .message("fence agent \(agent) is not installed on this node (looked in \(FenceDevice.searchPath.joined(separator: ", ")); Debian: apt-get install fence-agents)")
        }
        let (end, output) = ChildProcess.runSync(path, [], env: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"],
                                                 stdin: Array("action=metadata\n".utf8), timeoutMs: 10_000)
        guard end == .exited(0) else { throw .message("\(agent) metadata failed: \(end)") }
        switch AgentMetadata.parse(output) {
        case .success(let md): return md
        case .failure(let e): throw .message("\(agent) metadata unreadable: \(e.message)")
        }
    }

    /// Checks every [[fence]] of a resources file against its agent's parameters: unknown names,
    /// and required ones the cluster does not set. Returns the problems (empty: fine).
    public static func checkDevices(in text: String, file: String) -> [String] {
        guard let root = try? TOML.parse(text), case .array(let items)? = root["fence"]?.value else { return [] }
        var problems: [String] = []
        var cache: [String: Result<AgentMetadata, AgentCatalog.InfoError>] = [:]
        for item in items {
            guard case .table(let t) = item.value, case .string(let name)? = t["name"]?.value,
                  case .string(let agent)? = t["agent"]?.value else { continue }
            var params: [String] = []
            if case .table(let p)? = t["params"]?.value { params = p.keys }
            let md: Result<AgentMetadata, AgentCatalog.InfoError>
            if let c = cache[agent] {
                md = c
            } else {
                do { md = .success(try metadata(agent)) } catch { md = .failure(error) }
                cache[agent] = md
            }
            switch md {
            case .failure(let e):
                problems.append("\(file):\(item.line): fence device '\(name)': \(e)")
            case .success(let m):
                let known = Set(m.parameters.map(\.name))
                let unknown = params.filter { !known.contains($0) }
                // `ip` or its alias `ipaddr`, `username` or `login`, `password` or a script: one is enough.
                let aliases: [String: [String]] = ["ip": ["ipaddr"], "ipaddr": ["ip"], "username": ["login"], "login": ["username"],
                                                   "password": ["passwd", "password_script", "passwd_script", "identity_file"],
                                                   "passwd": ["password", "password_script", "passwd_script", "identity_file"]]
                let missing = m.parameters.filter { p in
                    p.required && !setByCluster.contains(p.name) && !params.contains(p.name) && !(aliases[p.name] ?? []).contains(where: params.contains)
                }.map(\.name)
                if !unknown.isEmpty || !missing.isEmpty {
                    var parts: [String] = []
                    if !unknown.isEmpty { parts.append("unknown parameter(s) \(unknown.joined(separator: ", "))") }
                    if !missing.isEmpty { parts.append("missing required parameter(s) \(missing.joined(separator: ", "))") }
                    problems.append("\(file):\(item.line): fence device '\(name)' (\(agent)): \(parts.joined(separator: "; ")); see hactl agent info \(agent)")
                }
            }
        }
        return problems
    }
}
