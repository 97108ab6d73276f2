import CVigilSys
import Glibc

/// Starts child processes on a thread of its own and hands them to the reactor's thread.
///
/// `posix_spawn` returns only once the child has called `exec`, and the child runs at the normal
/// scheduling priority (clusterd's real-time priority is reset on fork). On a machine busy with
/// hundreds of agent processes that can take longer than a heartbeat interval: the reactor's
/// thread must never wait for it. Completions run on the reactor's thread, in order.
public final class Spawner {
    /// Moves a result across threads: the worker gives up the child the moment it queues it.
    private final class Box: @unchecked Sendable {
        let id: UInt64
        let result: Result<ChildProcess, SystemError>
        init(id: UInt64, result: Result<ChildProcess, SystemError>) {
            self.id = id
            self.result = result
        }
    }

    /// Results queued by the worker, taken by the reactor (guarded by `mutex`).
    private final class Mailbox: @unchecked Sendable {
        let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        var items: [Box] = []
        let wakeFD: Int32
        init(wakeFD: Int32) {
            self.wakeFD = wakeFD
            mutex.initialize(to: pthread_mutex_t())
            pthread_mutex_init(mutex, nil)
        }
        func post(_ b: Box) {
            pthread_mutex_lock(mutex)
            items.append(b)
            pthread_mutex_unlock(mutex)
            var one: UInt8 = 1
            _ = Glibc.write(wakeFD, &one, 1)  // a full pipe already wakes the reactor
        }
        func take() -> [Box] {
            pthread_mutex_lock(mutex)
            defer { pthread_mutex_unlock(mutex) }
            let out = items
            items = []
            return out
        }
    }

    private let worker: Worker
    private let mailbox: Mailbox
    private let readFD: Int32
    private var nextId: UInt64 = 0
    private var waiting: [UInt64: (Result<ChildProcess, SystemError>) -> Void] = [:]

    public init(reactor: Reactor) throws {
        var fds: [Int32] = [0, 0]
        guard vigil_pipe2(&fds, O_CLOEXEC | O_NONBLOCK) == 0 else { throw SystemError("pipe for the spawner") }
        readFD = fds[0]
        mailbox = Mailbox(wakeFD: fds[1])
        worker = try Worker(name: "spawner")
        reactor.add(fd: readFD) { [weak self] _ in self?.deliver() }
    }

    /// Starts `path` with `args` and `env` (see `ChildProcess.spawn`); `completion` runs later on
    /// the reactor's thread with the child or the reason it could not start.
    public func spawn(_ path: String, _ args: [String], env: [String: String], stdin: [UInt8] = [], completion: @escaping (Result<ChildProcess, SystemError>) -> Void) {
        nextId += 1
        let id = nextId
        waiting[id] = completion
        let mailbox = self.mailbox
        worker.submit {
            let result: Result<ChildProcess, SystemError>
            do {
                result = .success(try ChildProcess.spawn(path, args, env: env, stdin: stdin))
            } catch let e as SystemError {
                result = .failure(e)
            } catch {
                result = .failure(SystemError("spawn \(path): \(error)", errno: 0))
            }
            mailbox.post(Box(id: id, result: result))
        }
    }

    /// At exit: waits until every process asked for is started, and hands each to its
    /// completion now (the reactor no longer runs), so none escapes the caller's clean-up.
    public func shutdown() {
        worker.finish()
        deliver()
    }

    private func deliver() {
        var sink = [UInt8](repeating: 0, count: 256)
        while sink.withUnsafeMutableBytes({ Glibc.read(readFD, $0.baseAddress, $0.count) }) > 0 {}
        for b in mailbox.take() {
            guard let c = waiting.removeValue(forKey: b.id) else { continue }
            c(b.result)
        }
    }
}
