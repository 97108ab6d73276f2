import Glibc
import CVigilSys

/// A single-threaded epoll(7) loop: every socket, the IPC server's descriptors, the signal
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

    /// The epoll descriptor: waiting costs the same however many descriptors are registered
    /// (poll(2) visited every one of them on every wakeup).
    private let epfd: Int32

    public init() throws {
        epfd = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epfd >= 0 else { throw SystemError("epoll_create1") }
    }

    deinit { if epfd >= 0 { close(epfd) } }

    public func add(fd: Int32, events: Int16 = Int16(POLLIN), _ handler: @escaping Handler) {
        let known = handlers[fd] != nil
        handlers[fd] = (events, handler)
        watch(fd, events, known: known)
    }

    /// Tells epoll which events of `fd` to report. A descriptor epoll already has is modified;
    /// one it lost (closed and its number reused) is added again.
    private func watch(_ fd: Int32, _ events: Int16, known: Bool) {
        let mask = UInt32(UInt16(bitPattern: events))
        guard vigil_epoll_ctl(epfd, known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, mask) != 0 else { return }
        let e = errno
        let retry = e == EEXIST ? EPOLL_CTL_MOD : (e == ENOENT ? EPOLL_CTL_ADD : nil)
        guard let op = retry, vigil_epoll_ctl(epfd, op, fd, mask) == 0 else { return onRegisterError(fd, retry == nil ? e : errno) }
    }

    /// Told when a descriptor cannot be registered (it would never be served).
    public var onRegisterError: (_ fd: Int32, _ errno: Int32) -> Void = { _, _ in }

    public func modify(fd: Int32, events: Int16) {
        guard let h = handlers[fd] else { return }
        handlers[fd] = (events, h.handler)
        watch(fd, events, known: true)
    }

    public func remove(fd: Int32) {
        guard handlers.removeValue(forKey: fd) != nil else { return }
        // Fails harmlessly when the descriptor was closed already (epoll forgot it then).
        _ = vigil_epoll_ctl(epfd, EPOLL_CTL_DEL, fd, 0)
    }

    /// Runs `job` after the current round of events.
    public func enqueue(_ job: @escaping () -> Void) { jobs.append(job) }

    public func stop() { running = false }

    public func run() {
        let maxEvents = Int(VIGIL_EPOLL_MAX)
        var readyFds = [Int32](repeating: 0, count: maxEvents)
        var readyEvents = [UInt32](repeating: 0, count: maxEvents)
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
            let n = readyFds.withUnsafeMutableBufferPointer { f in
                readyEvents.withUnsafeMutableBufferPointer { e in
                    vigil_epoll_wait(epfd, f.baseAddress, e.baseAddress, Int32(maxEvents), wait)
                }
            }
            if n < 0 {
                if errno == EINTR { continue }
                return
            }
            guard n > 0 else { continue }
            for i in 0..<Int(n) {
                let fd = readyFds[i]
                // A handler may have removed this descriptor while serving an earlier one.
                guard let h = handlers[fd] else { continue }
                // Only the bits the handler asked for, plus errors and hang-ups (as poll(2)).
                let revents = Int16(truncatingIfNeeded: readyEvents[i]) & (h.events | Int16(POLLERR | POLLHUP | POLLNVAL))
                guard revents != 0 else { continue }
                timed("descriptor \(fd)") { h.handler(revents) }
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
