/// The local resource lifecycle: what runs on this node, its failures, probes and leaving;
/// `applyDesired` turns the assignments (or, without a coordinator, what runs) into starts and stops.
extension Engine {
    /// The shell finished starting a resource.
    public mutating func resourceStarted(_ name: String, now: UInt64) -> [Directive] {
        var out: [Directive] = []
        if local[name] == .starting {
            local[name] = .started
            factsUrgent = true
            out.append(.event(.resourceStarted(name)))
        }
        return evaluate(now: now, out: &out)
    }

    /// The shell finished stopping a resource.
    public mutating func resourceStopped(_ name: String, now: UInt64) -> [Directive] {
        var out: [Directive] = []
        if local[name] == .stopping {
            local[name] = nil
            restartPending.remove(name)
            urgent = true
            out.append(.event(.resourceStopped(name)))
        }
        return evaluate(now: now, out: &out)
    }

    /// A stop failed or timed out: the resource may still run here. It is never started
    /// elsewhere until the operator has checked it and run `hactl cleanup`.
    public mutating func stopFailed(_ name: String, reason: String, now: UInt64) -> [Directive] {
        var out: [Directive] = []
        if local[name] != nil {
            local[name] = .blocked
            restartPending.remove(name)
            failed[name] = "stop failed: \(reason)"
            urgent = true
            out.append(.event(.stopFailed(name, reason)))
        }
        return evaluate(now: now, out: &out)
    }

    /// A start failed, a monitor or probe found the resource broken, or its interface went down.
    public mutating func resourceFailed(_ name: String, reason: String, kind: FailureKind = .hard, now: UInt64) -> [Directive] {
        var out: [Directive] = []
        // Maintenance, unmanaged: reported once, counted never, acted on never (leaving
        // maintenance forgets it; the monitor then decides afresh).
        if resourceSet.isFrozen(name) {
            guard failed[name] == nil else { return out }
            failed[name] = reason
            out.append(.event(.resourceFailed(name, "\(reason) (left alone: \(resourceSet.maintenance ? "maintenance" : "unmanaged"))", count: 0)))
            urgent = true
            return evaluate(now: now, out: &out)
        }
        failureTimes[name, default: []].append(now)
        let opts = resourceSet.options(name)
        let count = failCount(name, now: now)
        switch kind {
        case .fatal:
            fatal[name] = reason
            failed[name] = reason
        case .hard:
            failed[name] = reason
        case .transient:
            failed[name] = reason
            failureExpiry[name] = now + Self.transientFailureMs
        case .soft:
            if count >= opts.migrationThreshold {
                failed[name] = "\(reason) (\(count) failures, migration_threshold \(opts.migrationThreshold))"
                thresholdBans.insert(name)
            } else if local[name] == .started || local[name] == .starting {
                restartPending.insert(name)
            }
        }
        out.append(.event(.resourceFailed(name, reason, count: count)))
        urgent = true
        return evaluate(now: now, out: &out)
    }

    /// The condition behind a failure is gone (interface back up, failure expired).
    public mutating func resourceRecovered(_ name: String, now: UInt64) -> [Directive] {
        var out: [Directive] = []
        failureExpiry[name] = nil
        if failed.removeValue(forKey: name) != nil {
            urgent = true
            out.append(.event(.resourceRecovered(name)))
        }
        return evaluate(now: now, out: &out)
    }

    /// Failures counted here, as ages in ms at `now` (the shell stores them with the wall clock).
    public func failureRecord(now: UInt64) -> [String: [UInt64]] {
        failureTimes.filter { !$0.value.isEmpty }.mapValues { $0.map { now - min(now, $0) } }
    }

    /// At start-up: failures counted in an earlier life, as ages in ms. A resource whose count
    /// reached its migration_threshold stays banned here, as it was.
    public mutating func restoreFailures(_ ages: [String: [UInt64]], now: UInt64) {
        for (r, list) in ages where resourceSet.names.contains(r) {
            failureTimes[r] = list.map { now - min(now, $0) }.sorted()
            let count = failCount(r, now: now), threshold = resourceSet.options(r).migrationThreshold
            if count >= threshold {
                failed[r] = "failed \(count) times (migration_threshold \(threshold)), before clusterd restarted"
                thresholdBans.insert(r)
            }
        }
    }

    /// Failures of `name` on this node within its failure_timeout.
    public func failCount(_ name: String, now: UInt64) -> Int {
        let window = resourceSet.options(name).failureTimeoutMs
        let times = failureTimes[name] ?? []
        return window == 0 ? times.count : times.filter { now < $0 + window }.count
    }

    /// At start-up the shell found an address of ours still configured (left by a crash).
    public mutating func foundLeftover(_ name: String, now: UInt64) -> [Directive] {
        local[name] = .started
        leftovers.insert(name)
        var out: [Directive] = [.event(.foundLeftover(name))]
        return evaluate(now: now, out: &out)
    }

    /// Result of a probe (the agent's monitor before anything was started here).
    public mutating func probeResult(_ name: String, _ outcome: OperationOutcome, now: UInt64) -> [Directive] {
        var out: [Directive] = []
        guard probePending.remove(name) != nil else { return evaluate(now: now, out: &out) }
        factsUrgent = true
        switch outcome {
        case .notRunning:
            break
        case .success:
            local[name] = .started
            leftovers.insert(name)
            out.append(.event(.foundLeftover(name)))
        case .softError(let why), .hardError(let why), .fatalError(let why):
            // It may run, but broken: count it as running here so that it is stopped before
            // anything starts it anywhere.
            local[name] = .started
            if case .fatalError = outcome {
                return resourceFailed(name, reason: "probe: \(why)", kind: .fatal, now: now)
            }
            return resourceFailed(name, reason: "probe: \(why)", kind: .hard, now: now)
        }
        return evaluate(now: now, out: &out)
    }

    /// `hactl cleanup RESOURCE` on this node: forget its failures everywhere.
    /// A node's name (not also a resource's) cleans up the node: see `cleanupNode`.
    public mutating func cleanup(_ name: String, now: UInt64) -> [Directive] {
        var out: [Directive] = []
        let name = !resourceSet.nameSet.contains(name) && cluster.node(named: name) != nil ? "node:\(name)" : name
        applyCleanup(name, out: &out)
        for id in peers.keys.sorted() { out.append(.send(to: id, .cleanup(resource: name))) }
        return evaluate(now: now, out: &out)
    }

    mutating func applyCleanup(_ name: String, out: inout [Directive]) {
        // Resource names cannot hold ':', so "node:" names a node.
        if name.hasPrefix("node:") {
            if let n = cluster.node(named: String(name.dropFirst(5))) { cleanupNode(n, out: &out) }
            return
        }
        failureTimes[name] = nil
        failureExpiry[name] = nil
        failed[name] = nil
        fatal[name] = nil
        thresholdBans.remove(name)
        if local[name] == .blocked {
            // Retry the stop that failed; until it succeeds the resource stays blocked here.
            local[name] = .stopping
            out.append(.event(.resourceStopping(name)))
            out.append(.stop(name))
        }
        // Probed again where it is not running (it may have been started by hand, or the
        // failure that kept it off was fixed), before anything is started for it.
        if local[name] == nil, resourceSet.agent(named: name) != nil, !isWitness { probeIssued.remove(name) }
        out.append(.event(.cleanedUp(name)))
        urgent = true
    }

    /// Graceful shutdown: stop everything, let the coordinator place it elsewhere.
    public mutating func beginLeaving(now: UInt64) -> [Directive] {
        leaving = true
        urgent = true
        var out: [Directive] = [.event(.leaving)]
        return evaluate(now: now, out: &out)
    }

    /// True once every resource this node ran is reported running elsewhere (or nobody can run it).
    public func handoverComplete(previouslyHeld: Set<String>) -> Bool {
        // What maintenance or unmanage leaves alone stays here: no hand-over to wait for.
        guard held.allSatisfy({ resourceSet.isFrozen($0) }) else { return false }
        // (A clone's instance here is bound to this node: nobody takes it over.)
        for r in previouslyHeld where resourceSet.names.contains(r) && !resourceSet.isFrozen(r) && resourceSet.cloneInstance(r) == nil {
            let elsewhere = peers.values.contains { $0.member && $0.heldSet.contains(r) }
            let eligibleExists = peers.values.contains { $0.member && !($0.report?.leaving ?? false) && !($0.report?.failed.contains(r) ?? false) }
            if !elsewhere && eligibleExists { return false }
        }
        return true
    }

    /// The inputs of one `applyDesired` pass (see `settledDesired`).
    struct DesiredInputs: Equatable {
        var hasLease: Bool
        var authorityValid: Bool
        var inStartupGrace: Bool
        var leaving: Bool
        var isCoordinator: Bool
        var officeSince: UInt64
        var placementSerial: UInt64
        var localSerial: UInt64
        var peersSerial: UInt64
    }

    mutating func applyDesired(now: UInt64, out: inout [Directive]) {
        let hasLease = now < leaseUntil
        if hasLease { everHadLease = true }
        if hasLease != hadLease {
            hadLease = hasLease
            if !hasLease { out.append(.event(.leaseLost(policy: cluster.noQuorumPolicy.rawValue))) }
        }
        // Transient failures are forgotten after a while (the shell reports them again if they persist).
        for (r, t) in failureExpiry where now >= t {
            failureExpiry[r] = nil
            if failed.removeValue(forKey: r) != nil { out.append(.event(.resourceRecovered(r))) }
            urgent = true
        }
        // Failures older than failure_timeout no longer keep a resource away.
        for r in thresholdBans where failCount(r, now: now) < resourceSet.options(r).migrationThreshold {
            thresholdBans.remove(r)
            if failed.removeValue(forKey: r) != nil { out.append(.event(.resourceRecovered(r))) }
            urgent = true
        }
        let inputs = DesiredInputs(
            hasLease: hasLease, authorityValid: authorityValid(now: now),
            inStartupGrace: !everHadLease && now < leftoverGraceUntil, leaving: leaving || fencedOut, isCoordinator: isCoordinator,
            officeSince: office?.since ?? 0, placementSerial: office?.placementSerial ?? 0, localSerial: localSerial, peersSerial: membership.serial)
        if inputs == settledDesired { return }
        settledDesired = nil
        work.desiredPasses += 1
        defer {
            // Only a pass that changed nothing proves that the same inputs change nothing.
            if localSerial == inputs.localSerial { settledDesired = inputs }
        }
        // Ask the agents what already runs here before anything is started (a witness has no
        // agents to ask: it runs nothing).
        // (A clone's instance bound to another node is never run here: nothing to ask.)
        for a in resourceSet.agents where !isWitness && !probeIssued.contains(a.name) && !resourceSet.boundElsewhere(a.name, from: selfName) {
            probeIssued.insert(a.name)
            if local[a.name] == nil {
                probePending.insert(a.name)
                out.append(.probe(a.name))
            }
        }
        var desired: Set<String>
        let assignments = isCoordinator ? placement : authorityAssignments
        let heldNow = held
        let known = resourceSet.nameSet
        if leaving || isWitness || fencedOut {
            desired = []
        } else if hasLease {
            let mine = Set(assignments.filter { $0.value == selfId }.map(\.key))
            let valid = authorityValid(now: now)
            // A coordinator in office (whose heartbeats reach only its members, so it saw what
            // we run) decides; without one, keep what runs and start nothing.
            desired = valid ? mine : heldNow
            for r in failed.keys { desired.remove(r) }
            for r in fatal.keys { desired.remove(r) }
            desired = desired.filter { known.contains($0) && !resourceSet.boundElsewhere($0, from: selfName) }
        } else if cluster.noQuorumPolicy == .freeze {
            // Start nothing, stop no application. Addresses always follow the lease (the
            // guardian removes them at its end whatever the policy): two machines answering
            // for one address is never what an operator wants.
            desired = heldNow.filter { resourceSet.ip(named: $0) == nil && known.contains($0) }
        } else if !everHadLease && now < leftoverGraceUntil {
            desired = heldNow.intersection(leftovers).filter { known.contains($0) }  // start-up reconciliation window
        } else {
            desired = []
        }
        // Maintenance and unmanaged resources: what runs here keeps running (also without a
        // lease, while leaving, after a failure), and nothing of them starts.
        if resourceSet.maintenance || !resourceSet.unmanaged.isEmpty {
            desired = desired.filter { !resourceSet.isFrozen($0) }.union(heldNow.filter { resourceSet.isFrozen($0) })
        }
        // Nothing new starts here while a probe here may still find it, or a relative, running.
        if !probePending.isEmpty {
            let probing = Set(probePending.map { resourceSet.component(of: $0) })
            desired = desired.filter { local[$0] != nil || !probing.contains(resourceSet.component(of: $0)) }
        }
        let order = resourceSet.startOrder
        let unknown = heldNow.filter { !known.contains($0) }.sorted()  // removed from the configuration
        // Stops: what must not run here, or must restart, and everything depending on it here.
        var toStop = Set(local.filter { ($0.value == .started || $0.value == .starting) && (!desired.contains($0.key) || restartPending.contains($0.key)) }.keys)
        // Live migration: migrate_to where ordered, stop-first stops, and instances migrated away to stop.
        toStop.formUnion(migrationWork(desired: desired, mayAct: hasLease && authorityValid(now: now), out: &out))
        var grew = true
        while grew {
            grew = false
            for r in toStop.union(local.filter { $0.value == .stopping }.keys) {
                for d in resourceSet.dependents(of: r) where (local[d] == .started || local[d] == .starting) && !toStop.contains(d) {
                    toStop.insert(d)
                    if desired.contains(d) { restartPending.insert(d) }
                    grew = true
                }
            }
        }
        toStop = toStop.filter { !resourceSet.isFrozen($0) }
        for r in unknown + order.reversed() where toStop.contains(r) {
            // Dependents here stop first (a blocked dependent keeps it running).
            if resourceSet.dependents(of: r).contains(where: { local[$0] != nil }) { continue }
            local[r] = .stopping
            out.append(.event(.resourceStopping(r)))
            out.append(.stop(r))
            factsUrgent = true
        }
        // Starts, in dependency order, once what they depend on runs.
        for r in order where desired.contains(r) && local[r] == nil {
            let ready = resourceSet.predecessors(of: r).allSatisfy { local[$0] == .started || !startedOn($0).isEmpty || resourceSet.boundElsewhere($0, from: selfName) }
            guard ready, let how = startDirective(for: r) else { continue }
            local[r] = .starting
            if case .migrateFrom(_, let source, _) = how { out.append(.event(.resourceMigratingIn(r, from: source))) }
            out.append(.event(.resourceStarting(r)))
            out.append(how)
            factsUrgent = true
        }
    }

}
