import Glibc
import VigilCore
import VigilSystem
import VigilSystemd

/// The agents installed on this machine, their meta-data, and the parameter check that
/// `hactl apply` runs before anything is sent to the cluster.
public enum AgentCatalog {
    public static func list() -> [String] {
        var out: [String] = []
        let root = AgentSpec.ocfRoot + "/resource.d"
        for provider in entries(root) {
            for type in entries(root + "/" + provider) where access("\(root)/\(provider)/\(type)", X_OK) == 0 && !type.hasPrefix(".") {
                out.append("ocf:\(provider):\(type)")
            }
        }
        for s in entries("/etc/init.d") where access("/etc/init.d/\(s)", X_OK) == 0 && !s.hasPrefix(".") && s != "README" {
            out.append("lsb:\(s)")
        }
        // Service units systemd can load (not templates, not masked); one enabled at boot is
        // refused until it is disabled, and says so.
        for u in (try? SystemdQuery.unitFiles()) ?? [] where SystemdUnit.problem(u.name) == nil && !u.state.hasPrefix("masked") {
            out.append("systemd:\(u.name)" + (SystemdUnit.bootStates.contains(u.state) ? " (enabled at boot: refused until disabled)" : ""))
        }
        return out.sorted()
    }

    static func entries(_ dir: String) -> [String] {
        guard let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let n = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if n != "." && n != ".." { names.append(n) }
        }
        return names.sorted()
    }

    public enum InfoError: Error, CustomStringConvertible {
        case message(String)
        public var description: String {
            switch self { case .message(let m): return m }
        }
    }

    /// Runs the agent's meta-data action (OCF) and parses it.
    public static func metadata(_ spec: AgentSpec) throws(InfoError) -> AgentMetadata {
        if spec.cls == .systemd {
            let st: SystemdUnit.State
            do { st = try SystemdQuery.unit(spec.type) } catch { throw .message("\(spec): \(error)") }
            if let refused = SystemdUnit.refusal(spec.type, st) { throw .message("\(refused)") }
            guard case .success(let md) = AgentMetadata.parse(SystemdUnit.metadata(spec.type)) else { throw .message("\(spec): no meta-data") }
            return md
        }
        guard access(spec.executable, X_OK) == 0 else {
            throw .message("\(spec) is not installed on this node (\(spec.executable) is missing or not executable)")
        }
        guard spec.cls == .ocf else {
            return AgentMetadata(name: spec.type, version: nil, shortdesc: "\(spec.cls.rawValue) script: start, stop, status; takes no parameters", parameters: [],
                                 actions: ["start", "stop", "status"].map { .init(name: $0, timeout: nil, interval: nil) })
        }
        let env = spec.environment(resource: "hactl-meta-data", params: [], op: .metaData, timeoutMs: 10_000, intervalMs: 0)
        let (end, output) = ChildProcess.runSync(spec.executable, ["meta-data"], env: env, timeoutMs: 10_000)
        guard end == .exited(0) else { throw .message("\(spec) meta-data failed: \(end)") }
        switch AgentMetadata.parse(output) {
        case .success(let md): return md
        case .failure(let e): throw .message("\(spec) meta-data unreadable: \(e.message)")
        }
    }

    /// Checks every [[resource]] of a resources file against its agent's parameter list.
    /// Returns the problems found (empty: fine). Everything else is validated by clusterd.
    public static func checkParameters(in text: String, file: String) -> [String] {
        guard let root = try? TOML.parse(text), case .array(let items)? = root["resource"]?.value else { return [] }
        var problems: [String] = []
        var cache: [AgentSpec: Result<AgentMetadata, InfoError>] = [:]
        for item in items {
            guard case .table(let t) = item.value, case .string(let name)? = t["name"]?.value,
                case .string(let agentText)? = t["agent"]?.value, case .success(let spec) = AgentSpec.parse(agentText)
            else { continue }
            var params: [String] = []
            if case .table(let p)? = t["params"]?.value { params = p.keys }
            let md: Result<AgentMetadata, InfoError>
            if let c = cache[spec] {
                md = c
            } else {
                do {
                    md = .success(try metadata(spec))
                } catch {
                    md = .failure(error)
                }
                cache[spec] = md
            }
            switch md {
            case .failure(let e):
                problems.append("\(file):\(item.line): resource '\(name)': \(e)")
            case .success(let m):
                if let err = m.check(params) { problems.append("\(file):\(item.line): resource '\(name)' (\(spec)): \(err)") }
                // Live migration needs both halves from the agent (Dummy and VirtualDomain have them).
                if case .bool(true)? = t["allow_migrate"]?.value {
                    let missing = ["migrate_to", "migrate_from"].filter { a in !m.actions.contains { $0.name == a } }
                    if !missing.isEmpty {
                        problems.append("\(file):\(item.line): resource '\(name)' (\(spec)): allow_migrate = true, but the agent does not advertise \(missing.joined(separator: " or ")) in its meta-data")
                    }
                }
            }
        }
        return problems
    }

    public static func describe(_ spec: AgentSpec, _ md: AgentMetadata) -> String { describe(name: "\(spec)", md) }

    public static func describe(name: String, _ md: AgentMetadata) -> String {
        var lines = ["\(name) — \(md.shortdesc)", ""]
        if md.parameters.isEmpty {
            lines.append("Parameters: none")
        } else {
            var rows = [["PARAMETER", "REQUIRED", "UNIQUE", "TYPE", "DEFAULT", "DESCRIPTION"]]
            for p in md.parameters {
                rows.append([p.name, p.required ? "yes" : "no", p.unique ? "yes" : "no", p.type, p.defaultValue ?? "", p.shortdesc])
            }
            lines.append(contentsOf: StatusFormatter.render(rows))
        }
        lines.append("")
        lines.append("Actions: " + md.actions.map { a in
            var s = a.name
            if let t = a.timeout { s += " (timeout \(t)" + (a.interval.map { ", interval \($0)" } ?? "") + ")" }
            return s
        }.joined(separator: ", "))
        return lines.joined(separator: "\n")
    }
}
