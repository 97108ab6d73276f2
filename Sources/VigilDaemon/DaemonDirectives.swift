import VigilCore
import VigilIPC
import VigilSystem

/// Carrying out the engine's directives.
extension Daemon {
    func execute(_ directives: [Engine.Directive]) {
        defer { updateGuardian() }
        var queue = directives[...]
        while let d = queue.popFirst() {
            let now = MonotonicClock.nowMs()
            switch d {
            case .send(let to, let msg):
                send(msg, to: to)
            case .start(let name):
                if let a = engine.resourceSet.agent(named: name) {
                    // The watchdog's limit is in force before the agent runs (a stall right after
                    // spawning must not leave the guardian petting freely).
                    updateGuardian()
                    let o = engine.resourceSet.options(name)
                    executor.submit(.init(resource: name, op: .start, spec: a.agent, params: a.params, timeoutMs: o.startTimeoutMs, intervalMs: 0) { [unowned self] outcome, _ in
                        self.execute(self.engine.operationFinished(name, .start, outcome, now: MonotonicClock.nowMs()))
                    })
                } else if let err = { () -> String? in
                    // The guardian must know the deadline before the address exists; no
                    // address is added that nothing independent of this loop could remove.
                    let until = max(1, engine.guardianDeadline)
                    guard guardian?.update(until) ?? false else {
                        return "the address guardian is not running"
                    }
                    return ips.start(name, until: until)
                }() {
                    log.error("start resource=\(name) failed: \(err)")
                    ips.markStartFailed(name, now: now)
                    queue.append(contentsOf: engine.operationFinished(name, .start, .hardError(err), now: now))
                }
                // Otherwise the netlink thread adds it; `addressesDone` reports the result.
            case .stop(let name):
                if let a = engine.resourceSet.agent(named: name) ?? lastAgents[name] {
                    let o = engine.resourceSet.options(name)
                    executor.submit(.init(resource: name, op: .stop, spec: a.agent, params: a.params, timeoutMs: o.stopTimeoutMs, intervalMs: 0) { [unowned self] outcome, _ in
                        self.execute(self.engine.operationFinished(name, .stop, outcome, now: MonotonicClock.nowMs()))
                    })
                } else {
                    ips.stop(name)
                }
            case .migrateTo(let name, let source, let target), .migrateFrom(let name, let source, let target):
                let op: AgentOperation
                if case .migrateTo = d { op = .migrateTo } else { op = .migrateFrom }
                guard let a = engine.resourceSet.agent(named: name) else {
                    queue.append(contentsOf: engine.operationFinished(name, op, .hardError("not an agent resource"), now: now))
                    continue
                }
                updateGuardian()
                let o = engine.resourceSet.options(name)
                log.info("\(op.rawValue) resource=\(name) source=\(source) target=\(target)")
                var request = AgentExecutor.Request(resource: name, op: op, spec: a.agent, params: a.params, timeoutMs: o.migrateTimeoutMs, intervalMs: 0) { [unowned self] outcome, _ in
                    self.execute(self.engine.operationFinished(name, op, outcome, now: MonotonicClock.nowMs()))
                }
                request.migration = (source, target)
                executor.submit(request)
            case .monitor(let name):
                guard let a = engine.resourceSet.agent(named: name) else {
                    queue.append(contentsOf: engine.operationFinished(name, .monitor, .success, now: now))
                    continue
                }
                let o = engine.resourceSet.options(name)
                executor.submit(.init(resource: name, op: .monitor, spec: a.agent, params: a.params, timeoutMs: o.monitorTimeoutMs, intervalMs: o.monitorIntervalMs) { [unowned self] outcome, _ in
                    self.execute(self.engine.operationFinished(name, .monitor, outcome, now: MonotonicClock.nowMs()))
                })
            case .probe(let name):
                guard let a = engine.resourceSet.agent(named: name) else {
                    queue.append(contentsOf: engine.probeResult(name, .notRunning, now: now))
                    continue
                }
                let o = engine.resourceSet.options(name)
                executor.submit(.init(resource: name, op: .monitor, spec: a.agent, params: a.params, timeoutMs: o.monitorTimeoutMs, intervalMs: 0) { [unowned self] outcome, _ in
                    let now = MonotonicClock.nowMs()
                    self.log.info("probe resource=\(name) agent=\(a.agent) result=\"\(outcome)\"")
                    self.execute(self.engine.probeResult(name, outcome, now: now))
                })
            case .announce(let name):
                ips.scheduleAnnouncements(name, now: now)
            case .persist(let v):
                // Written (temp file, fsync, rename) on a thread of its own: an fsync can take
                // longer than a heartbeat interval. Saves are kept in order.
                storage.submit { [store, log] in
                    do {
                        try store.saveResources(v)
                    } catch {
                        log.error("cannot save resource configuration version \(v.version): \(error)")
                    }
                }
            case .adoptResources(let set):
                // Remember every agent definition ever in force, to stop one after its removal.
                for a in set.agents { lastAgents[a.name] = a }
                // What runs with a changed definition is restarted by the engine (stop, then start).
                ips.setDefinitions(set)
            case .reply(let id, let ok, let version, let message):
                let told = constraintMessages.removeValue(forKey: id)
                if id == expiryRequest {
                    expiryRequest = nil
                    if !ok { log.warning("ended hactl constraints not removed: \(message)") }
                }
                if let conn = pendingReplies.removeValue(forKey: id) {
                    let text = ok ? told.map { "\($0) (configuration version \(version))" } ?? message : message
                    ipc?.respond(IPCResponse(ok: ok, message: text, configVersion: version), to: conn)
                }
            case .event(let e):
                log.info(e.description)
                journal.record(e.description)
                postHook(e)
                metrics?.observe(e, now: now)
                statusChanged()
            case .fence(let target, let name, _):
                fencer.fence(target: name, levels: engine.resourceSet.fencing.levels(for: name)) { [unowned self] ok, device, detail in
                    self.execute(self.engine.fenceFinished(target: target, ok: ok, device: device, detail: detail, now: MonotonicClock.nowMs()))
                }
            }
        }
    }

    /// The results of a batch of address adds and removes (hundreds at a takeover): recorded
    /// without evaluating, then the engine evaluates once.
    func addressesDone(_ outcomes: [FloatingIPs.Outcome]) {
        let now = MonotonicClock.nowMs()
        var out: [Engine.Directive] = []
        for o in outcomes {
            let name = o.request.name
            if o.isStart {
                if let e = o.error {
                    ips.markStartFailed(name, now: now)
                    out += engine.operationFinished(name, .start, .hardError(e), now: now, evaluate: false)
                } else {
                    out += engine.operationFinished(name, .start, .success, now: now, evaluate: false)
                }
            } else if let e = o.error, case .remove(known: true) = o.request.kind {
                // Still configured here as far as we know: a failed stop (the engine moves
                // nothing that may still answer here; `hactl cleanup` retries). The guardian
                // stays armed for it meanwhile (`FloatingIPs.stuck`).
                out += engine.operationFinished(name, .stop, .hardError(e), now: now, evaluate: false)
            } else {
                // Removed, or never ours (a stop after a failed start leaves others' alone).
                out += engine.operationFinished(name, .stop, .success, now: now, evaluate: false)
            }
        }
        out += engine.tick(now: now)
        execute(out)
    }
}

