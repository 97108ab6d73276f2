import Glibc

/// A thread of its own that runs submitted jobs one at a time, in order: work that must not
/// delay the reactor (sending announcements for hundreds of addresses at a takeover) goes here.
/// Jobs must only touch state that nothing else touches (they own what they capture).
public final class Worker: @unchecked Sendable {
    // On the heap: a pthread mutex must not move, which a Swift stored property may.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var jobs: [@Sendable () -> Void] = []
    private var stopping = false
    /// `finish` joins the thread once (it is called from the owner's thread only).
    private var joined = false
    private var thread = pthread_t()
    public let name: String

    public init(name: String) throws {
        self.name = name
        mutex.initialize(to: pthread_mutex_t())
        cond.initialize(to: pthread_cond_t())
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
        let context = Unmanaged.passRetained(self).toOpaque()
        // The new thread inherits a mask blocking every signal (no window before its own).
        var all = sigset_t()
        var previous = sigset_t()
        sigfillset(&all)
        pthread_sigmask(SIG_BLOCK, &all, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        // A small stack: clusterd locks its memory (mlockall), so every page of a default 8 MiB
        // stack would be resident. Jobs are shallow.
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        defer { pthread_attr_destroy(&attr) }
        pthread_attr_setstacksize(&attr, 512 * 1024)
        let rc = pthread_create(&thread, &attr, { ctx in
            guard let ctx else { return nil }
            let worker = Unmanaged<Worker>.fromOpaque(ctx).takeRetainedValue()
            worker.loop()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<Worker>.fromOpaque(context).release()
            throw SystemError("start the \(name) thread", errno: rc)
        }
    }

    /// Queues `job`; returns at once.
    public func submit(_ job: @escaping @Sendable () -> Void) {
        pthread_mutex_lock(mutex)
        jobs.append(job)
        pthread_cond_signal(cond)
        pthread_mutex_unlock(mutex)
    }

    /// Runs what is queued, then ends the thread; waits for it.
    public func finish() {
        guard !joined else { return }
        joined = true
        pthread_mutex_lock(mutex)
        stopping = true
        pthread_cond_signal(cond)
        pthread_mutex_unlock(mutex)
        pthread_join(thread, nil)
    }

    private func loop() {
        // Signals belong to the reactor's signalfd: a thread created before it blocked them
        // would otherwise take SIGTERM with the default action and end the process.
        var all = sigset_t()
        sigfillset(&all)
        pthread_sigmask(SIG_BLOCK, &all, nil)
        while true {
            pthread_mutex_lock(mutex)
            while jobs.isEmpty && !stopping { pthread_cond_wait(cond, mutex) }
            let batch = jobs
            jobs = []
            let done = stopping && batch.isEmpty
            pthread_mutex_unlock(mutex)
            if done { return }
            for job in batch { job() }
        }
    }
}
