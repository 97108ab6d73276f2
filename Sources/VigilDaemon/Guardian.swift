import CVigilSys
import Glibc
import VigilCore
import VigilSystem

/// The address guardian: a small process of its own (`clusterd --guardian`), started and
/// supervised by `clusterd`, that removes every Vigil address of this machine the moment the
/// node's lease deadline passes without renewal, whatever state `clusterd` is in (stopped by
/// SIGSTOP, stuck in D-state, swapping, crashed). It runs with its memory locked and a real-time
/// priority above `clusterd`'s, and does nothing else: no configuration, no network but netlink.
///
/// Protocol: descriptor 3 is a page shared with `clusterd` whose first word is the deadline in
/// force, on CLOCK_MONOTONIC in milliseconds; 0 disarms (nothing held), `UInt64.max` means no
/// deadline (a one-node cluster). `clusterd` stores every renewal there without waking the
/// guardian, which re-reads the word whenever it wakes for the deadline it knew. Its standard
/// input is the doorbell: an 8-byte big-endian record (the new deadline, used directly when there
/// is no shared page) whenever the deadline moves earlier, is armed or is disarmed. At end of file
/// (`clusterd` gone) it still enforces the last deadline, then exits.
///
/// What it covers: floating addresses. What only fencing covers: applications on a stalled node
/// (they keep running until `clusterd` resumes and stops them), and a whole machine that stops
/// (a paused VM answers ARP again when it resumes, before any process runs).
public enum Guardian {
    public static let realtimePriority: Int32 = 50

    public static func run(node: String, watchdog: Watchdog? = nil) -> Int32 {
        let log = EventLog(node: node)
        // Stop signals are for clusterd: the guardian outlives a crashed clusterd to enforce the
        // last deadline, and ends when its pipe closes (systemd's final SIGKILL ends it too).
        for s in [SIGTERM, SIGINT, SIGHUP] { signal(s, SIG_IGN) }
        Realtime.apply(priority: realtimePriority, log: log, who: "guardian")
        let netlink: AddressManager
        do {
            netlink = try AddressManager()
        } catch {
            log.error("guardian: cannot open netlink: \(error)")
            return 1
        }
        _ = fcntl(0, F_SETFL, O_NONBLOCK)
        // The shared word (descriptor 3) is the deadline in force; the pipe only rings the bell
        // when it moved earlier, was armed or disarmed. Later deadlines are read when the
        // guardian wakes for the one it had, so renewals cost neither side a system call.
        let shared = SharedDeadline(inherited: 3)
        // The watchdog (see WatchdogHolder): its state goes to word 2 (and a detail to word 3) for
        // clusterd, which refuses to start without it; word 1 says until when it may be petted.
        var holder: WatchdogHolder?
        if let wd = watchdog {
            let device = wd.device(for: node)
            do throws(WatchdogHolder.OpenError) {
                let h = try WatchdogHolder.open(path: device, config: wd)
                holder = h
                shared?[2] = WatchdogHolder.Status.armed.rawValue
                log.info("guardian: watchdog \(device) armed, timeout \(wd.timeoutS) s\(h.standIn ? " (a FIFO: stand-in)" : "")")
            } catch {
                switch error {
                case .failed(let status, let detail, let message):
                    log.error("guardian: \(message)")
                    shared?[3] = detail
                    shared?[2] = status.rawValue
                }
                return 3
            }
        }
        var deadline: UInt64 = 0
        // The deadline whose addresses were removed (enforced once), and a retry after failures.
        var enforced: UInt64 = 0
        var retryAt: UInt64?
        var eof = false
        var pending: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 512)
        log.info("guardian started pid=\(getpid())\(shared == nil ? " (no shared deadline: pipe only)" : "")")
        while true {
            if let sh = shared { deadline = sh.value }
            let now = MonotonicClock.nowMs()
            // A retry is for the deadline that was enforced; any new deadline since decides alone
            // (a renewed lease must never see its addresses removed by an old retry).
            if retryAt != nil && deadline != enforced { retryAt = nil }
            var armed = deadline != 0 && deadline != UInt64.max && deadline != enforced
            if (armed && now >= deadline) || (retryAt.map { now >= $0 } ?? false) {
                let (removed, failures) = removeAll(netlink, log: log, deadline: deadline)
                log.warning("guardian: lease deadline passed \(now - min(now, deadline)) ms ago without renewal; removed \(removed) address(es)\(failures > 0 ? ", \(failures) failed: retrying" : "")")
                // Stay armed until every marked address is gone: retry shortly.
                enforced = deadline
                retryAt = failures > 0 ? now + 5 : nil
                armed = false
            }
            let petUntil = shared?[1] ?? Watchdog.petFreely
            if eof, let h = holder, petUntil == Watchdog.petFreely {
                // clusterd is gone and nothing that needs fencing ran here: disarm.
                h.disarm()
                holder = nil
                log.info("guardian: watchdog disarmed")
            }
            if eof && !armed && retryAt == nil && holder == nil {
                log.info("guardian: clusterd is gone; exiting")
                return 0
            }
            var wait: Int32 = -1
            if armed { wait = Int32(min(1000, deadline - min(deadline, now))) }
            if let h = holder {
                let next = h.service(now: now, petUntil: petUntil, log: log)
                let w = Int32(min(1000, next - min(next, now)))
                wait = wait < 0 ? w : min(wait, w)
            }
            if let r = retryAt { wait = Int32(min(UInt64(wait < 0 ? 1000 : wait), r - min(r, now))) }
            if eof {
                // Only an armed deadline is left to enforce.
                _ = poll(nil, 0, max(wait, 1))
                continue
            }
            var pfd = pollfd(fd: 0, events: Int16(POLLIN), revents: 0)
            let n = poll(&pfd, 1, wait)
            if n < 0 && errno != EINTR { return 1 }
            guard n > 0 else { continue }
            let r = buf.withUnsafeMutableBytes { Glibc.read(0, $0.baseAddress, $0.count) }
            if r == 0 {
                eof = true
            } else if r > 0 {
                pending.append(contentsOf: buf[0..<r])
                while pending.count >= 8 {
                    let record = pending[0..<8].reduce(0) { $0 << 8 | UInt64($1) }
                    if shared == nil { deadline = record }
                    pending.removeFirst(8)
                }
            }
        }
    }

    /// Removes every address carrying Vigil's mark, logging each with its latency.
    static func removeAll(_ nl: AddressManager, log: EventLog, deadline: UInt64) -> (removed: Int, failures: Int) {
        let found: [AddressManager.Found]
        do {
            found = try nl.list()
        } catch {
            log.error("guardian: cannot list addresses: \(error)")
            return (0, 1)
        }
        var n = 0
        var failures = 0
        for f in found where f.proto == AddressManager.proto {
            guard let ifname = Interfaces.name(ofIndex: f.ifindex) else { continue }
            let p = IPPrefix(address: f.address, length: f.prefixLength)
            let t0 = MonotonicClock.nowMs()
            do {
                try nl.remove(p, interface: ifname)
                n += 1
                log.warning("address-removed by=guardian address=\(p) interface=\(ifname) latency_ms=\(MonotonicClock.nowMs() - t0) after_deadline_ms=\(MonotonicClock.nowMs() - min(MonotonicClock.nowMs(), deadline))")
            } catch {
                failures += 1
                log.error("guardian: cannot remove \(p) from \(ifname): \(error)")
            }
        }
        return (n, failures)
    }
}

/// `clusterd`'s end of the guardian: starts it, hands it every new deadline, restarts it if it dies.
final class GuardianLink {
    let node: String
    let log: EventLog
    private(set) var pid: pid_t = 0
    private var fd: Int32 = -1
    /// The deadline word both processes map; it survives guardian restarts.
    private let shared: SharedDeadline
    private var sent: UInt64?
    private(set) var restarts = 0
    private var startedAt: UInt64 = 0
    /// When to try starting a guardian again after it died or could not be started.
    private var respawnAt: UInt64?
    /// The deadline the guardian should have (handed over again after a restart).
    private var wanted: UInt64 = 0
    /// True while a guardian runs and has the current deadline.
    var armed: Bool { pid > 0 && sent == wanted }

    let watchdog: Watchdog?

    init(node: String, log: EventLog, watchdog: Watchdog? = nil) throws {
        self.node = node
        self.log = log
        self.watchdog = watchdog
        self.shared = try SharedDeadline()
        try spawn()
        if watchdog != nil { try awaitWatchdog() }
    }

    /// With a watchdog: waits (at most 5 s) for the guardian to report it armed; a configuration
    /// that relies on a watchdog that is not there stops the start.
    private func awaitWatchdog() throws {
        let device = watchdog.map { $0.device(for: node) } ?? "?"
        let end = MonotonicClock.nowMs() + 5000
        while MonotonicClock.nowMs() < end {
            switch WatchdogHolder.Status(rawValue: shared[2]) {
            case .armed?: return
            case .openFailed?:
                let e = Int32(truncatingIfNeeded: shared[3])
                throw SystemError("watchdog \(device): \(e == EBUSY ? "busy (another process, sbd?, holds it)" : String(cString: strerror(e)))", errno: 0)
            case .notAWatchdog?: throw SystemError("watchdog \(device) is not a watchdog device", errno: 0)
            case .timeoutTooLong?: throw SystemError("watchdog \(device) keeps a timeout of \(shared[3]) s, longer than timeout_s = \(watchdog?.timeoutS ?? 0)", errno: 0)
            default: usleep(10_000)
            }
        }
        throw SystemError("watchdog \(device): the guardian did not report it armed within 5 s", errno: 0)
    }

    /// Until when the guardian may pet the watchdog (read whenever it wakes to pet: no doorbell).
    func setPetUntil(_ t: UInt64) { if shared[1] != t { shared[1] = t } }

    deinit { if fd >= 0 { Glibc.close(fd) } }

    private func spawn() throws {
        var fds: [Int32] = [0, 0]
        guard vigil_pipe2(&fds, O_CLOEXEC) == 0 else { throw SystemError("pipe for the guardian") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[0], 0)
        posix_spawn_file_actions_adddup2(&actions, shared.fd, 3)
        // Its doorbell (0), the shared page (3) and its log (1, 2): nothing else.
        _ = vigil_spawn_closefrom(&actions, 4)
        let exe = "/proc/self/exe"
        // A new guardian reports its own watchdog state: never the last one's.
        shared[2] = WatchdogHolder.Status.unknown.rawValue
        shared[3] = 0
        var args: [String] = ["clusterd", "--guardian", "--node", node]
        if let w = watchdog { args += ["--watchdog-device", w.device, "--watchdog-timeout", "\(w.timeoutS)"] }
        // (In clusterd's process group: a signal to the group reaches it too.)
        let spawned = spawnChild(exe, argv: args, env: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], newProcessGroup: false, actions: &actions)
        let rc: Int32
        var child: pid_t = 0
        switch spawned {
        case .success(let p): (rc, child) = (0, p)
        case .failure(let e): rc = e.errno == 0 ? EINVAL : e.errno
        }
        Glibc.close(fds[0])
        guard rc == 0 else {
            Glibc.close(fds[1])
            throw SystemError("start the guardian", errno: rc)
        }
        _ = fcntl(fds[1], F_SETFL, O_NONBLOCK)
        if fd >= 0 { Glibc.close(fd) }
        fd = fds[1]
        pid = child
        sent = nil
        startedAt = MonotonicClock.nowMs()
        log.info("guardian pid=\(child)")
    }

    /// Hands the guardian a new deadline (0: nothing held; `UInt64.max`: no deadline). Every
    /// deadline goes into the shared word; the pipe rings the guardian's bell only when the
    /// deadline moved earlier, was armed or disarmed: a later one is read when the guardian wakes
    /// for the deadline it had, so a renewal costs no system call and no wakeup.
    @discardableResult
    func update(_ deadline: UInt64) -> Bool {
        wanted = deadline
        guard pid > 0, fd >= 0 else { return false }
        guard deadline != sent else { return true }
        shared.value = deadline
        if let s = sent, s != 0, s != UInt64.max, deadline != 0, deadline != UInt64.max, deadline > s {
            sent = deadline
            return true
        }
        var bytes = [UInt8](repeating: 0, count: 8)
        for i in 0..<8 { bytes[i] = UInt8((deadline >> UInt64(56 - 8 * i)) & 0xFF) }
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, 8) }
        if n == 8 {
            sent = deadline
            return true
        }
        log.error("cannot hand the guardian its deadline: \(SystemError("write").description)")
        return false
    }

    /// After SIGCHLD: if the guardian died, start a new one and give it the current deadline
    /// (at once, or after a second if the last one died within a second of starting).
    func reap(current: UInt64) {
        guard pid > 0 else { return }
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG) == pid else { return }
        let now = MonotonicClock.nowMs()
        log.error("guardian pid=\(pid) died (status \(status)); starting a new one")
        pid = 0
        restarts += 1
        respawnAt = now < startedAt + 1000 ? now + 1000 : now
        supervise(current: current)
    }

    /// From every shell round: starts a guardian when one is due.
    func supervise(current: UInt64) {
        guard pid == 0, let at = respawnAt, MonotonicClock.nowMs() >= at else { return }
        do {
            try spawn()
            respawnAt = nil
            update(current)
        } catch {
            respawnAt = MonotonicClock.nowMs() + 1000
            log.error("cannot restart the guardian: \(error); retrying in 1 s")
        }
    }

    /// Normal exit: closing the pipe lets the guardian enforce the last deadline and exit.
    func close() {
        if fd >= 0 {
            Glibc.close(fd)
            fd = -1
        }
    }
}

/// A deadline (CLOCK_MONOTONIC ms) in a page shared by clusterd and its guardian: a memfd that
/// clusterd creates and the guardian inherits as descriptor 3.
final class SharedDeadline {
    let fd: Int32
    private let word: UnsafeMutablePointer<UInt64>

    /// clusterd's side: a new page, initially 0 (disarmed).
    init() throws {
        var f = vigil_memfd("vigil-guardian")
        guard f >= 0 else { throw SystemError("memfd_create for the guardian") }
        // Never descriptor 3 itself: dup2 onto the same number would keep its close-on-exec.
        if f <= 3 {
            let g = fcntl(f, F_DUPFD_CLOEXEC, 10)
            Glibc.close(f)
            guard g >= 0 else { throw SystemError("dup for the guardian") }
            f = g
        }
        guard ftruncate(f, 4096) == 0, let p = Self.map(f) else {
            let e = SystemError("map the guardian's page")
            Glibc.close(f)
            throw e
        }
        fd = f
        word = p
        value = 0
        // Not petted until clusterd says (its first evaluation, within milliseconds): a guardian
        // started after a crash must not cancel a reset that a dead one's silence began.
        self[1] = 0
    }

    /// The guardian's side: descriptor `fd` if it is such a page.
    init?(inherited f: Int32) {
        var st = stat()
        guard fstat(f, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_size >= 4096, let p = Self.map(f) else { return nil }
        fd = f
        word = p
    }

    private static func map(_ f: Int32) -> UnsafeMutablePointer<UInt64>? {
        let p = mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0)
        guard let p, p != MAP_FAILED else { return nil }
        return p.bindMemory(to: UInt64.self, capacity: 1)
    }

    var value: UInt64 {
        get { vigil_load_u64(word) }
        set { vigil_store_u64(word, newValue) }
    }

    /// Word `i` of the page: 0 the address deadline, 1 the watchdog's pet-until, 2 and 3 the
    /// guardian's watchdog status and detail.
    subscript(i: Int) -> UInt64 {
        get { vigil_load_u64(word + i) }
        set { vigil_store_u64(word + i, newValue) }
    }
}

/// `mlockall` and a real-time round-robin priority, as Corosync does: a node that is swapped
/// out or starved by a busy machine misses heartbeats and loses its lease for nothing.
public enum Realtime {
    public static func apply(priority: Int32, log: EventLog, who: String) {
        if mlockall(Int32(MCL_CURRENT | MCL_FUTURE)) != 0 {
            log.warning("\(who): mlockall failed: \(SystemError("mlockall").description) (memory may be swapped out)")
        }
        var param = sched_param()
        param.sched_priority = priority
        // Children (agents, hooks) start with the normal policy: an agent inheriting a real-time
        // priority would compete with clusterd for the processor, and a busy one starve it.
        let resetOnFork: Int32 = 0x4000_0000  // SCHED_RESET_ON_FORK
        if sched_setscheduler(0, SCHED_RR | resetOnFork, &param) != 0 {
            log.warning("\(who): cannot use SCHED_RR priority \(priority): \(SystemError("sched_setscheduler").description)")
        }
    }
}
