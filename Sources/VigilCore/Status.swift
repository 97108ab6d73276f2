/// What `hactl status` shows. Produced by the engine, enriched by the daemon, sent as JSON over IPC.
public struct ClusterStatus: Codable, Sendable, Equatable {
    public struct LinkStatus: Codable, Sendable, Equatable {
        public var name: String
        public var up: Bool
        public var lastHeardMsAgo: UInt64?
        public init(name: String, up: Bool, lastHeardMsAgo: UInt64?) {
            self.name = name
            self.up = up
            self.lastHeardMsAgo = lastHeardMsAgo
        }
    }
    public struct NodeStatus: Codable, Sendable, Equatable {
        public var name: String
        public var id: NodeID
        /// "local", "online", "offline", "leaving"
        public var state: String
        public var links: [LinkStatus]
        public var vote: NodeID?
        public var standby: Bool? = nil
        /// "witness" for a node that only votes (absent: a data node).
        public var role: String? = nil
    }
    public struct ResourceStatus: Codable, Sendable, Equatable {
        public var name: String
        public var kind: String
        public var address: String
        /// Node the coordinator assigned it to, if any.
        public var assignedTo: String?
        /// Nodes reporting that they run it.
        public var runningOn: [String]
        /// "started", "starting", "stopped", "moving", "failed", "unknown"
        public var state: String
        public var detail: String?
        public var group: String?
        public var failCount: Int?
    }
    public struct Counters: Codable, Sendable, Equatable {
        public var accepted: UInt64 = 0
        public var forged: UInt64 = 0
        public var replayed: UInt64 = 0
        public var malformed: UInt64 = 0
        public var incompatible: UInt64 = 0
        public var foreignCluster: UInt64 = 0
        public var unknownSender: UInt64 = 0
        /// Datagrams the kernel refused to send (too large, no route, buffer full).
        public var sendErrors: UInt64? = nil
        /// Authentic packets sealed for another node, another life of this one, or another link.
        public var misdirected: UInt64? = nil
        /// Datagrams longer than any node sends, dropped before their MAC is computed.
        public var oversize: UInt64? = nil
        public init() {}
    }

    /// What one node holds, runs and failed, as this node last heard (`hactl snapshot`).
    public struct NodeFacts: Codable, Sendable, Equatable {
        public var name: String
        public var member: Bool
        public var held: [String]
        public var started: [String]
        public var failed: [String]
        public init(name: String, member: Bool, held: [String], started: [String], failed: [String]) {
            self.name = name
            self.member = member
            self.held = held
            self.started = started
            self.failed = failed
        }
    }

    /// The JSON format's version (README "Status JSON"): 1; later versions only add fields.
    public var format: Int? = ClusterStatus.formatVersion
    /// `hactl status --watch --output json`: hactl's monotonic clock (ms) when this arrived.
    public var watchedAtMonoMs: UInt64? = nil
    public static let formatVersion = 1
    public var cluster: String
    public var localNode: String
    public var quorate: Bool
    public var votesForLocal: Int
    public var majority: Int
    public var coordinator: String?
    public var localIsCoordinator: Bool
    public var leaseRemainingMs: UInt64?
    public var noQuorumPolicy: String
    public var configVersion: UInt64
    public var nodes: [NodeStatus]
    public var resources: [ResourceStatus]
    public var counters: Counters
    public var incompatiblePeers: [String]
    /// Peers that last spoke the previous protocol version (a rolling upgrade in progress).
    public var olderProtocolPeers: [String]? = nil
    /// Nodes being fenced, whose fencing failed, or fenced and still off; absent: none.
    public var fencing: [FenceState]? = nil
    /// Fence devices and this node's last monitor of each; absent: no devices.
    public var fenceDevices: [FenceDeviceState]? = nil
    /// What `hactl move` and `ban` added (one line each); absent: none.
    public var constraints: [String]? = nil
    /// The cluster is in maintenance (`hactl maintenance on`); absent: not.
    public var maintenance: Bool? = nil
    /// Resources (or groups) `hactl unmanage` left alone; absent: none.
    public var unmanaged: [String]? = nil

    public struct FenceState: Codable, Sendable, Equatable {
        public var node: String
        /// "fencing", "failed" (retried), "fenced", "fenced-while-running" (this node)
        public var state: String
        public var detail: String?
        public init(node: String, state: String, detail: String?) {
            self.node = node
            self.state = state
            self.detail = detail
        }
    }
    public struct FenceDeviceState: Codable, Sendable, Equatable {
        public var name: String
        public var agent: String
        public var nodes: [String]
        /// nil: not monitored yet.
        public var ok: Bool?
        public var detail: String?
        public init(name: String, agent: String, nodes: [String], ok: Bool?, detail: String?) {
            self.name = name
            self.agent = agent
            self.nodes = nodes
            self.ok = ok
            self.detail = detail
        }
    }
}
