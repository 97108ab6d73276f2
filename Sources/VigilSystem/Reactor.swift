import Glibc
import CVigilSys

/// A single-threaded poll(2) loop: every socket, the IPC server's descriptors, the signal
/// descriptor and the timer are served on one thread, so the engine never sees two inputs at
/// once and needs no locks. There is no fixed tick: before every wait the loop asks `nextWake`
/// for the earliest deadline (the engine's next heartbeat, lease end or timeout, or a shell
/// timer) and sleeps until then or until a descriptor is ready, so an idle node wakes only when
/// it has something to do.
public final class Reactor {
    public typealias Handler = (Int16) -> Void
    private var handlers: [Int32: (events: Int16, handler: Handler)] = [:]
    private var jobs: [() -> Void] = []
    private var running = true
    /// Absolute CLOCK_MONOTONIC milliseconds of the next timer round.
    public var nextWake: () -> UInt64 = { MonotonicClock.nowMs() + 1000 }
    public var onTick: () -> Void = {}
    /// Rounds of the loop and timer rounds, for the idle benchmark.
    public private(set) var wakeups: UInt64 = 0
    public private(set) var timerRounds: UInt64 = 0
    /// Told when one handler (or the timer round) kept the loop busy longer than `stallMs`: a
    /// loop that stalls delays heartbeats, and peers count it lost.
    public var stallMs: UInt64 = 100
    public var onStall: (_ what: String, _ ms: UInt64) -> Void = { _, _ in }

    private func timed(_ what: @autoclosure () -> String, _ body: () -> Void) {
        let t0 = MonotonicClock.nowMs()
        body()
        let d = MonotonicClock.nowMs() - t0
        if d >= stallMs { onStall(what(), d) }
    }

    public init() {}

    public func add(fd: Int32, events: Int16 = Int16(POLLIN), _ handler: @escaping Handler) {
        handlers[fd] = (events, handler)
    }

    public func modify(fd: Int32, events: Int16) {
        if let h = handlers[fd] { handlers[fd] = (events, h.handler) }
    }

    public func remove(fd: Int32) { handlers[fd] = nil }

    /// Runs `job` after the current round of events.
    public func enqueue(_ job: @escaping () -> Void) { jobs.append(job) }

    public func stop() { running = false }

    public func run() {
        var fds: [pollfd] = []
        // The deadline we last slept towards: a deadline asked for is honoured even though,
        // once reached, the engine no longer lists it among its future ones.
        var scheduled: UInt64 = 0
        while running {
            wakeups += 1
            if MonotonicClock.nowMs() >= min(scheduled, nextWake()) {
                timerRounds += 1
                timed("timer round") { onTick() }
            }
            while !jobs.isEmpty {
                let j = jobs
                jobs = []
                for job in j { timed("queued job") { job() } }
            }
            guard running else { break }
            let wake = nextWake()
            scheduled = wake
            let now = MonotonicClock.nowMs()
            let wait = Int32(min(1000, wake - min(wake, now)))
            fds.removeAll(keepingCapacity: true)
            for (fd, h) in handlers { fds.append(pollfd(fd: fd, events: h.events, revents: 0)) }
            let n = poll(&fds, nfds_t(fds.count), wait)
            if n < 0 {
                if errno == EINTR { continue }
                return
            }
            guard n > 0 else { continue }
            for p in fds where p.revents != 0 {
                // A handler may have removed this descriptor while serving an earlier one.
                if let h = handlers[p.fd] { timed("descriptor \(p.fd)") { h.handler(p.revents) } }
            }
        }
    }
}

/// SIGTERM/SIGINT/SIGHUP delivered through a descriptor the reactor can poll.
public final class SignalDescriptor {
    public let fd: Int32

    public init(signals: [Int32]) throws {
        var mask = sigset_t()
        sigemptyset(&mask)
        for s in signals { sigaddset(&mask, s) }
        guard sigprocmask(SIG_BLOCK, &mask, nil) == 0 else { throw SystemError("sigprocmask") }
        fd = signalfd(-1, &mask, Int32(SFD_NONBLOCK | SFD_CLOEXEC))
        guard fd >= 0 else { throw SystemError("signalfd") }
        signal(SIGPIPE, SIG_IGN)
    }

    /// Returns the pending signal numbers.
    public func read() -> [Int32] {
        var out: [Int32] = []
        var info = signalfd_siginfo()
        while Glibc.read(fd, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {
            out.append(Int32(info.ssi_signo))
        }
        return out
    }
}
