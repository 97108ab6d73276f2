import CVigilSys
import Glibc
import VigilCore

/// A child process in its own process group, stdin from /dev/null (or from `stdin`: a fence
/// agent's parameters, secrets included, never on its command line), stdout and stderr into one
/// non-blocking pipe. Killing it kills the whole group (an agent's children included).
public final class ChildProcess {
    public let pid: pid_t
    public let outputFD: Int32
    public let startedMs: UInt64
    /// What runs, for log lines: the program and its arguments.
    public private(set) var command = ""
    private var output: [UInt8] = []
    private var dropped = 0
    public static let outputLimit = 16 * 1024
    public private(set) var end: ProcessEnd?

    private init(pid: pid_t, outputFD: Int32) {
        self.pid = pid
        self.outputFD = outputFD
        self.startedMs = MonotonicClock.nowMs()
    }

    deinit { close(outputFD) }

    /// Input larger than this is refused (it must fit the pipe, written before the child reads).
    public static let stdinLimit = 32 * 1024

    public static func spawn(_ path: String, _ args: [String], env: [String: String], stdin: [UInt8] = []) throws -> ChildProcess {
        guard stdin.count <= stdinLimit else { throw SystemError("input of \(stdin.count) bytes for \(path) is over \(stdinLimit)", errno: 0) }
        // Agents, hooks and fence agents run as root: only files nobody else could have written.
        if let why = TrustedPath.problem(path) { throw SystemError("refusing to run \(path): \(why)", errno: EPERM) }
        var fds: [Int32] = [0, 0]
        guard vigil_pipe2(&fds, O_CLOEXEC | O_NONBLOCK) == 0 else { throw SystemError("pipe") }
        var input: [Int32] = [-1, -1]
        if !stdin.isEmpty {
            guard vigil_pipe2(&input, O_CLOEXEC) == 0 else {
                close(fds[0]); close(fds[1])
                throw SystemError("pipe")
            }
        }
        defer { if input[0] >= 0 { close(input[0]) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if input[0] >= 0 {
            posix_spawn_file_actions_adddup2(&actions, input[0], 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
        // Nothing else: a descriptor opened without close-on-exec (by libqb, say) must not reach
        // an agent or hook running as root.
        _ = vigil_spawn_closefrom(&actions, 3)
        // Own process group (killing it kills an agent's children too).
        let spawned = spawnChild(path, argv: [path] + args, env: env.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" },
                                 newProcessGroup: true, actions: &actions)
        let rc: Int32
        var pid: pid_t = 0
        switch spawned {
        case .success(let p): (rc, pid) = (0, p)
        case .failure(let e): rc = e.errno == 0 ? EINVAL : e.errno
        }
        close(fds[1])
        if input[1] >= 0 {
            // Fits the pipe's buffer (64 KiB on Linux), so this never waits for the child; a
            // child that exits without reading makes it fail with EPIPE (SIGPIPE is ignored).
            if rc == 0 {
                var off = 0
                while off < stdin.count {
                    let n = stdin.withUnsafeBytes { Glibc.write(input[1], $0.baseAddress.map { $0 + off }, stdin.count - off) }
                    if n > 0 { off += n } else if n < 0 && errno == EINTR { continue } else { break }
                }
            }
            close(input[1])
        }
        guard rc == 0 else {
            close(fds[0])
            throw SystemError("spawn \(path)", errno: rc)
        }
        let child = ChildProcess(pid: pid, outputFD: fds[0])
        child.command = ([path] + args).joined(separator: " ")
        return child
    }

    /// At most this much is read per call: a child that writes without end cannot keep the
    /// loop reading (the reactor is level-triggered: the rest is read in the next round).
    public static let readPerRound = 64 * 1024

    /// Reads what is available (at most `readPerRound`); keeps the first `outputLimit` bytes,
    /// counts the rest. True at end of file.
    @discardableResult
    public func drain() -> Bool {
        var buf = [UInt8](repeating: 0, count: 4096)
        var budget = Self.readPerRound
        while budget > 0 {
            budget -= buf.count
            let n = buf.withUnsafeMutableBytes { raw in Glibc.read(outputFD, raw.baseAddress, raw.count) }
            if n > 0 {
                let room = max(0, Self.outputLimit - output.count)
                output.append(contentsOf: buf[0..<min(n, room)])
                dropped += max(0, n - room)
                continue
            }
            return n == 0  // true: end of file
        }
        return false
    }

    public var outputText: String {
        var s = String(decoding: output, as: UTF8.self)
        if dropped > 0 { s += "\n[... \(dropped) more bytes dropped]" }
        return s
    }

    /// Non-blocking reap. Returns how it ended, once.
    public func reap() -> ProcessEnd? {
        if let end { return end }
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        guard r == pid else { return nil }
        let e: ProcessEnd = (status & 0x7f) == 0 ? .exited((status >> 8) & 0xff) : .signalled(status & 0x7f)
        end = e
        drain()
        return e
    }

    public func killGroup(_ signal: Int32 = SIGKILL) {
        guard end == nil else { return }
        Glibc.kill(-pid, signal)
    }

    /// Runs to completion with a deadline (for hactl, never inside clusterd's reactor).
    public static func runSync(_ path: String, _ args: [String], env: [String: String], stdin: [UInt8] = [], timeoutMs: UInt64) -> (ProcessEnd, String) {
        let p: ChildProcess
        do {
            p = try spawn(path, args, env: env, stdin: stdin)
        } catch {
            return (.couldNotRun("\(error)"), "")
        }
        let deadline = MonotonicClock.nowMs() + timeoutMs
        while true {
            if let e = p.reap() { return (e, p.outputText) }
            let now = MonotonicClock.nowMs()
            if now >= deadline {
                p.killGroup()
                var status: Int32 = 0
                waitpid(p.pid, &status, 0)
                p.drain()
                return (.timedOut, p.outputText)
            }
            var pfd = pollfd(fd: p.outputFD, events: Int16(POLLIN), revents: 0)
            _ = poll(&pfd, 1, Int32(min(50, deadline - now)))
            p.drain()
        }
    }
}
