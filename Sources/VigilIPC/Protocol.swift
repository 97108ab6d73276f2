import VigilCore

/// hactl <-> clusterd requests, carried as JSON after libqb's request header.
public struct IPCRequest: Codable, Sendable {
    public enum Command: String, Codable, Sendable {
        case status
        case configShow = "config-show"
        case apply
        case cleanup
        case standby
        case unstandby
        /// Fence a node by hand (text: node name).
        case fence
        /// An operator says a node is off (text: node name).
        case fenceConfirm = "fence-confirm"
        case fenceHistory = "fence-history"
        /// Planned moves: `resource`, `node` (optional for move), `lifetimeMs`.
        case move
        case ban
        case clear
        /// Maintenance (text: "on" or "off"), and one resource (`resource`) left alone or not.
        case maintenance
        case unmanage
        case manage
        /// Every node's holdings and failures as this node knows them (`hactl snapshot`).
        case facts
        /// What-if: the scheduler on the live state with `whatIf` changes imagined (`hactl simulate`).
        case simulate
        /// The same with a new resources file in `text` (`hactl apply --dry-run`, `simulate -f`):
        /// admin only, as apply (it carries a file).
        case dryRun = "dry-run"
        /// `hactl status --watch`: the status now, then every change as an event on the connection.
        case watch
        /// `hactl history`: every reachable node's journal merged (`sinceMs`, `resource`, `node`).
        case history
    }
    public var command: Command
    public var text: String?
    public var resource: String? = nil
    public var node: String? = nil
    public var lifetimeMs: UInt64? = nil
    public var whatIf: [WhatIf.Change]? = nil
    /// `history`: events of the last this many milliseconds only.
    public var sinceMs: UInt64? = nil
    public init(command: Command, text: String? = nil) {
        self.command = command
        self.text = text
    }
    public init(command: Command, resource: String, node: String?, lifetimeMs: UInt64?) {
        self.command = command
        self.resource = resource
        self.node = node
        self.lifetimeMs = lifetimeMs
    }
    /// Commands that change the cluster: root or the admin group only.
    public var isChange: Bool { ![.status, .configShow, .fenceHistory, .facts, .simulate, .watch, .history].contains(command) }
}

public struct IPCResponse: Codable, Sendable {
    public var ok: Bool
    public var message: String?
    public var status: ClusterStatus?
    public var configVersion: UInt64?
    public var configText: String?
    public var facts: [ClusterStatus.NodeFacts]? = nil
    public var standby: [String]? = nil
    public var fenceHistory: [FenceRecord]? = nil
    /// The answer did not fit this connection's rings: ask again with buffers this large.
    public var needBuffer: Int? = nil
    public var whatIf: WhatIf.Report? = nil
    public var history: History.Report? = nil
    public init(ok: Bool, message: String? = nil, status: ClusterStatus? = nil, configVersion: UInt64? = nil, configText: String? = nil) {
        self.ok = ok
        self.message = message
        self.status = status
        self.configVersion = configVersion
        self.configText = configText
    }
}

public enum IPCLimits {
    public static let maxMessage = 2 * 1024 * 1024
    /// The largest buffer a client may ask for (libqb's enforced size is a minimum, and a client
    /// asking for a gigabyte would get rings of that size).
    public static let maxBuffer = maxMessage
    /// The rings a question starts with (and the server's minimum). libqb creates, maps and
    /// zeroes them on every connection: three rings of 2 MB cost hactl about 5 ms per call,
    /// three of 64 KB half a millisecond. An answer that does not fit comes back as
    /// `needBuffer`, and the client asks again over a connection with rings that large.
    public static let initialBuffer = 64 * 1024
    /// Room libqb's ring keeps beside a message (chunk header and margin), generously.
    public static let ringSlack = 4096
    /// Open connections at once, and per user other than root (hactl holds one per call).
    public static let maxConnections = 32
    public static let maxConnectionsPerUser = 4
    /// The largest request from a user outside root and the admin group (status, config show
    /// and agent questions are small; only changes carry files).
    public static let maxUnprivilegedRequest = 16 * 1024
    public static let requestHeader = 16  // struct qb_ipc_request_header (two 8-aligned int32)
    public static let responseHeader = 24  // struct qb_ipc_response_header
}
