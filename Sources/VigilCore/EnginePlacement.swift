/// The coordinator's work while in office: the scheduler's view, what may still run where,
/// and the published assignments.
extension Engine {
    /// Another node's clone instance: peer `z` never runs it (unless it says it holds it).
    func neverRuns(_ r: String, on z: NodeID) -> Bool {
        guard let p = peers[z] else { return false }
        return resourceSet.boundElsewhere(r, from: p.name) && !p.heldSet.contains(r)
    }

    /// Coordinator: can node `z` possibly run `r` right now? `gone`: nodes a majority withdrew.
    func mayHold(_ z: NodeID, _ r: String, gone: Set<NodeID>, office o: CoordinatorOffice) -> Bool {
        if z == selfId { return local[r] != nil }
        guard let p = peers[z] else { return false }
        if neverRuns(r, on: z) { return false }
        // Whatever a node ran under an epoch a majority withdrew is free (`gone` holds only
        // nodes that are not members; a member's own report decides below).
        // A fenced node runs nothing once it is silent (while its heartbeats still arrive the
        // device did not power it off: its own reports decide); a lost one may still run what
        // needs fencing until it is fenced.
        if isFenced(z) && !p.member { return false }
        if gone.contains(z) { return needsFence(z, for: r, office: o) }
        guard let rep = p.report else { return true }
        if p.heldSet.contains(r) { return true }
        // A release counts when the report answers a heartbeat we sent late enough.
        return !(rep.echoIncarnation == incarnation && o.isFreshRelease(of: r, by: z, echo: rep.echo) && p.member)
    }

    /// Nodes whose reports count for placement: members, and nodes we lost contact with whose
    /// lease a majority has not withdrawn (what they run stays theirs; membership may flap
    /// under loss without moving anything).
    func reportingNodes(gone: Set<NodeID>) -> Set<NodeID> {
        var out: Set<NodeID> = [selfId]
        for p in peers.values where (p.member || (p.report != nil && !gone.contains(p.id))) && !isFenced(p.id) { out.insert(p.id) }
        return out
    }

    /// The nodes reporting each resource as held (this node, and the peers among `nodes`, or
    /// the members if nil), in id order: one walk over the peers' holdings for every resource,
    /// not one over the peers per resource.
    func holdersByResource(among nodes: Set<NodeID>? = nil) -> [String: [NodeID]] {
        var out: [String: [NodeID]] = [:]
        for r in local.keys { out[r] = [selfId] }
        for (id, p) in membership.peers where nodes?.contains(id) ?? p.member {
            for r in p.heldSet { out[r, default: []].append(id) }
        }
        for (r, list) in out where list.count > 1 { out[r] = list.sorted() }
        return out
    }

    /// Nodes where `r` is confirmed running.
    func startedOn(_ r: String, among nodes: Set<NodeID>? = nil) -> [NodeID] {
        var out: [NodeID] = local[r] == .started ? [selfId] : []
        for p in peers.values where (nodes?.contains(p.id) ?? p.member) && p.startedSet.contains(r) { out.append(p.id) }
        return out.sorted()
    }

    func peerIsLeaving(_ id: NodeID) -> Bool { id == selfId ? leaving : (peers[id]?.report?.leaving ?? false) }

    /// The scheduler's view of the cluster, from this coordinator's reports.
    func schedulerInput(alive: Set<NodeID>, placement: [String: NodeID]) -> ([Scheduler.Node], Scheduler.State) {
        // Witnesses run nothing: the scheduler does not see them.
        let nodes = cluster.dataNodes.map { n in
            Scheduler.Node(id: n.id, name: n.name, online: alive.contains(n.id) && !peerIsLeaving(n.id), standby: resources.standby.contains(n.name))
        }
        var st = Scheduler.State()
        // Every reporting node's holdings, walked once (not every node asked about every resource).
        let known = resourceSet.nameSet
        for r in local.keys where known.contains(r) { st.running[r, default: []].insert(selfId) }
        for p in peers.values where alive.contains(p.id) {
            for r in p.heldSet where known.contains(r) { st.running[r, default: []].insert(p.id) }
        }
        // Where we placed it counts as running: a restart in place must not move it.
        for (r, t) in placement where alive.contains(t) && known.contains(r) { st.running[r, default: []].insert(t) }
        for r in failed.keys { st.banned[r, default: []].insert(selfId) }
        for (r, v) in local where v == .blocked { st.blocked[r, default: []].insert(selfId) }
        st.fatal = Set(fatal.keys)
        for p in peers.values {
            guard let rep = p.report, !isFenced(p.id) else { continue }
            // Blocked resources count even from nodes we lost: they may still run there.
            for r in rep.blocked { st.blocked[r, default: []].insert(p.id) }
            guard alive.contains(p.id) else { continue }
            for r in rep.failed { st.banned[r, default: []].insert(p.id) }
            st.fatal.formUnion(rep.fatal)
        }
        return (nodes, st)
    }

    /// The least time between two placement rounds that only progress asks for (probes
    /// answered, resources starting or started: `Heartbeat.onlyProgress`): none for small
    /// configurations, a tenth of a millisecond per resource up to one interval for large ones.
    /// A round walks every resource over every node; after a thousand-resource apply, nine
    /// nodes' reports changed many times per interval while they probed, and rounds took most of
    /// the coordinator's core (slowing the probes they waited for). Deadlines (`nextRound`) are
    /// never spaced.
    public var placementSpacing: UInt64 { min(timing.interval, UInt64(resourceSet.names.count) / 10) }

    mutating func place(now: UInt64, office o: inout CoordinatorOffice, out: inout [Directive]) {
        var changed = false
        var reasons: [String: String] = [:]
        /// Some resource the scheduler placed waits for something before it starts there.
        var waiting = false
        o.awaitingEcho = [:]
        let names = resourceSet.nameSet
        for r in o.placement.keys where !names.contains(r) {
            o.placement[r] = nil
            changed = true
        }
        for r in o.migrations.keys where !names.contains(r) || resourceSet.isFrozen(r) { endMigration(r, "removed from the configuration, or left alone", office: &o, out: &out) }
        let gone = Set(peers.keys.filter { !(peers[$0]?.member ?? false) && withdrawnByMajority($0, since: o.since) })
        updateFencing(gone: gone, now: now, office: &o, out: &out)
        let alive = reportingNodes(gone: gone)
        let (nodes, state) = schedulerInput(alive: alive, placement: o.placement)
        let plan = Scheduler.schedule(resourceSet, nodes: nodes, state: state)
        // Resources whose group, order or colocation relatives some member still probes.
        var probing = Set(probePending.map { resourceSet.component(of: $0) })
        for p in peers.values where p.member { for r in p.report?.probingResources ?? [] { probing.insert(resourceSet.component(of: r)) } }
        let holdersAlive = holdersByResource(among: alive)
        for r in resourceSet.startOrder {
            let holders = holdersAlive[r] ?? []
            // Maintenance, unmanaged: left where it runs (by one node), moved nowhere.
            if resourceSet.isFrozen(r) {
                let pin: NodeID? = holders.count == 1 ? holders[0] : nil
                if o.placement[r] != pin {
                    o.placement[r] = pin
                    changed = true
                }
                o.failovers[r] = nil
                reasons[r] = resourceSet.maintenance ? "cluster in maintenance: left as it is" : "unmanaged: left as it is"
                continue
            }
            let target = plan.placement[r]
            if migrationStep(r, target: target, holders: holders, state: state, alive: alive, office: &o, now: now, out: &out, reasons: &reasons) {
                waiting = true
                continue
            }
            if let c = o.placement[r], c != target {
                o.withdraw(r, now: now)
                changed = true
                out.append(.event(.withdrawn(r, from: name(of: c))))
                if target != nil || !alive.contains(c) {
                    let why = !alive.contains(c) ? "node \(name(of: c)) lost" : (state.banned[r]?.contains(c) ?? false ? "failed on \(name(of: c))" : "placement changed")
                    o.failovers[r] = (name(of: c), why)
                    out.append(.event(.failoverBegun(r, from: name(of: c), reason: why)))
                }
            }
            if let f = o.failovers[r], let t = o.placement[r], startedOn(r) == [t] {
                o.failovers[r] = nil
                out.append(.event(.failoverCompleted(r, from: f.from, to: name(of: t), reason: f.reason)))
            }
            guard let t = target else {
                reasons[r] = plan.reasons[r] ?? "stopped"
                continue
            }
            if o.placement[r] == t { continue }
            let isNewStart = !holders.contains(t)
            // Keeping a resource where it runs, started, and nowhere else, starts nothing: a new
            // coordinator confirms it at once. Anything else (held while stopping, or by two
            // nodes after a partition healed) waits for every other node to be clear.
            let keep = holders == [t] && startedOn(r, among: alive) == [t]
            let blockers = keep ? [] : ([selfId] + Array(peers.keys)).filter { $0 != t && mayHold($0, r, gone: gone, office: o) }.sorted()
            if !blockers.isEmpty {
                // A member that no longer lists it releases it with a heartbeat that answers a
                // late enough one of ours: that heartbeat makes placement run again.
                for b in blockers where b != selfId && isMember(b) && !(peers[b]?.heldSet.contains(r) ?? true) {
                    o.awaitingEcho[b] = min(o.awaitingEcho[b] ?? UInt64.max, o.releaseEcho(of: r, by: b))
                }
                let names = blockers.map { b -> String in
                    if let j = o.fencing[b] {
                        return "\(name(of: b)) (to be fenced: \(j.running ? "fencing now" : "attempt \(j.attempts) failed\(j.lastError.map { ": \($0)" } ?? ""); retrying")))"
                    }
                    if gone.contains(b) { return "\(name(of: b)) (lost: must be fenced, and no fence device covers it)" }
                    if isMember(b) { return name(of: b) }
                    if cluster.isCorosyncPair {
                        let covered = cluster.node(id: b).map { resourceSet.fencing.covers($0.name) } ?? false
                        return "\(name(of: b)) (lost: a two-node cluster moves nothing before the node is fenced\(covered ? "" : ", and no fence device covers it: hactl fence confirm NODE once it is off"))"
                    }
                    return "\(name(of: b)) (lost: waiting for a majority to withdraw its lease)"
                }
                reasons[r] = "waiting for \(names.joined(separator: ", ")) to release it"
                waiting = true
                continue
            }
            if isNewStart && now < o.startBarrier {
                o.nextRound = min(o.nextRound, o.startBarrier)
                reasons[r] = "new coordinator: waiting \(o.startBarrier - now) ms before starting anything"
                waiting = true
                continue
            }
            if isNewStart && probing.contains(resourceSet.component(of: r)) {
                reasons[r] = "waiting for nodes to finish probing what already runs"
                waiting = true
                continue
            }
            // Order: everything it depends on must be confirmed running first.
            // (After a clone: after its instance on the node chosen, not the others.)
            if isNewStart, let p = resourceSet.predecessors(of: r).first(where: { startedOn($0).isEmpty && !resourceSet.boundElsewhere($0, from: name(of: t)) }) {
                reasons[r] = "waiting for \(p) to start"
                waiting = true
                continue
            }
            o.assign(r, to: t)
            changed = true
            out.append(.event(.placed(r, on: name(of: t))))
            // A new coordinator did not withdraw anything, yet this may still be a failover:
            // the last word of a node we lost says it ran the resource.
            if isNewStart && o.failovers[r] == nil,
                let lost = peers.values.filter({ !alive.contains($0.id) && $0.id != t && $0.heldSet.contains(r) }).map(\.id).min()
            {
                let why = "node \(name(of: lost)) lost"
                o.failovers[r] = (name(of: lost), why)
                out.append(.event(.failoverBegun(r, from: name(of: lost), reason: why)))
            }
        }
        o.waitingReason = reasons
        if changed { urgent = true }
        let settled = !changed && !waiting && o.awaitingEcho.isEmpty
        o.nextRound = min(o.nextRound, now + (settled ? CoordinatorOffice.settledRoundMs : CoordinatorOffice.waitingRoundMs))
    }

}
