/// What `hactl status` shows, seen from this node.
extension Engine {
    // MARK: - status

    public func status(now: UInt64) -> ClusterStatus {
        var nodes: [ClusterStatus.NodeStatus] = []
        for n in cluster.nodes {
            if n.id == selfId {
                var me = ClusterStatus.NodeStatus(name: n.name, id: n.id, state: leaving ? "leaving" : "local",
                                                  links: cluster.links.map { .init(name: $0.name, up: true, lastHeardMsAgo: nil) }, vote: votedFor)
                me.standby = resources.standby.contains(n.name)
                if n.role == .witness { me.role = n.role.rawValue }
                nodes.append(me)
                continue
            }
            guard let p = peers[n.id] else { continue }
            let links = cluster.links.enumerated().map { (i, l) in
                ClusterStatus.LinkStatus(name: l.name, up: p.linkUp[i], lastHeardMsAgo: p.linkLastHeard[i].map { now - $0 })
            }
            let state = p.member ? ((p.report?.leaving ?? false) ? "leaving" : "online") : (p.lastHeard.map { now < $0 + timing.timeout } ?? false ? "one-way" : "offline")
            var ns = ClusterStatus.NodeStatus(name: n.name, id: n.id, state: state, links: links, vote: p.report?.vote)
            ns.standby = resources.standby.contains(n.name)
            if n.role == .witness { ns.role = n.role.rawValue }
            nodes.append(ns)
        }
        let coordKnown = isCoordinator || authority != nil
        let assignments = isCoordinator ? placement : (coordKnown ? authorityAssignments : [:])
        var res: [ClusterStatus.ResourceStatus] = []
        let holders = holdersByResource()
        for r in resourceSet.names {
            let running = (holders[r] ?? []).map { name(of: $0) }
            let started = startedOn(r).map { name(of: $0) }
            // A coordinator tells each node only its own assignments: elsewhere, where it runs
            // started (on one node) is where the coordinator keeps it.
            let assigned = assignments[r].map { name(of: $0) } ?? (!isCoordinator && coordKnown && running.count == 1 && started == running ? started.first : nil)
            let blockedNodes = (local[r] == .blocked ? [selfName] : []) + peers.values.filter { ($0.report?.blocked.contains(r) ?? false) && !(isFenced($0.id) && !$0.member) }.map(\.name)
            var state = "stopped"
            var detail = waitingReason[r]
            if !blockedNodes.isEmpty {
                state = "blocked"
                detail = "stop failed on \(blockedNodes.sorted().joined(separator: ", ")): check it, then hactl cleanup \(r)"
            } else if running.count > 1 {
                state = "moving"
            } else if let a = assigned, started == [a] {
                state = "started"
            } else if assigned != nil {
                state = "starting"
            } else if !running.isEmpty {
                state = "stopping"
            }
            if let f = fatal[r] {
                state = "failed"
                detail = "configuration error: \(f)"
            } else if let f = failed[r], blockedNodes.isEmpty {
                detail = "failed here (\(failCount(r, now: now)) failures): \(f)"
                if running.isEmpty && assigned == nil { state = "failed" }
            }
            if resourceSet.isFrozen(r) {
                detail = (resourceSet.maintenance ? "maintenance" : "unmanaged") + (detail.map { ": \($0)" } ?? "")
            }
            if !coordKnown && blockedNodes.isEmpty {
                state = running.isEmpty ? "stopped" : "unknown"
                detail = detail ?? pairWaitDetail(now: now) ?? "no quorum on this node"
            }
            let kind: String
            let what: String
            if let ip = resourceSet.ip(named: r) {
                kind = "ip"
                what = ip.prefix.description
            } else {
                kind = "agent"
                what = resourceSet.agent(named: r)?.agent.description ?? "?"
            }
            var item = ClusterStatus.ResourceStatus(name: r, kind: kind, address: what, assignedTo: assigned, runningOn: running, state: state, detail: detail)
            item.group = resourceSet.group(of: r)?.name
            item.failCount = failCount(r, now: now)
            res.append(item)
        }
        let coordinator: String? = isCoordinator ? selfName : authority.map { name(of: $0) }
        var st = ClusterStatus(
            cluster: cluster.name, localNode: selfName, quorate: now < leaseUntil,
            votesForLocal: votesForSelf, majority: cluster.majority, coordinator: coordinator,
            localIsCoordinator: isCoordinator, leaseRemainingMs: leaseUntil > now ? (leaseUntil == UInt64.max ? nil : leaseUntil - now) : 0,
            noQuorumPolicy: cluster.noQuorumPolicy.rawValue, configVersion: resources.version,
            nodes: nodes, resources: res, counters: .init(), incompatiblePeers: [])
        let moves = resourceSet.operatorConstraints.map(\.summary)
        st.constraints = moves.isEmpty ? nil : moves
        st.maintenance = resourceSet.maintenance ? true : nil
        st.unmanaged = resourceSet.unmanagedNames.isEmpty ? nil : resourceSet.unmanagedNames
        return st
    }
}

extension Engine {
    /// Every node's holdings and failures as this node knows them (itself: its own state).
    public func nodeFacts() -> [ClusterStatus.NodeFacts] {
        var out = [ClusterStatus.NodeFacts(name: selfName, member: true, held: held.sorted(),
                                            started: local.filter { $0.value == .started }.keys.sorted(), failed: failed.keys.sorted())]
        for p in peers.values.sorted(by: { $0.id < $1.id }) {
            out.append(.init(name: p.name, member: p.member, held: p.heldSet.sorted(), started: p.startedSet.sorted(), failed: (p.report?.failed ?? []).sorted()))
        }
        return out
    }
}

/// Things worth a log line (and, later, a hook).
public enum EngineEvent: Equatable, Sendable, CustomStringConvertible {
    case peerJoined(String)
    case peerLost(String)
    case linkDown(String, String)
    case linkUp(String, String)
    case quorumGained
    case quorumLost
    case becameCoordinator
    case resignedCoordinator
    case placed(String, on: String)
    case withdrawn(String, from: String)
    case leaseLost(policy: String)
    case resourceStarting(String)
    case resourceStarted(String)
    case resourceStopping(String)
    case resourceStopped(String)
    case stopFailed(String, String)
    case resourceFailed(String, String, count: Int)
    case cleanedUp(String)
    case failoverBegun(String, from: String, reason: String)
    case failoverCompleted(String, from: String, to: String, reason: String)
    case resourceRecovered(String)
    case foundLeftover(String)
    case leaving
    case coordinatorChanged(String?)
    case standby(String)
    case unstandby(String)
    case standbyChanged([String])
    case configAdopted(UInt64, from: String)
    case configRejected(UInt64, String)
    case supportCeasing(String)
    case supportResumed(String)
    case supportWithdrawn(String, epoch: UInt64)
    case newEpoch(UInt64)
    /// A fence this node ran (begun, succeeded, failed) or an operator's confirmation it recorded.
    case fence(FenceRecord)
    /// A fence outcome another node ran.
    case fenceRecorded(FenceRecord)
    /// A node fenced in this incarnation is heard again: the fence did not power it off.
    case fenceIneffective(String)
    /// This node was fenced while it still ran: it stops everything.
    case fencedWhileRunning(by: String, device: String)
    /// Live migration: the coordinator's view, then the source's and the target's.
    case migrationBegun(String, from: String, to: String), migrationCompleted(String, from: String, to: String)
    case migrationAborted(String, from: String, to: String, reason: String)
    case resourceMigrating(String, to: String), resourceMigratedAway(String, to: String), resourceMigratingIn(String, from: String)

    public var description: String {
        switch self {
        case .peerJoined(let n): return "member-joined node=\(n)"
        case .peerLost(let n): return "member-lost node=\(n)"
        case .linkDown(let n, let l): return "link-down node=\(n) link=\(l)"
        case .linkUp(let n, let l): return "link-up node=\(n) link=\(l)"
        case .quorumGained: return "quorum-gained"
        case .quorumLost: return "quorum-lost"
        case .becameCoordinator: return "coordinator-elected (this node)"
        case .resignedCoordinator: return "coordinator-resigned (this node)"
        case .placed(let r, let n): return "decided resource=\(r) node=\(n)"
        case .withdrawn(let r, let n): return "withdrawn resource=\(r) from=\(n)"
        case .leaseLost(let p): return "lease-lost policy=\(p)"
        case .resourceStarting(let r): return "resource-starting resource=\(r)"
        case .resourceStarted(let r): return "resource-started resource=\(r)"
        case .resourceStopping(let r): return "resource-stopping resource=\(r)"
        case .resourceStopped(let r): return "resource-stopped resource=\(r)"
        case .stopFailed(let r, let why): return "resource-stop-failed resource=\(r) reason=\"\(why)\" (blocked: it is never started elsewhere until hactl cleanup)"
        case .resourceFailed(let r, let why, let n): return "resource-failed resource=\(r) failcount=\(n) reason=\"\(why)\""
        case .cleanedUp(let r): return "cleanup resource=\(r)"
        case .failoverBegun(let r, let from, let why): return "failover-begun resource=\(r) from=\(from) reason=\"\(why)\""
        case .failoverCompleted(let r, let from, let to, _): return "failover-completed resource=\(r) from=\(from) to=\(to)"
        case .migrationBegun(let r, let from, let to): return "migration-begun resource=\(r) from=\(from) to=\(to)"
        case .migrationCompleted(let r, let from, let to): return "migration-completed resource=\(r) from=\(from) to=\(to)"
        case .migrationAborted(let r, let from, let to, let why): return "migration-aborted resource=\(r) from=\(from) to=\(to) reason=\"\(why)\""
        case .resourceMigrating(let r, let to): return "resource-migrating resource=\(r) to=\(to)"
        case .resourceMigratedAway(let r, let to): return "resource-migrated resource=\(r) to=\(to)"
        case .resourceMigratingIn(let r, let from): return "resource-migrating-in resource=\(r) from=\(from)"
        case .resourceRecovered(let r): return "resource-recovered resource=\(r)"
        case .foundLeftover(let r): return "found-leftover resource=\(r)"
        case .standby(let n): return "standby node=\(n)"
        case .unstandby(let n): return "unstandby node=\(n)"
        case .standbyChanged(let l): return "standby-nodes nodes=\(l.isEmpty ? "none" : l.joined(separator: ","))"
        case .coordinatorChanged(let n): return "coordinator-changed coordinator=\(n ?? "none")"
        case .leaving: return "leaving (graceful stop: handing resources over)"
        case .configAdopted(let v, let from): return "config-adopted version=\(v) from=\(from)"
        case .configRejected(let v, let why): return "config-rejected version=\(v) reason=\"\(why)\""
        case .supportCeasing(let n): return "lease-support-ceasing node=\(n) (a majority lost contact)"
        case .supportResumed(let n): return "lease-support-resumed node=\(n)"
        case .supportWithdrawn(let n, let e): return "lease-withdrawn node=\(n) epoch=\(e)"
        case .newEpoch(let e): return "lease-epoch epoch=\(e)"
        case .fence(let f), .fenceRecorded(let f):
            return "fence-\(f.outcome.rawValue) node=\(f.target) by=\(f.by)\(f.device.isEmpty ? "" : " device=\(f.device)") reason=\"\(f.reason)\""
        case .fenceIneffective(let n):
            return "fence-ineffective node=\(n): heard again after it was fenced (wrong plug or device?); its own reports decide, fenced again if needed"
        case .fencedWhileRunning(let by, let device):
            return "fenced-while-running by=\(by) device=\(device): stopping everything; this node runs nothing until hactl cleanup names it"
        }
    }
}
