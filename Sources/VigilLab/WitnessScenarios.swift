import Foundation

extension Lab {
    /// Drops every frame between nodes `a` and `b` on both links (`on`), or lets them pass again:
    /// a split of two nodes that both still reach every other node. An nftables bridge rule in
    /// the switch namespace, in a table of its own (the loss rule is independent).
    public func split(_ a: Int, _ b: Int, _ on: Bool) throws {
        _ = Lab.run("/usr/sbin/ip", ["netns", "exec", switchNS, "nft", "delete", "table", "bridge", "vigil_split"])
        guard on else { return }
        let pa = [0, 1].map { "\"\(hostVeth(a, $0))\"" }.joined(separator: ", ")
        let pb = [0, 1].map { "\"\(hostVeth(b, $0))\"" }.joined(separator: ", ")
        let rules = """
            table bridge vigil_split {
                chain forward {
                    type filter hook forward priority -1; policy accept;
                    iifname { \(pa) } oifname { \(pb) } counter drop
                    iifname { \(pb) } oifname { \(pa) } counter drop
                }
            }
            """
        let r = Lab.run("/usr/sbin/ip", ["netns", "exec", switchNS, "nft", "-f", "-"], stdin: rules)
        guard r.code == 0 else { throw LabError("nft in \(switchNS) failed (\(r.code)): \(r.err)") }
    }
}

extension Scenarios {
    /// Two data nodes (1 and 2) and a witness (3): one address on each data node.
    public static func startTwoNodesAndWitness(lab: Lab, log: (String) -> Void = { _ in }) throws {
        guard lab.options.witnesses == [3], lab.options.nodes == 3 else { throw LabError("needs a lab of three nodes with node3 the witness") }
        try lab.startAll()
        try lab.waitFor("a quorate cluster", timeout: 20) { (1...3).allSatisfy { lab.status($0)?.quorate ?? false } }
        _ = try lab.apply(1, resources: perNodeAddresses(2))
        try lab.waitFor("every address on its node", timeout: 20) { (1...2).allSatisfy { lab.owners(of: address($0)) == [$0] } }
        log("cluster up: two data nodes and a witness, one address on each data node")
    }

    public struct SplitResult: Sendable {
        /// ARP watch of each data node's address during the split.
        public var arp: [ARPWatch.Result]
        /// What the data nodes stopped or removed during the split (log lines).
        public var stops: [String]
        public var ownersAfter: [[Int]]
        /// Mid-split, how node1 saw node2 and node2 saw node1 (proof that the split happened).
        public var peerStates: [String]
    }

    /// Cuts the two data nodes from each other (the witness still hears both) for `seconds`,
    /// while an ARP watcher in the client namespace asks for both addresses every 10 ms.
    public static func dataNodeSplit(lab: Lab, seconds: Double, log: (String) -> Void = { _ in }) throws -> SplitResult {
        try startTwoNodesAndWitness(lab: lab, log: log)
        let watchers = try (1...2).map { try ARPWatcher(lab: lab, address: address($0), seconds: Int(seconds) + 3, name: "arpwatch-\($0).out") }
        Thread.sleep(forTimeInterval: 1)
        let t0 = Int(Lab.monoNowMs())
        try lab.split(1, 2, true)
        log("node1 and node2 cut from each other; the witness hears both")
        Thread.sleep(forTimeInterval: seconds / 2)
        let peerStates = [(1, "node2"), (2, "node1")].map { (i, peer) in lab.status(i)?.nodes.first { $0.name == peer }?.state ?? "?" }
        Thread.sleep(forTimeInterval: seconds / 2)
        try lab.split(1, 2, false)
        let results = try watchers.map { try $0.result() }
        let stops = lab.allEvents().filter { $0.mono >= t0 && ($0.text.hasPrefix("resource-stopping") || $0.text.hasPrefix("address-removed")) }
            .map { "\($0.node): \($0.text)" }
        return SplitResult(arp: results, stops: stops, ownersAfter: (1...2).map { lab.owners(of: address($0)) }, peerStates: peerStates)
    }

    /// Kills the witness (SIGKILL, links down) and watches for `seconds`: what the data nodes
    /// stopped or removed (log lines), and who owns each address afterwards.
    public static func witnessDeath(lab: Lab, seconds: Double, log: (String) -> Void = { _ in }) throws -> (stops: [String], owners: [[Int]]) {
        try startTwoNodesAndWitness(lab: lab, log: log)
        let t0 = Int(Lab.monoNowMs())
        lab.kill(3)
        try lab.setLinks(3, up: false)
        log("witness killed")
        Thread.sleep(forTimeInterval: seconds)
        let stops = lab.allEvents().filter { $0.mono >= t0 && $0.node != lab.nodeName(3) && ($0.text.hasPrefix("resource-stopping") || $0.text.hasPrefix("address-removed")) }
            .map { "\($0.node): \($0.text)" }
        return (stops, (1...2).map { lab.owners(of: address($0)) })
    }
}
