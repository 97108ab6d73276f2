import CVigilSys
import Glibc
import VigilSystem

/// A service that an agent started in the background without redirecting its output holds the
/// agent's output pipe. clusterd reads such a pipe after the agent ended (`LingeringOutputs`),
/// but when clusterd exits or restarts its read end closes, and the service's next write would
/// kill it with SIGPIPE. So lingering pipes are handed to the output keeper: a small process
/// (`clusterd --output-keeper`, started on first need) that receives them over a unix socket
/// (SCM_RIGHTS), reads and discards what the services write, logs one line when a pipe closes,
/// and outlives clusterd: it exits once clusterd is gone and every pipe it holds has closed.
///
/// Under the shipped systemd unit (`KillMode=mixed`) what is left of the unit's processes after
/// clusterd exits is killed anyway, keeper included; the keeper matters where clusterd runs
/// under another init system or the unit keeps a service's processes (`KillMode=process`).
public enum OutputKeeper {
    /// At most this many pipes are held; beyond, a new one is closed (and that is logged).
    public static let limit = 4096

    /// The keeper's main loop: `control` is its end of clusterd's socket.
    public static func run(node: String, control: Int32 = 3) -> Int32 {
        let log = EventLog(node: node)
        signal(SIGPIPE, SIG_IGN)
        struct Held { var fd: Int32; var label: String; var bytes: Int }
        var held: [Held] = []
        var controlOpen = true
        var buf = [UInt8](repeating: 0, count: 65536)
        log.info("output-keeper started pid=\(getpid())")
        while controlOpen || !held.isEmpty {
            var fds: [pollfd] = controlOpen ? [pollfd(fd: control, events: Int16(POLLIN), revents: 0)] : []
            fds += held.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            let n = poll(&fds, nfds_t(fds.count), -1)
            if n < 0 {
                if errno == EINTR { continue }
                log.error("output-keeper: poll failed (errno \(errno)); exiting")
                return 1
            }
            // Pipes polled this round (one received below is polled from the next).
            let polled = held.count
            var first = 0
            if controlOpen {
                first = 1
                if fds[0].revents != 0 {
                    var fd: Int32 = -1
                    let got = buf.withUnsafeMutableBytes { vigil_recv_fd(control, $0.baseAddress, 512, &fd) }
                    if got > 0 || fd >= 0 {
                        let label = String(decoding: buf[0..<max(0, got)], as: UTF8.self)
                        if fd >= 0 {
                            if held.count < limit {
                                held.append(Held(fd: fd, label: label, bytes: 0))
                            } else {
                                close(fd)
                                log.warning("output-keeper: already holding \(limit) pipes; closed the one of \(label)")
                            }
                        }
                    } else if got == 0 || (errno != EAGAIN && errno != EINTR) {
                        // clusterd is gone: keep what is held until it closes.
                        controlOpen = false
                        close(control)
                        if !held.isEmpty { log.info("output-keeper: clusterd is gone; holding \(held.count) pipe(s) until their writers close them") }
                    }
                }
            }
            var keep: [Held] = []
            for (i, var h) in held.enumerated() {
                guard i < polled, fds[first + i].revents != 0 else {
                    keep.append(h)
                    continue
                }
                let r = buf.withUnsafeMutableBytes { Glibc.read(h.fd, $0.baseAddress, $0.count) }
                if r > 0 {
                    h.bytes += r
                    keep.append(h)
                } else if r < 0 && (errno == EAGAIN || errno == EINTR) {
                    keep.append(h)
                } else {
                    close(h.fd)
                    log.info("output-keeper: output of \(h.label) closed by its last writer after \(h.bytes) more bytes (discarded)")
                }
            }
            held = keep
        }
        return 0
    }
}

/// clusterd's side of the output keeper: starts it on first need, hands it pipes.
final class OutputKeeperLink {
    private let node: String
    private let log: EventLog
    private var sock: Int32 = -1
    private var pid: pid_t = 0
    /// Keepers given up on (their socket closed) that still run: reaped when they end.
    private var former: [pid_t] = []

    init(node: String, log: EventLog) {
        self.node = node
        self.log = log
    }

    deinit { if sock >= 0 { close(sock) } }

    /// Hands the read end `fd` to the keeper (clusterd may then close its own copy). False if
    /// the keeper cannot be had: the caller keeps reading the pipe itself.
    func adopt(_ fd: Int32, label: String) -> Bool {
        reap()
        if sock < 0 {
            do {
                try spawn()
            } catch {
                log.warning("cannot start the output keeper: \(error); clusterd keeps reading the pipe itself")
                return false
            }
        }
        let bytes = Array(label.utf8.prefix(400))
        let rc = bytes.withUnsafeBytes { vigil_send_fd(sock, fd, $0.baseAddress, $0.count) }
        guard rc >= 0 else {
            // Gone or full: start a new one next time.
            log.warning("the output keeper did not take the pipe of \(label) (errno \(errno)); clusterd keeps reading it itself")
            close(sock)
            sock = -1
            if pid > 0 { former.append(pid) }
            pid = 0
            return false
        }
        return true
    }

    /// Collects the keeper's exit status (it is our child while we run).
    func reap() {
        former.removeAll { p in
            var status: Int32 = 0
            return waitpid(p, &status, WNOHANG) == p
        }
        guard pid > 0 else { return }
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG) == pid else { return }
        log.warning("output keeper pid=\(pid) exited (status \(status)); a new one starts when needed")
        pid = 0
        if sock >= 0 { close(sock) }
        sock = -1
    }

    private func spawn() throws {
        var fds: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw SystemError("socketpair for the output keeper")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 3)
        // Nothing but its socket (3) and clusterd's log (1, 2).
        _ = vigil_spawn_closefrom(&actions, 4)
        // Its own process group: a signal to clusterd's group does not reach it.
        let spawned = spawnChild("/proc/self/exe", argv: ["clusterd", "--output-keeper", "--node", node],
                                 env: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], newProcessGroup: true, actions: &actions)
        close(fds[1])
        guard case .success(let child) = spawned else {
            close(fds[0])
            if case .failure(let e) = spawned { throw SystemError("start the output keeper", errno: e.errno) }
            return
        }
        sock = fds[0]
        pid = child
        log.info("output-keeper pid=\(child)")
    }
}
