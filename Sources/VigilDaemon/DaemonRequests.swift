import VigilCore
import VigilWire
import VigilIPC
import VigilSystem

/// What the daemon does for its users: hooks for cluster events, and hactl's requests.
extension Daemon {
    /// Cluster events as hook invocations (README "Failover hooks").
    func postHook(_ e: EngineEvent) {
        let me = selfNode.name
        switch e {
        case .peerJoined(let n): hooks.post("node-joined", ["VIGIL_NODE": n])
        case .peerLost(let n): hooks.post("node-lost", ["VIGIL_NODE": n])
        case .quorumGained: hooks.post("quorum-gained", ["VIGIL_NODE": me])
        case .quorumLost: hooks.post("quorum-lost", ["VIGIL_NODE": me])
        case .coordinatorChanged(let c): hooks.post("coordinator-changed", ["VIGIL_NODE": me, "VIGIL_COORDINATOR": c ?? ""])
        case .resourceStarting(let r): hooks.post("resource-starting", ["VIGIL_NODE": me, "VIGIL_RESOURCE": r])
        case .resourceStarted(let r): hooks.post("resource-started", ["VIGIL_NODE": me, "VIGIL_RESOURCE": r])
        case .resourceStopping(let r): hooks.post("resource-stopping", ["VIGIL_NODE": me, "VIGIL_RESOURCE": r])
        case .resourceStopped(let r): hooks.post("resource-stopped", ["VIGIL_NODE": me, "VIGIL_RESOURCE": r])
        case .resourceFailed(let r, let why, let n):
            hooks.post("resource-failed", ["VIGIL_NODE": me, "VIGIL_RESOURCE": r, "VIGIL_REASON": why, "VIGIL_FAIL_COUNT": String(n)])
        case .stopFailed(let r, let why):
            hooks.post("resource-failed", ["VIGIL_NODE": me, "VIGIL_RESOURCE": r, "VIGIL_REASON": "stop failed: \(why)"])
        case .failoverBegun(let r, let from, let why):
            hooks.post("failover-begun", ["VIGIL_NODE": me, "VIGIL_RESOURCE": r, "VIGIL_FROM": from, "VIGIL_REASON": why])
        case .failoverCompleted(let r, let from, let to, let why):
            hooks.post("failover-completed", ["VIGIL_NODE": me, "VIGIL_RESOURCE": r, "VIGIL_FROM": from, "VIGIL_TO": to, "VIGIL_REASON": why])
        case .migrationBegun(let r, let from, let to):
            hooks.post("migration-begun", ["VIGIL_NODE": me, "VIGIL_RESOURCE": r, "VIGIL_FROM": from, "VIGIL_TO": to])
        case .migrationCompleted(let r, let from, let to):
            hooks.post("migration-completed", ["VIGIL_NODE": me, "VIGIL_RESOURCE": r, "VIGIL_FROM": from, "VIGIL_TO": to])
        case .migrationAborted(let r, let from, let to, let why):
            hooks.post("migration-aborted", ["VIGIL_NODE": me, "VIGIL_RESOURCE": r, "VIGIL_FROM": from, "VIGIL_TO": to, "VIGIL_REASON": why])
        case .resourceMigrating(let r, let to):
            hooks.post("resource-migrating", ["VIGIL_NODE": me, "VIGIL_RESOURCE": r, "VIGIL_FROM": me, "VIGIL_TO": to])
        case .resourceMigratingIn(let r, let from):
            hooks.post("resource-migrating-in", ["VIGIL_NODE": me, "VIGIL_RESOURCE": r, "VIGIL_FROM": from, "VIGIL_TO": me])
        case .fence(let f):
            // Hooks run where the fence ran (the coordinator); every node keeps the history.
            fencer.record(f)
            let event = f.outcome == .begun ? "fence-begun" : (f.outcome == .failed ? "fence-failed" : "fence-succeeded")
            hooks.post(event, ["VIGIL_NODE": me, "VIGIL_TARGET": f.target, "VIGIL_DEVICE": f.device, "VIGIL_REASON": f.reason,
                               "VIGIL_FENCE_OUTCOME": f.outcome.rawValue])
        case .fenceRecorded(let f):
            fencer.record(f)
        case .fencedWhileRunning(let by, let device):
            hooks.post("fenced-while-running", ["VIGIL_NODE": me, "VIGIL_FROM": by, "VIGIL_DEVICE": device])
        default: break
        }
    }

    // MARK: IPC

    func handleIPC(_ req: IPCRequest, _ conn: OpaquePointer, _ peer: IPCServer.Peer) -> IPCServer.Reply {
        let now = MonotonicClock.nowMs()
        switch req.command {
        case .status:
            return .now(IPCResponse(ok: true, status: fullStatus(now: now)))
        case .watch:
            guard ipc?.watch(conn) ?? false else { return .now(IPCResponse(ok: false, message: "too many status watchers (at most \(IPCServer.maxWatchers))")) }
            return .now(IPCResponse(ok: true, status: fullStatus(now: now)))
        case .configShow:
            // Passwords and other secrets of fence devices and agents are never shown; parameters
            // at all only to root and the admin group.
            let admin = peer.admin ?? false
            let privacy = executor.privacy(of: engine.resourceSet.agents.map(\.agent))
            // Parameters of an agent whose meta-data is not known may be private: all masked.
            let text = admin && privacy.unknown.isEmpty ? Redaction.redactSecrets(engine.resources.text, privateNames: privacy.names)
                : (admin ? "# parameters masked: meta-data not known yet for \(privacy.unknown.joined(separator: ", "))\n" : "") + Redaction.redactParameters(engine.resources.text)
            var r = IPCResponse(ok: true, configVersion: engine.resources.version, configText: text)
            r.standby = engine.resources.standby
            return .now(r)
        case .cleanup:
            if let n = req.text, !engine.resourceSet.nameSet.contains(n), cluster.node(named: n) != nil {
                execute(engine.cleanup(n, now: now))
                return .now(IPCResponse(ok: true, message: "node \(n) may run resources again (its fence mark is cleared on every reachable node)"))
            }
            if let c = req.text.flatMap({ engine.resourceSet.clone(named: $0) }) {
                for i in c.instances.values.sorted() { execute(engine.cleanup(i, now: now)) }
                return .now(IPCResponse(ok: true, message: "cleared failures of every instance of clone \(c.name) on every reachable node"))
            }
            guard let r = req.text, engine.resourceSet.names.contains(r) else {
                return .now(IPCResponse(ok: false, message: "no resource or node named '\(req.text ?? "")' in configuration version \(engine.resources.version)"))
            }
            execute(engine.cleanup(r, now: now))
            return .now(IPCResponse(ok: true, message: "cleared failures of \(r) on every reachable node"))
        case .fence, .fenceConfirm:
            guard let node = req.text else { return .now(IPCResponse(ok: false, message: "which node?")) }
            // Corosync's ring is a second witness that a node is not off: its Corosync answers.
            if req.command == .fenceConfirm, let n = cluster.node(named: node), corosyncRing.contains(n.id.rawValue) {
                return .now(IPCResponse(ok: false, message: "corosync still counts \(node) in its ring (its corosync answers): it is not off; nothing was changed"))
            }
            let id = nextRequestId
            nextRequestId += 1
            pendingReplies[id] = conn
            log.warning("hactl \(req.command == .fence ? "fence" : "fence confirm") \(node) requested by an administrator")
            execute(engine.requestFence(requestId: id, node: node, confirm: req.command == .fenceConfirm, now: now))
            return .later
        case .simulate, .dryRun:
            // The real scheduler on what this node knows of every node; nothing is changed. On
            // a thread of its own: parsing and placing a large file must not stall heartbeats.
            let standby = Set(engine.resources.standby)
            let nodes = engine.nodeFacts().map { WhatIf.NodeInput(name: $0.name, online: $0.member, standby: standby.contains($0.name), held: $0.held, failed: $0.failed) }
            let (cluster, current, changes) = (cluster, engine.resourceSet, req.whatIf ?? [])
            let text = req.command == .dryRun ? (req.text ?? "") : nil, file = req.resource ?? "resources.toml"
            let thread: OffLoop
            do { thread = try whatIf() } catch {
                return .now(IPCResponse(ok: false, message: "cannot simulate now: \(error)"))
            }
            thread.run({ () -> Result<WhatIf.Report, WhatIf.Refusal> in
                Result { () throws(WhatIf.Refusal) -> WhatIf.Report in
                    try WhatIf.run(cluster: cluster, current: current, nodes: nodes, changes: changes, newText: text, file: file)
                }
            }, then: { [unowned self] result in
                switch result {
                case .success(let report):
                    var r = IPCResponse(ok: true)
                    r.whatIf = report
                    self.ipc?.respond(r, to: conn)
                case .failure(let e):
                    self.ipc?.respond(IPCResponse(ok: false, message: e.description), to: conn)
                }
            })
            return .later
        case .history:
            // Journals name failures and their reasons, and a question costs every peer a
            // thousand datagrams: root and the admin group only.
            guard peer.admin ?? false else { return .now(IPCResponse(ok: false, message: "hactl history is for root and the cluster's admin group")) }
            return historyRequest(req, conn)
        case .facts:
            var r = IPCResponse(ok: true)
            r.facts = engine.nodeFacts()
            return .now(r)
        case .fenceHistory:
            var r = IPCResponse(ok: true)
            r.fenceHistory = fencer.history
            return .now(r)
        case .standby, .unstandby:
            guard let node = req.text else { return .now(IPCResponse(ok: false, message: "which node?")) }
            let id = nextRequestId
            nextRequestId += 1
            pendingReplies[id] = conn
            execute(engine.proposeStandby(requestId: id, node: node, on: req.command == .standby, now: now))
            return .later
        case .move, .ban, .clear:
            return constraintRequest(req, conn, now: now)
        case .maintenance, .unmanage, .manage:
            return maintenanceRequest(req, conn, now: now)
        case .apply:
            guard let text = req.text else { return .now(IPCResponse(ok: false, message: "apply needs the resources file's text")) }
            let id = nextRequestId
            nextRequestId += 1
            pendingReplies[id] = conn
            execute(engine.proposeConfig(requestId: id, text: text, now: now))
            return .later
        }
    }
}

extension Daemon {
    /// What `hactl status` shows (and the metrics read): the engine's view and the shell's.
    func fullStatus(now: UInt64) -> ClusterStatus {
        var st = engine.status(now: now)
        st.counters = counters
        st.incompatiblePeers = incompatible.map { "\($0.key) (protocol \($0.value))" }.sorted()
        let older = peerProtocol.filter { $0.value < ownProtocol }.compactMap { id, v in nodesById[id].map { "\($0.name) (protocol \(v))" } }.sorted()
        st.olderProtocolPeers = older.isEmpty ? nil : older
        fencingStatus(&st)
        corosyncLinkStatus(&st)
        return st
    }

    /// Something changed: watchers get the status once this loop round is done (one push for
    /// a burst of events).
    func statusChanged() {
        guard ipc?.hasWatchers ?? false, !watchPushQueued else { return }
        watchPushQueued = true
        reactor.enqueue { [unowned self] in
            self.watchPushQueued = false
            self.ipc?.notifyWatchers(IPCResponse(ok: true, status: self.fullStatus(now: MonotonicClock.nowMs())))
        }
    }

    /// `[metrics] listen`: the Prometheus endpoint on this loop.
    /// A port that cannot be bound (taken by another process, say) never keeps clusterd from
    /// running: it is logged and tried again every 10 s from the shell's rounds.
    func startMetrics(now: UInt64) {
        guard let m = cluster.metricsListen, metricsEndpoint == nil, now >= metricsRetryAt else { return }
        let dm = metrics ?? DaemonMetrics()
        if metrics == nil {
            metrics = dm
            executor.onFinished = { op, ms in dm.agentOperation(op, ms: ms) }
        }
        do {
            metricsEndpoint = try MetricsEndpoint(address: m.address, port: m.port, reactor: reactor) { [unowned self] in
                dm.render(self.fullStatus(now: MonotonicClock.nowMs()), hookQueue: self.hooks.queued)
            }
            log.info("metrics listen=\(m.address):\(m.port) path=/metrics")
        } catch {
            metricsRetryAt = now + 10_000
            log.error("metrics endpoint not started (tried again in 10 s): \(error)")
        }
    }
}
