import VigilCore
import VigilSystem

public enum ConfigSummary {
    public static func describe(_ s: NodeSetup) -> String {
        let c = s.cluster
        let t = c.timing
        var lines = [
            "\(s.configPath): OK",
            "cluster \(c.name): \(c.nodes.count) nodes, majority \(c.majority), no_quorum_policy=\(c.noQuorumPolicy.rawValue)",
            "this node: \(s.node.name) (id \(s.node.id)), state_dir \(c.stateDir(for: s.node)), ipc_name \(c.ipcName(for: s.node))",
            "links: " + c.links.map { "\($0.name) port \($0.port)" }.joined(separator: ", "),
            "timing: heartbeat every \(t.interval) ms, peer lost after \(t.timeout) ms, lease \(t.lease) ms (guard \(t.guardTime) ms)",
            "worst case from a node's last heartbeat to its addresses starting elsewhere: \(t.worstCaseTakeover) ms",
            "key file \(c.keyFile): \(s.key.count) bytes, permissions OK",
        ]
        for n in c.nodes { lines.append("  node \(n.name) id \(n.id): " + n.addresses.map(\.description).joined(separator: ", ")) }
        return lines.joined(separator: "\n")
    }
}

public enum Cleanup {
    /// The unit's clean-up after clusterd exited: nothing while the configuration this node
    /// stored says the cluster is in maintenance (the addresses stay for the next clusterd,
    /// which adopts them), else every address carrying Vigil's mark. Returns how many went.
    public static func afterExit(_ setup: NodeSetup, log: EventLog) throws -> Int {
        let store = try StateStore(dir: setup.cluster.stateDir(for: setup.node))
        if let v = try? store.loadResources(), let set = try? ResourceSet.parse(v.text, file: "resources", cluster: setup.cluster), set.maintenance {
            log.info("cleanup: the cluster is in maintenance (configuration version \(v.version)): addresses left in place")
            return 0
        }
        return try removeLeftovers(log: log)
    }

    /// Removes every address carrying Vigil's protocol mark. Returns how many were removed.
    public static func removeLeftovers(log: EventLog) throws -> Int {
        let nl = try AddressManager()
        var n = 0
        for f in try nl.list() where f.proto == AddressManager.proto {
            guard let ifname = Interfaces.name(ofIndex: f.ifindex) else { continue }
            let p = IPPrefix(address: f.address, length: f.prefixLength)
            try nl.remove(p, interface: ifname)
            log.info("cleanup removed address=\(p) interface=\(ifname)")
            n += 1
        }
        return n
    }
}
