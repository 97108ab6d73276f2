/// Resource agents: OCF 1.1 (`ocf:PROVIDER:TYPE`), LSB init scripts (`lsb:NAME`), plain
/// executables (`script:/path`) and systemd services (`systemd:UNIT.service`, see SystemdUnits). Pure definitions: how to find them, what their exit codes
/// mean, and their meta-data. Running them is the daemon's business.
public struct AgentSpec: Hashable, Sendable, Codable, CustomStringConvertible {
    public enum Class: String, Sendable, Codable { case ocf, lsb, script, systemd }
    public var cls: Class
    public var provider: String?
    public var type: String

    public static let ocfRoot = "/usr/lib/ocf"

    /// Parses `ocf:heartbeat:Dummy`, `lsb:apache2`, `script:/usr/local/bin/app`.
    public static func parse(_ s: String) -> Result<AgentSpec, PrefixParseError> {
        let parts = s.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
        func safe(_ x: String) -> Bool { !x.isEmpty && !x.contains("/") && x != "." && x != ".." && x.allSatisfy { !$0.isWhitespace } }
        switch parts.first {
        case "ocf":
            guard parts.count == 3, safe(parts[1]), safe(parts[2]) else {
                return .failure(.init(message: "'\(s)' must be ocf:PROVIDER:TYPE, e.g. ocf:heartbeat:Dummy"))
            }
            return .success(AgentSpec(cls: .ocf, provider: parts[1], type: parts[2]))
        case "lsb":
            guard parts.count == 2, safe(parts[1]) else { return .failure(.init(message: "'\(s)' must be lsb:NAME (a script in /etc/init.d)")) }
            return .success(AgentSpec(cls: .lsb, provider: nil, type: parts[1]))
        case "script":
            let path = parts.dropFirst().joined(separator: ":")
            guard path.hasPrefix("/"), !path.contains("/../") else {
                return .failure(.init(message: "'\(s)' must be script:/ABSOLUTE/PATH"))
            }
            return .success(AgentSpec(cls: .script, provider: nil, type: path))
        case "systemd":
            return SystemdUnit.spec(s, unit: parts.dropFirst().joined(separator: ":"))
        default:
            return .failure(.init(message: "'\(s)' has an unknown agent class; use ocf:PROVIDER:TYPE, lsb:NAME, script:/PATH or systemd:UNIT.service"))
        }
    }

    public var description: String {
        switch cls {
        case .ocf: return "ocf:\(provider ?? "?"):\(type)"
        case .lsb: return "lsb:\(type)"
        case .script: return "script:\(type)"
        case .systemd: return "systemd:\(type)"
        }
    }

    public var executable: String {
        switch cls {
        case .ocf: return "\(Self.ocfRoot)/resource.d/\(provider ?? "")/\(type)"
        case .lsb: return "/etc/init.d/\(type)"
        case .script: return type
        case .systemd: return "systemd unit \(type)"  // (no executable: run through D-Bus)
        }
    }

    /// The argument for an operation: OCF calls it monitor, LSB and scripts call it status.
    public func argument(for op: AgentOperation) -> String {
        switch (cls, op) {
        case (.ocf, _): return op.rawValue
        case (_, .monitor): return "status"
        default: return op.rawValue
        }
    }

    /// Standard OCF environment for an operation (OCF 1.1 section "Environment").
    /// `migration`: the source and target node names of a migrate_to or migrate_from.
    public func environment(resource: String, params: [(String, String)], op: AgentOperation, timeoutMs: UInt64, intervalMs: UInt64,
                            migration: (source: String, target: String)? = nil) -> [String: String] {
        var env: [String: String] = [
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C",
        ]
        guard cls == .ocf else { return env }
        env["OCF_ROOT"] = Self.ocfRoot
        env["OCF_FUNCTIONS_DIR"] = Self.ocfRoot + "/lib/heartbeat"
        env["OCF_RA_VERSION_MAJOR"] = "1"
        env["OCF_RA_VERSION_MINOR"] = "1"
        env["OCF_RESOURCE_INSTANCE"] = resource
        env["OCF_RESOURCE_TYPE"] = type
        env["OCF_RESOURCE_PROVIDER"] = provider ?? ""
        env["OCF_RESKEY_CRM_meta_timeout"] = String(timeoutMs)
        env["OCF_RESKEY_CRM_meta_interval"] = String(op == .monitor ? intervalMs : 0)
        env["HA_RSCTMP"] = "/run/resource-agents"
        if let m = migration {
            env["OCF_RESKEY_CRM_meta_migrate_source"] = m.source
            env["OCF_RESKEY_CRM_meta_migrate_target"] = m.target
        }
        for (k, v) in params { env["OCF_RESKEY_\(k)"] = v }
        return env
    }
}

public enum AgentOperation: String, Sendable, Codable, CaseIterable {
    case start, stop, monitor
    /// Live migration (OCF): on the source, then on the target (`allow_migrate`).
    case migrateTo = "migrate_to", migrateFrom = "migrate_from"
    case metaData = "meta-data"
    case validateAll = "validate-all"
}

/// What an operation's outcome means for recovery.
public enum OperationOutcome: Equatable, Sendable, CustomStringConvertible {
    case success
    /// Monitor: cleanly not running (OCF_NOT_RUNNING, LSB status 1-3).
    case notRunning
    /// Worth a restart or a move (OCF_ERR_GENERIC, unknown codes, timeouts, signals).
    case softError(String)
    /// Cannot work on this node (OCF_ERR_ARGS, OCF_ERR_PERM, OCF_ERR_INSTALLED): ban here.
    case hardError(String)
    /// The configuration itself is wrong (OCF_ERR_CONFIGURED): ban everywhere.
    case fatalError(String)

    public var description: String {
        switch self {
        case .success: return "ok"
        case .notRunning: return "not running"
        case .softError(let s), .hardError(let s), .fatalError(let s): return s
        }
    }

    public var isFailure: Bool {
        switch self {
        case .success, .notRunning: return false
        default: return true
        }
    }
}

public enum ProcessEnd: Equatable, Sendable {
    case exited(Int32)
    case signalled(Int32)
    case timedOut
    case couldNotRun(String)
}

extension AgentSpec {
    /// Maps how an agent process ended to what it means, per class and operation.
    public func outcome(of end: ProcessEnd, op: AgentOperation) -> OperationOutcome {
        let code: Int32
        switch end {
        case .timedOut: return .softError("\(op.rawValue) timed out (process group killed)")
        case .signalled(let s): return .softError("\(op.rawValue) killed by signal \(s)")
        case .couldNotRun(let why): return .hardError("cannot run \(executable): \(why)")
        case .exited(let c): code = c
        }
        switch cls {
        case .ocf:
            switch code {
            case 0: return .success
            case 7: return op == .monitor ? .notRunning : (op == .stop ? .success : .softError("\(op.rawValue) returned OCF_NOT_RUNNING (7)"))
            case 1: return .softError("\(op.rawValue) failed: OCF_ERR_GENERIC (1)")
            case 2: return .hardError("\(op.rawValue) failed: OCF_ERR_ARGS (2)")
            case 3: return .hardError("\(op.rawValue) failed: OCF_ERR_UNIMPLEMENTED (3)")
            case 4: return .hardError("\(op.rawValue) failed: OCF_ERR_PERM (4)")
            case 5: return .hardError("\(op.rawValue) failed: OCF_ERR_INSTALLED (5)")
            case 6: return .fatalError("\(op.rawValue) failed: OCF_ERR_CONFIGURED (6)")
            case 190: return op == .monitor ? .success : .softError("\(op.rawValue) returned OCF_DEGRADED (190)")
            default: return .softError("\(op.rawValue) returned unknown exit code \(code)")
            }
        case .systemd:
            return .softError("\(op.rawValue) of \(type) ended with \(end)")  // (results come from systemd, see SystemdUnit)
        case .lsb, .script:
            if op == .monitor {
                switch code {
                case 0: return .success
                case 1, 2, 3: return .notRunning
                default: return .softError("status returned \(code) (LSB: unknown state)")
                }
            }
            switch code {
            case 0: return .success
            case 5: return .hardError("\(op.rawValue) failed: program not installed (5)")
            case 6: return .fatalError("\(op.rawValue) failed: program not configured (6)")
            default: return .softError("\(op.rawValue) failed with exit code \(code)")
            }
        }
    }
}

/// An agent's self-description (the `meta-data` action's XML).
public struct AgentMetadata: Sendable, Equatable, Codable {
    public struct Parameter: Sendable, Equatable, Codable {
        public var name: String
        public var required: Bool
        public var unique: Bool
        public var type: String
        public var defaultValue: String?
        public var shortdesc: String
        /// `private="1"`: the value is a secret (Pacemaker's convention): never logged or shown.
        public var isPrivate = false
    }
    public struct Action: Sendable, Equatable, Codable {
        public var name: String
        public var timeout: String?
        public var interval: String?
        public init(name: String, timeout: String?, interval: String?) {
            self.name = name
            self.timeout = timeout
            self.interval = interval
        }
    }
    public var name: String
    public var version: String?
    public var shortdesc: String
    public var parameters: [Parameter]
    public var actions: [Action]

    public init(name: String, version: String?, shortdesc: String, parameters: [Parameter], actions: [Action]) {
        self.name = name
        self.version = version
        self.shortdesc = shortdesc
        self.parameters = parameters
        self.actions = actions
    }

    /// Parses OCF meta-data XML. Tolerant of unknown elements; strict about what it needs.
    public static func parse(_ xml: String) -> Result<AgentMetadata, PrefixParseError> {
        guard let nodes = MiniXML.parse(xml) else {
            return .failure(.init(message: "meta-data nests elements more than \(MiniXML.maxDepth) deep"))
        }
        guard let root = nodes.first(where: { $0.name == "resource-agent" }) else {
            return .failure(.init(message: "meta-data has no <resource-agent> element"))
        }
        var md = AgentMetadata(name: root.attributes["name"] ?? "?", version: root.child("version")?.text,
                               shortdesc: root.child("shortdesc")?.text ?? "", parameters: [], actions: [])
        for p in root.child("parameters")?.children.filter({ $0.name == "parameter" }) ?? [] {
            guard let name = p.attributes["name"] else { continue }
            let content = p.child("content")
            md.parameters.append(Parameter(
                name: name, required: p.attributes["required"] == "1" || p.attributes["required"] == "true",
                unique: p.attributes["unique"] == "1" || p.attributes["unique"] == "true",
                type: content?.attributes["type"] ?? "string", defaultValue: content?.attributes["default"],
                shortdesc: p.child("shortdesc")?.text ?? "",
                isPrivate: p.attributes["private"] == "1" || p.attributes["private"] == "true"))
        }
        for a in root.child("actions")?.children.filter({ $0.name == "action" }) ?? [] {
            guard let name = a.attributes["name"] else { continue }
            md.actions.append(Action(name: name, timeout: a.attributes["timeout"], interval: a.attributes["interval"]))
        }
        return .success(md)
    }

    /// Names of the parameters marked private.
    public var privateParameters: Set<String> { Set(parameters.filter(\.isPrivate).map(\.name)) }

    /// Checks resource parameters against the agent's list: unknown or missing required ones.
    public func check(_ params: [String]) -> String? {
        let known = Set(parameters.map(\.name))
        let unknown = params.filter { !known.contains($0) }
        let missing = parameters.filter { $0.required && !params.contains($0.name) }.map(\.name)
        guard !unknown.isEmpty || !missing.isEmpty else { return nil }
        var parts: [String] = []
        if !unknown.isEmpty { parts.append("unknown parameter(s) \(unknown.joined(separator: ", "))") }
        if !missing.isEmpty { parts.append("missing required parameter(s) \(missing.joined(separator: ", "))") }
        let list = parameters.map { "\($0.name)\($0.required ? " (required)" : "")" }.joined(separator: ", ")
        return parts.joined(separator: "; ") + "; \(name) takes: " + (list.isEmpty ? "no parameters" : list)
    }
}
