/// Policy that used to live in the daemon shell, now in the core so the simulator runs exactly
/// what the daemon runs: how an agent's result is classified, when monitors run, which
/// resources restart when their definition changes, and when a graceful stop gives up waiting
/// for the hand-over.
extension Engine {
    /// The shell finished an operation on `name` (an agent's, or adding/removing an address).
    /// `evaluate: false` records it and returns only its events: the shell then calls `tick`
    /// once for a whole batch (hundreds of addresses added at a takeover).
    public mutating func operationFinished(_ name: String, _ op: AgentOperation, _ outcome: OperationOutcome, now: UInt64, evaluate: Bool) -> [Directive] {
        deferEvaluation = !evaluate
        defer { deferEvaluation = false }
        return operationFinished(name, op, outcome, now: now)
    }

    public mutating func operationFinished(_ name: String, _ op: AgentOperation, _ outcome: OperationOutcome, now: UInt64) -> [Directive] {
        switch op {
        case .start:
            switch outcome {
            case .success:
                return resourceStarted(name, now: now)
            case .fatalError(let why):
                return resourceFailed(name, reason: "start: \(why)", kind: .fatal, now: now)
            default:
                // A failed start bans the resource from this node (it moves): an agent's until
                // cleanup, an address's for a while (interfaces come back).
                let kind: FailureKind = resourceSet.ip(named: name) != nil ? .transient : .hard
                return resourceFailed(name, reason: "start: \(outcome)", kind: kind, now: now)
            }
        case .stop:
            return outcome.isFailure ? stopFailed(name, reason: "\(outcome)", now: now) : resourceStopped(name, now: now)
        case .monitor:
            monitorInFlight.remove(name)
            var out: [Directive] = []
            guard local[name] == .started else { return evaluate(now: now, out: &out) }
            switch outcome {
            case .success: return evaluate(now: now, out: &out)
            case .notRunning: return resourceFailed(name, reason: "monitor: not running", kind: .soft, now: now)
            case .softError(let why): return resourceFailed(name, reason: "monitor: \(why)", kind: .soft, now: now)
            case .hardError(let why): return resourceFailed(name, reason: "monitor: \(why)", kind: .hard, now: now)
            case .fatalError(let why): return resourceFailed(name, reason: "monitor: \(why)", kind: .fatal, now: now)
            }
        case .migrateTo, .migrateFrom:
            return migrationFinished(name, op, outcome, now: now)
        case .metaData, .validateAll:
            // Not lifecycle operations: nothing changes.
            var out: [Directive] = []
            return evaluate(now: now, out: &out)
        }
    }

    /// Recurring monitors of the agent resources started here: one at a time per resource,
    /// every `monitor_interval_ms` after the previous one was issued.
    mutating func scheduleMonitors(now: UInt64, out: inout [Directive]) {
        // Which monitors exist changes only with what runs here and the configuration: this is
        // the one place that decides it (a start overtaken by a stop is not `.started`, so it
        // gets none), and it runs before any monitor is issued whenever either changed.
        if monitorsSerial != localSerial {
            monitorsSerial = localSerial
            for name in Array(monitorDue.keys) where local[name] != .started || resourceSet.options(name).monitorIntervalMs == 0 {
                monitorDue[name] = nil
            }
            for a in resourceSet.agents where local[a.name] == .started && monitorDue[a.name] == nil {
                let interval = resourceSet.options(a.name).monitorIntervalMs
                if interval > 0 { monitorDue[a.name] = now + interval }
            }
            monitorNext = monitorDue.values.min() ?? .max
        }
        // Most evaluations find nothing due: one comparison, not a scan of every monitor.
        guard now >= monitorNext else { return }
        let due = monitorDue.filter { now >= $0.value && !monitorInFlight.contains($0.key) }.keys.sorted()
        for name in due {
            monitorDue[name] = now + resourceSet.options(name).monitorIntervalMs
            monitorInFlight.insert(name)
            out.append(.monitor(name))
        }
        monitorNext = monitorDue.values.min() ?? .max
    }

    /// A new configuration is in force: what runs here with a changed definition restarts in place.
    mutating func restartChanged(from old: ResourceSet, to new: ResourceSet) {
        // Only what the running instance is made of counts: the address and its interface here, the
        // agent and its parameters. Placement settings (preferences, stickiness, announcements)
        // change where or how, not what, and restart nothing.
        // Leaving maintenance (or managing a resource again): probe what we do not run, again,
        // before anything starts (what we run, its monitor checks).
        for a in new.agents where old.isFrozen(a.name) && !new.isFrozen(a.name) { probeIssued.remove(a.name) }
        for r in new.names where old.isFrozen(r) && !new.isFrozen(r) {
            failed[r] = nil
            failureExpiry[r] = nil
        }
        for r in held where (local[r] == .started || local[r] == .starting) && !new.isFrozen(r) {
            if new.instanceChanged(r, from: old, on: selfName) {
                restartPending.insert(r)
                urgent = true
            }
        }
    }

    /// How long a graceful stop waits for the hand-over before exiting anyway.
    public var handoverLimit: UInt64 { 2 * (timing.timeout + timing.lease) + 2000 }

    /// During a graceful stop: true once everything this node ran answers elsewhere (or nobody
    /// can run it), or the hand-over limit passed.
    public func mayExit(previouslyHeld: Set<String>, leavingSince: UInt64, now: UInt64) -> (exit: Bool, complete: Bool) {
        if handoverComplete(previouslyHeld: previouslyHeld) { return (true, true) }
        return (now >= leavingSince + handoverLimit, false)
    }

    /// Work done, for tests and benchmarks: full passes over the local resources, placement
    /// rounds (coordinator) and evaluations.
    public struct WorkCounters: Sendable, Equatable {
        public var evaluations = 0
        public var desiredPasses = 0
        public var placementRounds = 0
        public init() {}
    }
}
