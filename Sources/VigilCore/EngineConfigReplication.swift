/// Configuration replication: proposals go to the coordinator, which stores a new version and
/// answers once a majority stored it; every node fetches a newer version from whoever announces it.
extension Engine {
    /// `hactl apply` on this node.
    public mutating func proposeConfig(requestId: UInt64, text: String, now: UInt64) -> [Directive] {
        var out: [Directive] = []
        // Validate locally first: a clear error without a round trip, nothing sent.
        do {
            _ = try ResourceSet.parse(text, file: "resources", cluster: cluster)
        } catch {
            return [.reply(requestId: requestId, ok: false, version: resources.version, message: error.description)]
        }
        if isCoordinator {
            handleProposal(requestId: requestId, origin: selfId, text: text, now: now, out: &out)
        } else if authority != 0, authority != selfId {
            forwarded.append(ForwardedRequest(requestId: requestId, deadline: now + 5000))
            out.append(.send(to: authority, .configProposal(requestId: requestId, text: text)))
        } else {
            out.append(.reply(requestId: requestId, ok: false, version: resources.version,
                              message: "this node is not part of a quorate partition with a coordinator; nothing was changed"))
        }
        return evaluate(now: now, out: &out)
    }

    /// `hactl standby NODE` / `hactl unstandby NODE` on this node.
    public mutating func proposeStandby(requestId: UInt64, node: String, on: Bool, now: UInt64) -> [Directive] {
        var out: [Directive] = []
        guard cluster.node(named: node) != nil else {
            return [.reply(requestId: requestId, ok: false, version: resources.version,
                           message: "'\(node)' is not a node of cluster '\(cluster.name)' (nodes: \(cluster.nodes.map(\.name).joined(separator: ", ")))")]
        }
        if isCoordinator {
            handleStandby(requestId: requestId, origin: selfId, node: node, on: on, out: &out)
        } else if authority != 0, authority != selfId {
            forwarded.append(ForwardedRequest(requestId: requestId, deadline: now + 5000))
            out.append(.send(to: authority, .standbyProposal(requestId: requestId, node: node, on: on)))
        } else {
            out.append(.reply(requestId: requestId, ok: false, version: resources.version,
                              message: "this node is not part of a quorate partition with a coordinator; nothing was changed"))
        }
        return evaluate(now: now, out: &out)
    }

    mutating func handleStandby(requestId: UInt64, origin: UInt32, node: String, on: Bool, out: inout [Directive]) {
        func reply(_ ok: Bool, _ msg: String) {
            if origin == selfId {
                out.append(.reply(requestId: requestId, ok: ok, version: resources.version, message: msg))
            } else {
                out.append(.send(to: origin, .configResult(requestId: requestId, ok: ok, version: resources.version, message: msg)))
            }
        }
        guard isCoordinator else { return reply(false, "\(selfName) is no longer the coordinator; retry") }
        guard isMember(origin) else { return }
        guard cluster.node(named: node) != nil else { return reply(false, "'\(node)' is not a node of this cluster") }
        let newestKnown = peers.values.filter(\.member).compactMap { $0.report?.configVersion }.max() ?? 0
        guard resources.version >= newestKnown else { return reply(false, "the coordinator is still synchronising; retry in a moment") }
        var set = Set(resources.standby)
        if on { set.insert(node) } else { set.remove(node) }
        if set == Set(resources.standby) { return reply(true, "\(node) is \(on ? "already" : "not") in standby; nothing changed") }
        let next = VersionedResources(version: max(resources.version, newestKnown) + 1, text: resources.text, standby: Array(set))
        resources = next
        out.append(.persist(next))
        out.append(.event(.configAdopted(next.version, from: name(of: origin))))
        out.append(.event(on ? .standby(node) : .unstandby(node)))
        reply(true, on ? "\(node) is in standby (version \(next.version)): its resources move away" : "\(node) is out of standby (version \(next.version))")
        urgent = true
    }

    // MARK: - config replication

    mutating func handleProposal(requestId: UInt64, origin: UInt32, text: String, now: UInt64, out: inout [Directive]) {
        func fail(_ msg: String) {
            if origin == selfId {
                out.append(.reply(requestId: requestId, ok: false, version: resources.version, message: msg))
            } else {
                out.append(.send(to: origin, .configResult(requestId: requestId, ok: false, version: resources.version, message: msg)))
            }
        }
        guard isCoordinator else { return fail("\(selfName) is no longer the coordinator; retry") }
        // Only from members: a packet of a node we have no two-way contact with is stale.
        guard isMember(origin) else { return }
        let newestKnown = peers.values.filter(\.member).compactMap { $0.report?.configVersion }.max() ?? 0
        guard resources.version >= newestKnown else {
            return fail("the coordinator is still synchronising configuration version \(newestKnown); retry in a moment")
        }
        let set: ResourceSet
        do {
            set = try ResourceSet.parse(text, file: "resources", cluster: cluster)
        } catch {
            return fail(error.description)
        }
        let next = VersionedResources(version: max(resources.version, newestKnown) + 1, text: text, standby: resources.standby)
        resources = next
        restartChanged(from: resourceSet, to: set)
        resourceSet = set
        out.append(.persist(next))
        out.append(.adoptResources(set))
        out.append(.event(.configAdopted(next.version, from: name(of: origin))))
        pendingCommits.append(PendingCommit(requestId: requestId, origin: origin, version: next.version, digest: next.digest, deadline: now + 5000))
        urgent = true
    }

    mutating func adoptConfig(_ candidate: VersionedResources, from sender: UInt32, out: inout [Directive]) {
        guard candidate.isNewer(than: resources), !rejectedDigests.contains(candidate.digest) else { return }
        do {
            let set = try ResourceSet.parse(candidate.text, file: "resources v\(candidate.version) from \(name(of: sender))", cluster: cluster)
            if candidate.standby != resources.standby { out.append(.event(.standbyChanged(candidate.standby))) }
            resources = candidate
            restartChanged(from: resourceSet, to: set)
        resourceSet = set
            out.append(.persist(candidate))
            out.append(.adoptResources(set))
            out.append(.event(.configAdopted(candidate.version, from: name(of: sender))))
            urgent = true
        } catch {
            rejectedDigests.insert(candidate.digest)
            out.append(.event(.configRejected(candidate.version, error.description)))
        }
    }

    mutating func checkCommits(now: UInt64, out: inout [Directive]) {
        guard !pendingCommits.isEmpty else { return }
        var keep: [PendingCommit] = []
        for c in pendingCommits {
            let stored = 1 + peers.values.filter { $0.member && $0.report?.configVersion == c.version && $0.report?.configDigest == c.digest }.count
            var result: (Bool, String)?
            if resources.version != c.version || resources.digest != c.digest {
                result = (false, "superseded by version \(resources.version) before it was confirmed")
            } else if stored >= cluster.majority {
                result = (true, "applied as version \(c.version), stored on \(stored) of \(cluster.nodes.count) nodes")
            } else if now >= c.deadline {
                result = (false, "version \(c.version) is in force on the coordinator but only \(stored) of \(cluster.nodes.count) nodes confirmed storing it")
            }
            guard let (ok, msg) = result else {
                keep.append(c)
                continue
            }
            if c.origin == selfId {
                out.append(.reply(requestId: c.requestId, ok: ok, version: c.version, message: msg))
            } else {
                out.append(.send(to: c.origin, .configResult(requestId: c.requestId, ok: ok, version: c.version, message: msg)))
            }
        }
        pendingCommits = keep
        var fkeep: [ForwardedRequest] = []
        for f in forwarded {
            if now >= f.deadline {
                out.append(.reply(requestId: f.requestId, ok: false, version: resources.version, message: "no answer from the coordinator within 5 s; check 'hactl config show' before retrying"))
            } else {
                fkeep.append(f)
            }
        }
        forwarded = fkeep
    }

}
