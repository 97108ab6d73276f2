import Glibc
import VigilCore
import VigilSystem

/// Failover hooks: executables in `hooks_dir`, run for every event, one at a time in event
/// order from a queue, each with a timeout. A failing or hanging hook is logged and killed; it
/// never delays the cluster, which does not wait for hooks.
final class HookRunner {
    struct Event {
        var name: String
        var env: [String: String]
    }
    private var queue: [(hook: String, event: Event)] = []
    /// Hook runs waiting (the metrics' queue length).
    var queued: Int { queue.count }
    private var current: (hook: String, event: Event, child: ChildProcess, deadline: UInt64)?
    /// The spawner is starting the next hook (hooks run one at a time).
    private var spawning = false
    private let spawner: Spawner
    private let dir: String?
    private let timeoutMs: UInt64
    private let log: EventLog
    private let reactor: Reactor
    private var sequence: UInt64 = 0
    private let base: [String: String]
    static let maxQueue = 10_000
    private var cachedHooks: [String] = []
    private var scannedAt: UInt64?

    private let outputs: LingeringOutputs

    init(dir: String?, timeoutMs: UInt64, base: [String: String], reactor: Reactor, spawner: Spawner, outputs: LingeringOutputs, log: EventLog) {
        self.outputs = outputs
        self.spawner = spawner
        self.dir = dir
        self.timeoutMs = timeoutMs
        self.base = base
        self.reactor = reactor
        self.log = log
    }

    /// Hook files, rescanned at most once a second: a failover's burst of events reads the
    /// directory once, and a hook added by the operator is picked up within a second.
    func hooks() -> [String] {
        let now = MonotonicClock.nowMs()
        if let t = scannedAt, now < t + 1000 { return cachedHooks }
        scannedAt = now
        cachedHooks = scanHooks()
        return cachedHooks
    }

    /// Hook files: regular, executable, owned by root or us, not writable by group or others.
    private func scanHooks() -> [String] {
        guard let dir, let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name.hasPrefix(".") || name.hasSuffix("~") { continue }
            let path = dir + "/" + name
            var st = stat()
            guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_mode & 0o111 != 0 else { continue }
            if st.st_mode & 0o022 != 0 || (st.st_uid != 0 && st.st_uid != geteuid()) {
                log.warning("hook \(path) skipped: it must be owned by root and not writable by group or others")
                continue
            }
            names.append(path)
        }
        return names.sorted()
    }

    func post(_ name: String, _ fields: [String: String]) {
        sequence += 1
        var env = base
        for (k, v) in fields { env[k] = v }
        env["VIGIL_EVENT"] = name
        env["VIGIL_SEQUENCE"] = String(sequence)
        env["VIGIL_MONOTONIC_MS"] = String(MonotonicClock.nowMs())
        env["VIGIL_TIMESTAMP"] = Self.timestamp()
        let ev = Event(name: name, env: env)
        for h in hooks() {
            if queue.count >= Self.maxQueue {
                log.error("hook queue full (\(Self.maxQueue)): dropping \(name) for \(h)")
                continue
            }
            queue.append((h, ev))
        }
        runNext()
    }

    func tick() {
        guard let c = current else { return runNext() }
        let now = MonotonicClock.nowMs()
        if now >= c.deadline {
            log.warning("hook \(c.hook) for \(c.event.name) #\(c.event.env["VIGIL_SEQUENCE"] ?? "?") exceeded \(timeoutMs) ms: killed")
            c.child.killGroup(SIGKILL)
            current = (c.hook, c.event, c.child, UInt64.max)
        }
        reap()
    }

    func reap() {
        guard let c = current, let end = c.child.reap() else { return }
        outputs.release(c.child)
        current = nil
        switch end {
        case .exited(0): break
        default:
            let out = AgentExecutor.printable(c.child.outputText.split(separator: "\n").suffix(5).joined(separator: " | "))
            log.warning("hook \(c.hook) for \(c.event.name) #\(c.event.env["VIGIL_SEQUENCE"] ?? "?") failed: \(end)\(out.isEmpty ? "" : " output: \(out.prefix(500))")")
        }
        runNext()
    }

    private func runNext() {
        guard current == nil, !spawning, !queue.isEmpty else { return }
        let (hook, ev) = queue.removeFirst()
        spawning = true
        spawner.spawn(hook, [ev.name], env: ev.env) { [weak self] result in
            guard let self else { return }
            self.spawning = false
            switch result {
            case .success(let child):
                self.current = (hook, ev, child, MonotonicClock.nowMs() + self.timeoutMs)
                self.reactor.add(fd: child.outputFD) { [weak self, weak child] _ in
                    guard let child else { return }
                    if child.drain() { self?.reactor.remove(fd: child.outputFD) }
                    self?.reap()
                }
                self.reap()
            case .failure(let e):
                self.log.warning("hook \(hook) for \(ev.name) could not run: \(e)")
                self.runNext()
            }
        }
    }

    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = time_t(ts.tv_sec)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        let ms = Int(ts.tv_nsec / 1_000_000)
        func p(_ v: Int32, _ w: Int) -> String { String(repeating: "0", count: max(0, w - String(v).count)) + String(v) }
        return "\(p(tmv.tm_year + 1900, 4))-\(p(tmv.tm_mon + 1, 2))-\(p(tmv.tm_mday, 2))T\(p(tmv.tm_hour, 2)):\(p(tmv.tm_min, 2)):\(p(tmv.tm_sec, 2)).\(p(Int32(ms), 3))Z"
    }
}
