import Glibc
import VigilCore
import VigilSystem

/// Runs fence agents (the fence-agents protocol: `key=value` lines on stdin, exit 0 for
/// success) without blocking clusterd's loop: one child process at a time per fence, each with
/// the device's timeout; levels tried in order, every device of a level must succeed. Also runs
/// every device's `monitor` action periodically, and keeps the node's fencing history.
final class Fencer {
    struct Health: Sendable {
        var ok: Bool
        var detail: String
        var wallMs: UInt64
    }
    /// The last monitor result per device (this node's view).
    private(set) var health: [String: Health] = [:]
    /// Outcomes this node ran or learned, oldest first, bounded; kept in the state directory.
    var history: [FenceRecord] = []
    /// Called with the whole history after each new outcome (the daemon saves it off the loop).
    var onRecord: (([FenceRecord]) -> Void)?
    static let historyLimit = 200

    private struct Step { var device: FenceDevice; var action: String }
    private struct Job {
        var target: String
        var levels: [[FenceDevice]]
        var level = 0
        var steps: [Step] = []
        var failures: [String] = []
        var completion: (Bool, String, String) -> Void
    }
    private struct Running {
        var child: ChildProcess
        var deadline: UInt64
        var timedOut = false
        var done: (ProcessEnd, String) -> Void
    }
    private var running: [pid_t: Running] = [:]
    private var monitorDue: [String: UInt64] = [:]
    private var monitoring: Set<String> = []
    private let spawner: Spawner
    private let reactor: Reactor
    private let log: EventLog
    private let outputs: LingeringOutputs

    init(spawner: Spawner, reactor: Reactor, outputs: LingeringOutputs, log: EventLog) {
        self.spawner = spawner
        self.reactor = reactor
        self.outputs = outputs
        self.log = log
    }

    /// Fences `target` through `levels` (reboot: with several devices in a level, `off` on all
    /// of them, then `on` on all, as for dual power supplies). `completion(ok, devices, detail)`.
    func fence(target: String, levels: [[FenceDevice]], completion: @escaping (Bool, String, String) -> Void) {
        guard !levels.isEmpty else { return completion(false, "", "no fence device covers \(target)") }
        var job = Job(target: target, levels: levels, completion: completion)
        job.steps = Self.steps(levels[0])
        runStep(job)
    }

    private static func steps(_ level: [FenceDevice]) -> [Step] {
        level.count == 1 ? [Step(device: level[0], action: "reboot")]
            : level.map { Step(device: $0, action: "off") } + level.map { Step(device: $0, action: "on") }
    }

    private func runStep(_ job: Job) {
        var job = job
        guard !job.steps.isEmpty else {
            let devices = job.levels[job.level].map(\.name).joined(separator: "+")
            return job.completion(true, devices, "level \(job.level + 1) (\(devices)) succeeded")
        }
        let step = job.steps.removeFirst()
        run(step.device, action: step.action, target: job.target) { [weak self] end, output in
            guard let self else { return }
            if case .exited(0) = end {
                self.log.info("fence node=\(job.target) device=\(step.device.name) action=\(step.action): ok")
                return self.runStep(job)
            }
            let shown = Redaction.maskValues(of: step.device.params, in: output)
            let why = "\(step.device.name) \(step.action): \(Self.describe(end))\(Self.lastLine(shown).map { " (\($0))" } ?? "")"
            self.log.warning("fence node=\(job.target) level \(job.level + 1) failed: \(why)")
            job.failures.append(why)
            job.level += 1
            guard job.level < job.levels.count else {
                let tried = job.levels.flatMap { $0.map(\.name) }.joined(separator: ",")
                return job.completion(false, tried, "every level failed: \(job.failures.joined(separator: "; "))")
            }
            job.steps = Self.steps(job.levels[job.level])
            self.runStep(job)
        }
    }

    /// Runs one action of a device; `done` gets how the agent ended and what it printed.
    func run(_ device: FenceDevice, action: String, target: String?, done: @escaping (ProcessEnd, String) -> Void) {
        guard let path = FenceAgentPath.resolve(device.agent) else {
            return done(.couldNotRun("fence agent \(device.agent) not found (looked in \(FenceDevice.searchPath.joined(separator: ", ")))"), "")
        }
        let input = Array(device.input(action: action, target: target).utf8)
        // No arguments: the agent reads everything, secrets included, from stdin.
        spawner.spawn(path, [], env: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"], stdin: input) { [weak self] result in
            guard let self else { return }
            switch result {
            case .failure(let e): done(.couldNotRun("\(e)"), "")
            case .success(let child):
                self.running[child.pid] = Running(child: child, deadline: MonotonicClock.nowMs() + device.timeoutMs, done: done)
                self.reactor.add(fd: child.outputFD) { [weak self, weak child] _ in
                    guard let child else { return }
                    if child.drain() { self?.reactor.remove(fd: child.outputFD) }
                    self?.reap()
                }
                self.reap()
            }
        }
    }

    /// On SIGCHLD and every shell round: collects finished agents, kills those past their timeout.
    func reap() {
        let now = MonotonicClock.nowMs()
        for (pid, var r) in running {
            if !r.timedOut && now >= r.deadline {
                r.timedOut = true
                running[pid] = r
                r.child.killGroup(SIGKILL)
            }
            guard let end = r.child.reap() else { continue }
            running[pid] = nil
            outputs.release(r.child)
            r.done(r.timedOut ? .timedOut : end, r.child.outputText)
        }
    }

    /// Runs the `monitor` action of every device whose turn it is (every data node checks every device).
    func monitorDevices(_ devices: [FenceDevice], now: UInt64) {
        for d in devices where d.monitorIntervalMs > 0 && !monitoring.contains(d.name) {
            guard let due = monitorDue[d.name] else {
                // The first check comes a little after start-up, spread by name.
                monitorDue[d.name] = now + 2000 + UInt64(d.name.utf8.reduce(0) { ($0 &* 31 &+ Int($1)) & 0xFFFF }) % 3000
                continue
            }
            guard now >= due else { continue }
            monitorDue[d.name] = now + d.monitorIntervalMs
            monitoring.insert(d.name)
            run(d, action: "monitor", target: nil) { [weak self] end, output in
                guard let self else { return }
                self.monitoring.remove(d.name)
                let ok: Bool
                if case .exited(0) = end { ok = true } else { ok = false }
                let detail = ok ? "ok" : "\(Self.describe(end))\(Self.lastLine(Redaction.maskValues(of: d.params, in: output)).map { ": \($0)" } ?? "")"
                if self.health[d.name]?.ok != ok { ok ? self.log.info("fence device \(d.name) monitor: ok") : self.log.warning("fence device \(d.name) monitor failed: \(detail)") }
                self.health[d.name] = Health(ok: ok, detail: detail, wallMs: WallClock.nowMs())
            }
        }
        let names = Set(devices.map(\.name))
        for k in Array(health.keys) where !names.contains(k) { health[k] = nil; monitorDue[k] = nil }
    }

    /// Keeps an outcome in the history with this node's wall time.
    func record(_ rec: FenceRecord) {
        var r = rec
        r.wallMs = WallClock.nowMs()
        history.append(r)
        if history.count > Self.historyLimit { history.removeFirst(history.count - Self.historyLimit) }
        onRecord?(history)
    }

    func killAll() {
        for r in running.values { r.child.killGroup(SIGKILL) }
    }

    static func describe(_ end: ProcessEnd) -> String {
        switch end {
        case .exited(let c): return "exit code \(c)"
        case .signalled(let s): return "killed by signal \(s)"
        case .timedOut: return "timed out"
        case .couldNotRun(let why): return why
        }
    }

    /// The agent's last non-empty output line, printable and short (agents print their errors there).
    static func lastLine(_ output: String) -> String? {
        guard let l = output.split(whereSeparator: \.isNewline).last(where: { !$0.allSatisfy(\.isWhitespace) }) else { return nil }
        return String(AgentExecutor.printable(String(l)).prefix(200))
    }
}

extension Daemon {
    /// Fencing in `hactl status`: the latest outcome per node while it is under way or failed,
    /// nodes fenced and still silent, this node if it was fenced while running, and every device
    /// with this node's last monitor of it.
    func fencingStatus(_ st: inout ClusterStatus) {
        var states: [ClusterStatus.FenceState] = []
        var latest: [String: FenceRecord] = [:]
        for r in fencer.history { latest[r.target] = r }
        for n in cluster.nodes {
            if n.id == selfNode.id {
                if engine.fencedOut { states.append(.init(node: n.name, state: "fenced-while-running", detail: "this node runs nothing until: hactl cleanup \(n.name)")) }
                continue
            }
            let member = engine.peers[n.id]?.member ?? false
            if engine.isFenced(n.id) && !member {
                states.append(.init(node: n.name, state: "fenced", detail: latest[n.name].map { "\($0.outcome.rawValue) by \($0.by)\($0.device.isEmpty ? "" : " via \($0.device)")" }))
            } else if let r = latest[n.name], r.outcome == .begun || r.outcome == .failed {
                states.append(.init(node: n.name, state: r.outcome == .begun ? "fencing" : "failed", detail: r.reason))
            }
        }
        st.fencing = states.isEmpty ? nil : states
        let devices = engine.resourceSet.fencing.devices
        st.fenceDevices = devices.isEmpty ? nil : devices.map { d in
            let h = fencer.health[d.name]
            return .init(name: d.name, agent: d.agent, nodes: (d.hosts + d.hostMap.keys).sorted(), ok: h?.ok, detail: h?.detail)
        }
    }
}
