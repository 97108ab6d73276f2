import CVigilSys
import Glibc

/// Runs jobs that may block (process creation, group-database lookups) on a thread of its own
/// and hands their results back on the reactor's thread, in order: the loop that carries the
/// heartbeats never waits for them.
public final class OffLoop {
    /// Moves a result across threads: the worker gives it up the moment it posts it.
    private final class Box: @unchecked Sendable {
        let id: UInt64
        let value: Any
        init(id: UInt64, value: Any) {
            self.id = id
            self.value = value
        }
    }

    /// Results posted by the worker, taken by the reactor (guarded by `mutex`).
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
    private var waiting: [UInt64: (Any) -> Void] = [:]

    /// `register` makes the reactor call the given function when the descriptor is readable.
    public init(name: String, register: (Int32, @escaping () -> Void) -> Void) throws {
        var fds: [Int32] = [0, 0]
        guard vigil_pipe2(&fds, O_CLOEXEC | O_NONBLOCK) == 0 else { throw SystemError("pipe for the \(name) thread") }
        readFD = fds[0]
        mailbox = Mailbox(wakeFD: fds[1])
        worker = try Worker(name: name)
        register(readFD) { [weak self] in self?.deliver() }
    }

    public convenience init(name: String, reactor: Reactor) throws {
        try self.init(name: name) { fd, f in reactor.add(fd: fd) { _ in f() } }
    }

    /// Runs `job` on the thread; `then` runs later on the reactor's thread with its result.
    public func run<T>(_ job: @escaping @Sendable () -> T, then: @escaping (T) -> Void) {
        nextId += 1
        let id = nextId
        waiting[id] = { value in
            if let v = value as? T { then(v) }
        }
        let mailbox = self.mailbox
        worker.submit { mailbox.post(Box(id: id, value: job())) }
    }

    /// Waits for every queued job and hands its result over now (at exit: the reactor no
    /// longer runs).
    public func finish() {
        worker.finish()
        deliver()
    }

    private func deliver() {
        var sink = [UInt8](repeating: 0, count: 256)
        while sink.withUnsafeMutableBytes({ Glibc.read(readFD, $0.baseAddress, $0.count) }) > 0 {}
        for b in mailbox.take() {
            guard let c = waiting.removeValue(forKey: b.id) else { continue }
            c(b.value)
        }
    }
}
