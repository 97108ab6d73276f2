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
