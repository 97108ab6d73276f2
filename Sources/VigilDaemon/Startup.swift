import Glibc
import VigilCore
import VigilSystem

/// Everything clusterd needs before it can run, validated up front.
public struct NodeSetup: Sendable {
    public var cluster: ClusterConfig
    public var node: ClusterConfig.Node
    public var key: [UInt8]
    public var configPath: String

    /// Loads the cluster file and key and finds which node this is:
    /// `--node NAME`, else the hostname, else a node address configured on this machine.
    public static func load(configPath: String, nodeName: String?) throws(ConfigError) -> NodeSetup {
        let text: String
        do {
            text = try Files.readText(configPath)
        } catch {
            throw ConfigError(file: configPath, message: "cannot read: \(error)")
        }
        let cluster = try ClusterConfig.parse(text, file: configPath)
        let key = try KeyFile.load(cluster.keyFile, configFile: configPath)
        let node: ClusterConfig.Node
        if let nodeName {
            guard let n = cluster.node(named: nodeName) else {
                throw ConfigError(file: configPath, key: "node", message: "--node '\(nodeName)' is not one of: \(cluster.nodes.map(\.name).joined(separator: ", "))")
            }
            node = n
        } else if let h = Host.hostname(), let n = cluster.node(named: h) ?? cluster.node(named: String(h.split(separator: ".").first ?? "")) {
            node = n
        } else {
            let local = Host.localAddresses()
            let matches = cluster.nodes.filter { $0.addresses.contains(where: local.contains) }
            guard matches.count == 1, let n = matches.first else {
                throw ConfigError(file: configPath, key: "node", message: "cannot tell which node this is: the hostname '\(Host.hostname() ?? "?")' is not a node name and \(matches.isEmpty ? "no" : "more than one") node's address is configured here; pass --node NAME")
            }
            node = n
        }
        return NodeSetup(cluster: cluster, node: node, key: key, configPath: configPath)
    }
}
