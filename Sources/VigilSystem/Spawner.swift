import CVigilSys
import Glibc

/// Starts child processes on a thread of its own and hands them to the reactor's thread.
///
/// `posix_spawn` returns only once the child has called `exec`, and the child runs at the normal
/// scheduling priority (clusterd's real-time priority is reset on fork). On a machine busy with
/// hundreds of agent processes that can take longer than a heartbeat interval: the reactor's
/// thread must never wait for it. Completions run on the reactor's thread, in order.
public final class Spawner {
    private let offLoop: OffLoop

    public init(reactor: Reactor) throws {
        offLoop = try OffLoop(name: "spawner", reactor: reactor)
    }

    /// Starts `path` with `args` and `env` (see `ChildProcess.spawn`); `completion` runs later on
    /// the reactor's thread with the child or the reason it could not start.
    public func spawn(_ path: String, _ args: [String], env: [String: String], stdin: [UInt8] = [], completion: @escaping (Result<ChildProcess, SystemError>) -> Void) {
        offLoop.run({ () -> Result<ChildProcess, SystemError> in
            do {
                return .success(try ChildProcess.spawn(path, args, env: env, stdin: stdin))
            } catch let e as SystemError {
                return .failure(e)
            } catch {
                return .failure(SystemError("spawn \(path): \(error)", errno: 0))
            }
        }, then: completion)
    }

    /// At exit: waits until every process asked for is started, and hands each to its
    /// completion now (the reactor no longer runs), so none escapes the caller's clean-up.
    public func shutdown() { offLoop.finish() }
}

/// `posix_spawn` as every child of clusterd is started (agents, hooks, fence agents, the
/// guardian, the output keeper): no blocked signals and default dispositions for the ones
/// clusterd blocks or ignores (it blocks its stop signals for its signalfd and ignores
/// SIGPIPE, which a child would otherwise inherit), optionally in a process group of its own.
/// `actions` (prepared by the caller) set up the child's descriptors. Returns the pid, or the
/// error number posix_spawn gave.
public func spawnChild(_ path: String, argv: [String], env: [String], newProcessGroup: Bool,
                       actions: inout posix_spawn_file_actions_t) -> Result<pid_t, SystemError> {
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    posix_spawnattr_setflags(&attr, Int16((newProcessGroup ? POSIX_SPAWN_SETPGROUP : 0) | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    if newProcessGroup { posix_spawnattr_setpgroup(&attr, 0) }
    var empty = sigset_t()
    sigemptyset(&empty)
    posix_spawnattr_setsigmask(&attr, &empty)
    var defaults = sigset_t()
    sigemptyset(&defaults)
    for s in [SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGQUIT] { sigaddset(&defaults, s) }
    posix_spawnattr_setsigdefault(&attr, &defaults)
    let cArgv: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
    let cEnv: [UnsafeMutablePointer<CChar>?] = env.map { strdup($0) } + [nil]
    defer {
        for p in cArgv { free(p) }
        for p in cEnv { free(p) }
    }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, path, &actions, &attr, cArgv, cEnv)
    return rc == 0 ? .success(pid) : .failure(SystemError("spawn \(path)", errno: rc))
}
