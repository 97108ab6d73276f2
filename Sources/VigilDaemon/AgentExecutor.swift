import Glibc
import VigilCore
import VigilSystem
import VigilSystemd

/// Runs agent operations for clusterd without ever blocking its reactor: each operation is a
/// child process in its own process group, with its own timeout; operations on one resource
/// run one at a time, in the order asked; different resources run in parallel. A hanging
/// agent has its whole group killed; garbage on its output is only logged (bounded).
///
/// At most `limit` operations run at once on the node (as Pacemaker's `node-action-limit`,
/// twice the cores): a configuration that adds hundreds of resources probes them without a
/// fork storm that starves the node. Waiting operations go in priority order: stops (they free
/// what must move), starts, probes, then recurring monitors; in submission order within each.
final class AgentExecutor {
    struct Request {
        var resource: String
        var op: AgentOperation
        var spec: AgentSpec
        var params: [AgentParam]
        var timeoutMs: UInt64
        var intervalMs: UInt64
        var completion: (OperationOutcome, String) -> Void
        /// migrate_to, migrate_from: the source and target node names.
        var migration: (source: String, target: String)? = nil
        var seq: UInt64 = 0
        /// When its first spawn failed for lack of descriptors, processes or memory, and when
        /// it is tried again (such a failure is the node's, not the agent's).
        var firstSpawnFailure: UInt64?
        var retryAt: UInt64 = 0
        var priority: Int {
            switch op {
            case .stop, .migrateTo: return 0
            case .start, .migrateFrom: return 1
            case .monitor: return intervalMs == 0 ? 2 : 3
            case .metaData, .validateAll: return 2
            }
        }
    }
    private struct Running {
        var request: Request
        var child: ChildProcess
        var deadline: UInt64
        var timedOut = false
    }

    private var queues: [String: [Request]] = [:]
    private var running: [String: Running] = [:]
    /// Operations on `systemd:` resources under way (D-Bus calls and jobs: no process here).
    private struct BusOperation {
        var request: Request
        var deadline: UInt64
        var token: UInt64
        var startedMs: UInt64
    }
    private var busRunning: [String: BusOperation] = [:]
    private var busTokens: UInt64 = 0
    /// systemd's manager, once a `systemd:` resource needs it.
    private(set) var systemd: SystemdBus?
    /// Resources whose operation's process the spawner is starting.
    private var starting: Set<String> = []
    private let spawner: Spawner
    private var killing = false
    let reactor: Reactor
    let log: EventLog
    private var submitted: UInt64 = 0
    let limit: Int

    private let outputs: LingeringOutputs

    init(reactor: Reactor, log: EventLog, spawner: Spawner, outputs: LingeringOutputs, limit: Int = AgentExecutor.defaultLimit) {
        self.reactor = reactor
        self.outputs = outputs
        self.log = log
        self.limit = max(1, limit)
        self.spawner = spawner
    }

    static let transientSpawnErrors: Set<Int32> = [EMFILE, ENFILE, EAGAIN, ENOMEM]

    static var defaultLimit: Int { max(4, 2 * Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    /// Operations queued or running for a resource.
    func busy(_ resource: String) -> Bool {
        running[resource] != nil || starting.contains(resource) || busRunning[resource] != nil || !(queues[resource]?.isEmpty ?? true)
    }

    /// Parameters each OCF agent's meta-data marks `private="1"`, by agent. Until an agent's
    /// answer is in (or when it failed), every parameter value of its resources is masked in
    /// what is logged of their output, and in `hactl config show`.
    private(set) var privateParameters: [String: Set<String>] = [:]
    /// Agents asked and not answered yet, and when a failed one may be asked again.
    private var askingMetadata: Set<String> = []
    private var metadataRetryAt: [String: UInt64] = [:]
    static let metadataRetryMs: UInt64 = 600_000

    /// Every name some agent marks private, and the OCF agents (of `specs`) whose meta-data is
    /// not known (for `hactl config show`).
    func privacy(of specs: [AgentSpec]) -> (names: Set<String>, unknown: [String]) {
        let names = privateParameters.values.reduce(into: Set<String>()) { $0.formUnion($1) }
        let unknown = Set(specs.filter { $0.cls == .ocf }.map { "\($0)" }).filter { privateParameters[$0] == nil }
        return (names, unknown.sorted())
    }

    /// Asks an OCF agent for its meta-data before its first operation runs (the agent's
    /// operations wait for the answer, at most its 10 s timeout). An agent that cannot answer (many simple agents have no
    /// meta-data action) is asked again only after ten minutes.
    private func learnPrivateParameters(_ spec: AgentSpec) {
        let key = "\(spec)"
        guard spec.cls == .ocf, privateParameters[key] == nil, !askingMetadata.contains(key) else { return }
        if let again = metadataRetryAt[key], MonotonicClock.nowMs() < again { return }
        askingMetadata.insert(key)
        // A queue of its own (no resource has a name with a space).
        submit(Request(resource: " meta-data \(key)", op: .metaData, spec: spec, params: [], timeoutMs: 10_000, intervalMs: 0) { [weak self] outcome, output in
            guard let self else { return }
            self.askingMetadata.remove(key)
            if !outcome.isFailure, case .success(let md) = AgentMetadata.parse(output) {
                self.privateParameters[key] = md.privateParameters
                self.metadataRetryAt[key] = nil
            } else {
                self.metadataRetryAt[key] = MonotonicClock.nowMs() + Self.metadataRetryMs
                self.log.warning("meta-data of \(key) could not be read: the parameter values of its resources stay masked in the log and in hactl config show (asked again in 10 minutes)")
            }
        })
    }

    func submit(_ r: Request) {
        if r.op != .metaData { learnPrivateParameters(r.spec) }
        var r = r
        submitted += 1
        r.seq = submitted
        queues[r.resource, default: []].append(r)
        pump()
    }

    /// Starts waiting operations while slots are free: the most urgent first.
    private func pump() {
        while running.count + starting.count + busRunning.count < limit {
            var best: (resource: String, priority: Int, seq: UInt64)?
            let now = MonotonicClock.nowMs()
            for (resource, q) in queues where running[resource] == nil && !starting.contains(resource) && busRunning[resource] == nil {
                guard let head = q.first, head.retryAt <= now else { continue }
                // An agent's operations wait for its meta-data (milliseconds): their output is
                // then masked by what it says, not all of it.
                if head.op != .metaData && !askingMetadata.isEmpty && askingMetadata.contains("\(head.spec)") { continue }
                if best.map({ (head.priority, head.seq) < ($0.priority, $0.seq) }) ?? true { best = (resource, head.priority, head.seq) }
            }
            guard let b = best else { return }
            start(b.resource)
        }
    }

    private func start(_ resource: String) {
        guard running[resource] == nil, !starting.contains(resource), busRunning[resource] == nil, var q = queues[resource], !q.isEmpty else { return }
        let r = q.removeFirst()
        queues[resource] = q.isEmpty ? nil : q
        if r.spec.cls == .systemd { return startSystemd(r) }
        let env = r.spec.environment(resource: ResourceSet.agentInstanceName(r.resource), params: r.params.map { ($0.name, $0.value) }, op: r.op,
                                     timeoutMs: r.timeoutMs, intervalMs: r.intervalMs, migration: r.migration)
        guard access(r.spec.executable, X_OK) == 0 else {
            finish(r, .couldNotRun("\(SystemError("\(r.spec.executable) is not an executable on this node", errno: errno))"), output: "")
            return
        }
        // The slot is taken while the spawner starts the process (off this thread).
        starting.insert(resource)
        spawner.spawn(r.spec.executable, [r.spec.argument(for: r.op)], env: env) { [weak self] result in
            guard let self else { return }
            self.starting.remove(resource)
            switch result {
            case .failure(let e) where Self.transientSpawnErrors.contains(e.errno):
                // Out of descriptors or processes: try again every 200 ms for as long as the
                // operation's timeout, then count it as the agent's failure.
                var again = r
                let now = MonotonicClock.nowMs()
                let first = r.firstSpawnFailure ?? now
                if now - first < r.timeoutMs {
                    if r.firstSpawnFailure == nil { self.log.warning("cannot start \(r.op.rawValue) of \(resource) (\(e)): trying again every 200 ms") }
                    again.firstSpawnFailure = first
                    again.retryAt = now + 200
                    self.queues[resource, default: []].insert(again, at: 0)
                } else {
                    self.finish(r, .couldNotRun("\(e) for \(now - first) ms"), output: "")
                }
            case .failure(let e):
                self.finish(r, .couldNotRun("\(e)"), output: "")
            case .success(let child):
                // The timeout runs from the moment the process exists.
                self.running[resource] = Running(request: r, child: child, deadline: MonotonicClock.nowMs() + r.timeoutMs)
                self.reactor.add(fd: child.outputFD) { [weak self, weak child] _ in
                    guard let child else { return }
                    if child.drain() { self?.reactor.remove(fd: child.outputFD) }
                    self?.reap()
                }
                if self.killing { child.killGroup(SIGKILL) }
            }
            self.reap()
        }
    }

    func setSystemd(_ bus: SystemdBus) { systemd = bus }

    func beginBusOperation(_ r: Request) -> UInt64 {
        busTokens += 1
        let now = MonotonicClock.nowMs()
        busRunning[r.resource] = BusOperation(request: r, deadline: now + r.timeoutMs, token: busTokens, startedMs: now)
        return busTokens
    }

    /// A systemd operation's result (dropped if it timed out meanwhile).
    func endBusOperation(_ resource: String, token: UInt64, outcome: OperationOutcome, output: String) {
        guard let op = busRunning[resource], op.token == token else { return }
        busRunning[resource] = nil
        batch { finish(op.request, outcome: outcome, output: output, durationMs: MonotonicClock.nowMs() - op.startedMs) }
        pump()
    }

    /// Runs the delivery of a burst of results (the daemon batches the engine's evaluation).
    var batch: (() -> Void) -> Void = { $0() }

    /// Called on SIGCHLD and on every tick: collects finished operations, enforces timeouts.
    func reap() {
        systemd?.process()
        outputs.reapKeeper()
        batch { reapNow() }
    }

    private func reapNow() {
        let now = MonotonicClock.nowMs()
        for (resource, op) in busRunning where now >= op.deadline {
            guard busRunning[resource]?.token == op.token else { continue }
            busRunning[resource] = nil
            log.warning("\(op.request.op.rawValue) of \(resource) (\(op.request.spec)) timed out after \(op.request.timeoutMs) ms (systemd's job is left to systemd; a stop replaces it)")
            finish(op.request, outcome: .softError("\(op.request.op.rawValue) timed out"), output: "", durationMs: now - op.startedMs)
        }
        for (resource, var run) in running {
            if !run.timedOut && now >= run.deadline {
                run.timedOut = true
                running[resource] = run
                log.warning("\(run.request.op.rawValue) of \(resource) (\(run.request.spec)) timed out after \(run.request.timeoutMs) ms: killing its process group \(run.child.pid)")
                run.child.killGroup(SIGKILL)
            }
            guard let end = run.child.reap() else { continue }
            running[resource] = nil
            outputs.release(run.child)
            finish(run.request, run.timedOut ? .timedOut : end, output: run.child.outputText, durationMs: now - run.child.startedMs)
        }
        pump()
    }

    /// Told every finished operation's action and duration (the metrics' histograms).
    var onFinished: ((AgentOperation, UInt64) -> Void)?

    private func finish(_ r: Request, _ end: ProcessEnd, output: String, durationMs: UInt64 = 0) {
        finish(r, outcome: r.spec.outcome(of: end, op: r.op), output: output, durationMs: durationMs)
    }

    private func finish(_ r: Request, outcome: OperationOutcome, output: String, durationMs: UInt64) {
        onFinished?(r.op, durationMs)
        let secret: Set<String>? = r.spec.cls == .ocf ? privateParameters["\(r.spec)"] : []
        let trimmed = Self.printable(Redaction.maskValues(of: r.params, in: output, privateNames: secret).split(separator: "\n").suffix(20).joined(separator: " | "))
        if outcome.isFailure || (r.op != .monitor && r.op != .metaData) {
            let line = "agent \(r.op.rawValue) resource=\(r.resource) agent=\(r.spec) result=\"\(outcome)\" \(durationMs)ms"
            if outcome.isFailure {
                log.warning(line + (trimmed.isEmpty ? "" : " output: \(trimmed.prefix(2000))"))
            } else {
                log.info(line)
            }
        }
        r.completion(outcome, output)
    }

    /// Agent output as a log-safe string: control characters and invalid bytes become '?'.
    static func printable(_ s: String) -> String {
        String(String.UnicodeScalarView(s.unicodeScalars.map { u in
            (u.value < 0x20 || u.value == 0x7F || u.value == 0xFFFD || (0x80..<0xA0).contains(u.value)) ? "?" : u
        }))
    }

    /// Kills everything still running (clusterd is exiting).
    func killAll() {
        killing = true
        // Operations whose process is being started are killed as their start completes.
        spawner.shutdown()
        for (_, run) in running { run.child.killGroup(SIGKILL) }
    }
}
