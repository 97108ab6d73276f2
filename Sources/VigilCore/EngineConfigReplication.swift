/// Configuration replication: proposals go to the coordinator, which stores a new version and
/// answers once a majority stored it; every node fetches a newer version from whoever announces it.
extension Engine {
    /// `hactl apply` on this node.
    public mutating func proposeConfig(requestId: UInt64, text: String, now: UInt64) -> [Directive] {
        var out: [Directive] = []
        // Validate locally first: a clear error without a round trip, nothing sent.
        let parsed: ResourceSet
        do {
            parsed = try ResourceSet.parse(text, file: "resources", cluster: cluster)
        } catch {
            return [.reply(requestId: requestId, ok: false, version: resources.version, message: error.description)]
        }
        if isCoordinator {
            // (Parsed once, not again in `handleProposal`: a large file costs the loop, and the
            // heartbeats behind it, that work once.)
            handleProposal(requestId: requestId, origin: selfId, text: text, parsed: parsed, now: now, out: &out)
        } else if let coordinator = authority, coordinator != selfId {
            let bytes = Array(text.utf8)
            var pieces: [Message] = []
            for offset in stride(from: 0, to: max(bytes.count, 1), by: Message.maxChunk) {
                let piece = Array(bytes[offset..<min(bytes.count, offset + Message.maxChunk)])
                pieces.append(.configProposal(requestId: requestId, offset: UInt32(offset), total: UInt32(bytes.count), chunk: piece))
            }
            for m in pieces { out.append(.send(to: coordinator, m)) }
            forwarded.append(ForwardedRequest(requestId: requestId, deadline: now + 5000, pieces: pieces, resendAt: now + 4 * timing.interval, to: coordinator))
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
        if !forwardUnlessCoordinator(.standbyProposal(requestId: requestId, node: node, on: on), requestId: requestId, now: now, out: &out) {
            handleStandby(requestId: requestId, origin: selfId, node: node, on: on, out: &out)
        }
        return evaluate(now: now, out: &out)
    }

    /// An operator's request on a node that is not the coordinator goes to the coordinator (its
    /// answer comes back as `configResult`), or is refused without one. False: handle it here.
    mutating func forwardUnlessCoordinator(_ msg: Message, requestId: UInt64, now: UInt64, out: inout [Directive]) -> Bool {
        if isCoordinator { return false }
        if let coordinator = authority, coordinator != selfId {
            forwarded.append(ForwardedRequest(requestId: requestId, deadline: now + 5000))
            out.append(.send(to: coordinator, msg))
        } else {
            out.append(.reply(requestId: requestId, ok: false, version: resources.version,
                              message: "this node is not part of a quorate partition with a coordinator; nothing was changed"))
        }
        return true
    }

    /// The coordinator's answer to a request from `origin` (this node or a forwarding one).
    func answer(requestId: UInt64, origin: NodeID, ok: Bool, _ msg: String, out: inout [Directive]) {
        if origin == selfId {
            out.append(.reply(requestId: requestId, ok: ok, version: resources.version, message: msg))
        } else {
            out.append(.send(to: origin, .configResult(requestId: requestId, ok: ok, version: resources.version, message: msg)))
        }
    }

    mutating func handleStandby(requestId: UInt64, origin: NodeID, node: String, on: Bool, out: inout [Directive]) {
        func reply(_ ok: Bool, _ msg: String) { answer(requestId: requestId, origin: origin, ok: ok, msg, out: &out) }
        guard isCoordinator else { return reply(false, "\(selfName) is no longer the coordinator; retry") }
        guard isMember(origin) else { return }
        guard cluster.node(named: node) != nil else { return reply(false, "'\(node)' is not a node of this cluster") }
        let (newestKnown, highest) = knownVersions()
        guard resources.version >= newestKnown else { return reply(false, "the coordinator is still synchronising; retry in a moment") }
        var set = Set(resources.standby)
        if on { set.insert(node) } else { set.remove(node) }
        if set == Set(resources.standby) { return reply(true, "\(node) is \(on ? "already" : "not") in standby; nothing changed") }
        let next = VersionedResources(version: highest + 1, text: resources.text, standby: Array(set))
        resources = next
        out.append(.persist(next))
        out.append(.event(.configAdopted(next.version, from: name(of: origin))))
        out.append(.event(on ? .standby(node) : .unstandby(node)))
        reply(true, on ? "\(node) is in standby (version \(next.version)): its resources move away" : "\(node) is out of standby (version \(next.version))")
        urgent = true
    }

    // MARK: - config replication

    mutating func handleProposal(requestId: UInt64, origin: NodeID, text: String, parsed: ResourceSet? = nil, now: UInt64, out: inout [Directive]) {
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
        let (newestKnown, highest) = knownVersions()
        guard resources.version >= newestKnown else {
            return fail("the coordinator is still synchronising configuration version \(newestKnown); retry in a moment")
        }
        let set: ResourceSet
        if let parsed {
            set = parsed
        } else {
            do {
                set = try ResourceSet.parse(text, file: "resources", cluster: cluster)
            } catch {
                return fail(error.description)
            }
        }
        let next = VersionedResources(version: highest + 1, text: text, standby: resources.standby)
        let previous = resources
        install(next, set: set, from: origin, out: &out)
        pendingCommits.append(PendingCommit(requestId: requestId, origin: origin, version: next.version, digest: next.digest, deadline: now + 5000, previous: previous))
        urgent = true
    }

    /// A validated configuration comes into force here: persisted, handed to the shell, and
    /// what runs with a changed definition restarts.
    mutating func install(_ v: VersionedResources, set: ResourceSet, from origin: NodeID, out: inout [Directive]) {
        resources = v
        restartChanged(from: resourceSet, to: set)
        resourceSet = set
        out.append(.persist(v))
        out.append(.adoptResources(set))
        out.append(.event(.configAdopted(v.version, from: name(of: origin))))
        urgent = true
    }

    /// Cut off (or deposed) before a majority stored this coordinator's latest change: every
    /// change still pending is taken back, to what the oldest of them replaced, and the operator
    /// is told. Peers that stored it keep it unconfirmed, and nobody takes it from them (see
    /// `VersionedResources.committed`).
    mutating func takeBackUnconfirmed(out: inout [Directive]) {
        guard !isCoordinator, let last = pendingCommits.last, let first = pendingCommits.first,
              resources.version == last.version, resources.digest == last.digest else { return }
        guard storedBy(version: last.version, digest: last.digest) < cluster.majority else { return }
        if let set = try? ResourceSet.parse(first.previous.text, file: "resources v\(first.previous.version)", cluster: cluster) {
            install(first.previous, set: set, from: selfId, out: &out)
        }
        for c in pendingCommits {
            let msg = "\(selfName) lost the coordinator role before a majority confirmed storing version \(c.version): taken back here "
                + "(version \(first.previous.version) is in force on \(selfName)); check 'hactl config show' before retrying"
            if c.origin == selfId {
                out.append(.reply(requestId: c.requestId, ok: false, version: c.version, message: msg))
            } else {
                out.append(.send(to: c.origin, .configResult(requestId: c.requestId, ok: false, version: c.version, message: msg)))
            }
        }
        pendingCommits = []
    }

    /// The newest confirmed version the members report (a coordinator must hold at least that
    /// before it makes a change), and the highest version anyone here holds (a change is
    /// numbered above it, so that it replaces unconfirmed leftovers too).
    func knownVersions() -> (confirmed: UInt64, highest: UInt64) {
        var confirmed: UInt64 = 0
        var highest = resources.version
        for p in peers.values where p.member {
            guard let r = p.report else { continue }
            if r.configCommitted { confirmed = max(confirmed, r.configVersion) }
            highest = max(highest, r.configVersion)
        }
        return (confirmed, highest)
    }

    /// What a peer's heartbeat says of its configuration: ours becomes confirmed when the peer
    /// says the same content is; one we must take (`VersionedResources.yields`) is fetched.
    mutating func considerConfig(_ h: Heartbeat, from sender: NodeID, now: UInt64, out: inout [Directive]) {
        if h.configVersion == resources.version && h.configDigest == resources.digest {
            if h.configCommitted && !resources.committed {
                resources.committed = true
                out.append(.persist(resources))
            }
            return
        }
        // The coordinator in office: it grants us a lease only within its term.
        let fromCoordinator = h.isCoordinator && h.leaseMs > 0
        guard !rejectedDigests.contains(h.configDigest),
              resources.yields(to: h.configVersion, digest: h.configDigest, committed: h.configCommitted, fromCoordinator: fromCoordinator),
              now >= configRequestedAt + timing.interval else { return }
        configRequestedAt = now
        configWanted = (h.configVersion, h.configDigest, h.configCommitted, fromCoordinator)
        // Resume a transfer of the same content where it stopped (a lost piece), from the
        // node it came from; otherwise start one from this sender.
        if let inc = incoming, inc.version == h.configVersion, inc.digest == h.configDigest {
            out.append(.send(to: inc.from, .configRequest(version: inc.version, offset: UInt32(inc.bytes.count))))
        } else {
            out.append(.send(to: sender, .configRequest(version: h.configVersion, offset: 0)))
        }
    }

    /// The coordinator: its configuration is confirmed once a majority stored it.
    mutating func confirmStored(out: inout [Directive]) {
        guard isCoordinator, !resources.committed, storedBy(version: resources.version, digest: resources.digest) >= cluster.majority else { return }
        resources.committed = true
        out.append(.persist(resources))
        urgent = true
    }

    mutating func adoptConfig(_ candidate: VersionedResources, fromCoordinator: Bool, from sender: NodeID, out: inout [Directive]) {
        guard resources.yields(to: candidate.version, digest: candidate.digest, committed: candidate.committed, fromCoordinator: fromCoordinator),
              !rejectedDigests.contains(candidate.digest) else { return }
        do throws(ConfigError) {
            // Standby names travel beside the text: a node that is not in the cluster file is
            // a damaged or foreign configuration, not a standby.
            let unknown = candidate.unknownStandby(in: cluster)
            if !unknown.isEmpty {
                throw ConfigError(file: "resources v\(candidate.version) from \(name(of: sender))", key: "standby",
                                  message: "names \(unknown.joined(separator: ", ")), not a node of cluster '\(cluster.name)'")
            }
            let set = try ResourceSet.parse(candidate.text, file: "resources v\(candidate.version) from \(name(of: sender))", cluster: cluster)
            if candidate.standby != resources.standby { out.append(.event(.standbyChanged(candidate.standby))) }
            install(candidate, set: set, from: sender, out: &out)
        } catch {
            rejectedDigests.insert(candidate.digest)
            out.append(.event(.configRejected(candidate.version, error.description)))
        }
    }

    /// This node and the members whose reports say they hold `version` with `digest`.
    func storedBy(version: UInt64, digest: UInt64) -> Int {
        1 + peers.values.filter { $0.member && $0.report?.configVersion == version && $0.report?.configDigest == digest }.count
    }

    mutating func checkCommits(now: UInt64, out: inout [Directive]) {
        // (No early return: forwarded requests time out even when nothing is pending here.)
        takeBackUnconfirmed(out: &out)
        confirmStored(out: &out)
        var keep: [PendingCommit] = []
        // While this coordinator's latest change waits for a majority, the changes it replaced
        // wait too: taken back together if the role is lost (`takeBackUnconfirmed`).
        let latestPending = pendingCommits.contains { $0.version == resources.version && $0.digest == resources.digest }
        for c in pendingCommits {
            if latestPending && isCoordinator && (resources.version != c.version || resources.digest != c.digest) {
                keep.append(c)
                continue
            }
            let stored = storedBy(version: c.version, digest: c.digest)
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
                let answer = Message.configResult(requestId: c.requestId, ok: ok, version: c.version, message: msg)
                sentResults[ResultKey(origin: c.origin, requestId: c.requestId)] = (answer, now + 10_000)
                out.append(.send(to: c.origin, answer))
            }
        }
        pendingCommits = keep
        var fkeep: [ForwardedRequest] = []
        for var f in forwarded {
            if now >= f.deadline {
                out.append(.reply(requestId: f.requestId, ok: false, version: resources.version, message: "no answer from the coordinator within 5 s; check 'hactl config show' before retrying"))
                continue
            }
            // Pieces can be lost: send them all again until the coordinator answers (it
            // assembles each proposal once and ignores copies). Never to another coordinator:
            // the first may have applied it, and a second would apply it over newer changes.
            if !f.pieces.isEmpty && authority != f.to {
                out.append(.reply(requestId: f.requestId, ok: false, version: resources.version,
                                  message: "the coordinator changed before answering; check 'hactl config show' before retrying"))
                continue
            }
            if now >= f.resendAt, !f.pieces.isEmpty, let to = f.to {
                for m in f.pieces { out.append(.send(to: to, m)) }
                f.resendAt = now + 4 * timing.interval
            }
            fkeep.append(f)
        }
        forwarded = fkeep
    }


    // MARK: - configurations in pieces

    /// The piece of our configuration that holds byte `offset` (pieces sit on chunk boundaries).
    func configPiece(from offset: Int) -> Message {
        let bytes = Array(resources.text.utf8)
        let start = min(max(0, offset), bytes.count)
        let aligned = start - start % Message.maxChunk
        let stop = min(bytes.count, aligned + Message.maxChunk)
        return .configData(version: resources.version, digest: resources.digest, offset: UInt32(aligned), total: UInt32(bytes.count),
                           chunk: Array(bytes[aligned..<stop]), standby: resources.standby)
    }

    /// A piece of a newer configuration: collect in order, ask for the next one at once, adopt
    /// the whole once complete (and only if it parses and validates).
    mutating func receiveConfigPiece(version: UInt64, digest: UInt64, offset: Int, total: Int, chunk: [UInt8], standby: [String], from sender: NodeID, now: UInt64, out: inout [Directive]) {
        // Only the configuration we asked for last (see `considerConfig`).
        guard let wanted = configWanted, wanted.version == version, wanted.digest == digest, !rejectedDigests.contains(digest) else { return }
        if offset == 0 {
            incoming = IncomingConfig(version: version, digest: digest, total: total, bytes: [], from: sender)
        }
        // Pieces of one content from one node, in order; anything else starts over on the next request.
        guard var inc = incoming, inc.version == version, inc.digest == digest, inc.from == sender, inc.total == total,
              offset == inc.bytes.count else { return }
        inc.bytes.append(contentsOf: chunk)
        if inc.bytes.count < total {
            incoming = inc
            if !chunk.isEmpty {
                configRequestedAt = now
                out.append(.send(to: sender, .configRequest(version: version, offset: UInt32(inc.bytes.count))))
            }
            return
        }
        incoming = nil
        guard let text = String(validating: inc.bytes, as: UTF8.self) else {
            rejectedDigests.insert(digest)
            out.append(.event(.configRejected(version, "configuration from \(name(of: sender)) is not valid UTF-8")))
            return
        }
        let candidate = VersionedResources(version: version, text: text, standby: standby, committed: wanted.committed)
        guard candidate.digest == digest else {
            out.append(.event(.configRejected(version, "configuration from \(name(of: sender)) does not match its digest; fetching it again")))
            return
        }
        adoptConfig(candidate, fromCoordinator: wanted.fromCoordinator, from: sender, out: &out)
    }

    /// Coordinator: a piece of a forwarded `hactl apply`; handled once every piece arrived (in
    /// any order). Incomplete proposals are dropped after 5 s (the forwarder answers the operator).
    mutating func receiveProposalPiece(requestId: UInt64, origin: NodeID, incarnation: UInt64, offset: Int, total: Int, chunk: [UInt8], now: UInt64, out: inout [Directive]) {
        proposalPieces = proposalPieces.filter { $0.value.deadline > now }
        completedProposals = completedProposals.filter { $0.value > now }
        sentResults = sentResults.filter { $0.value.until > now }
        let key = ProposalKey(origin: origin, incarnation: incarnation, requestId: requestId)
        // A copy of a piece already handled: the forwarder has no answer yet; if it was lost,
        // it goes again.
        guard completedProposals[key] == nil else {
            if let r = sentResults[ResultKey(origin: origin, requestId: requestId)] { out.append(.send(to: origin, r.answer)) }
            return
        }
        var p = proposalPieces[key] ?? (total: total, pieces: [:], deadline: now + 5000)
        guard p.total == total, proposalPieces.count < 16 || proposalPieces[key] != nil else { return }
        p.pieces[offset] = chunk
        var assembled: [UInt8] = []
        while let next = p.pieces[assembled.count], !(next.isEmpty && assembled.count < total) {
            assembled += next
            if assembled.count >= total { break }
        }
        guard assembled.count == total else {
            proposalPieces[key] = p
            return
        }
        proposalPieces[key] = nil
        completedProposals[key] = now + 10_000
        guard let text = String(validating: assembled, as: UTF8.self) else { return }
        handleProposal(requestId: requestId, origin: origin, text: text, now: now, out: &out)
    }
}
