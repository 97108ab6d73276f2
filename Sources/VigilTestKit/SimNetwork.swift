import VigilCore

/// The simulated network's faults: cuts, partitions, loss, delay, duplication and bursts.
extension SimCluster {
    public mutating func setPath(from a: NodeID, to b: NodeID, up: Bool, links: [Int]? = nil) {
        for l in links ?? Array(0..<cluster.links.count) { paths[Path(from: a, to: b, link: l)]?.up = up }
    }

    /// Cuts all traffic between the groups (symmetric partition).
    public mutating func partition(_ groups: [[NodeID]]) {
        for (k, _) in paths { paths[k]?.up = true }
        for (i, g) in groups.enumerated() {
            for (j, h) in groups.enumerated() where i != j {
                for a in g { for b in h { setPath(from: a, to: b, up: false) } }
            }
        }
    }

    public mutating func heal() {
        for (k, _) in paths { paths[k]?.up = true }
    }

    public mutating func setAll(loss: Double, delay: UInt64, jitter: UInt64, duplicate: Double = 0, links: [Int]? = nil) {
        for (k, _) in paths where links?.contains(k.link) ?? true {
            paths[k]?.loss = loss
            paths[k]?.delay = delay
            paths[k]?.jitter = jitter
            paths[k]?.duplicate = duplicate
        }
    }

    /// Loss in bursts: each packet may start a `ms`-long outage of its path.
    public mutating func setBursts(probability: Double, ms: UInt64) {
        for (k, _) in paths {
            paths[k]?.burst = probability
            paths[k]?.burstMs = ms
        }
    }
}
