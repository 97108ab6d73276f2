import Foundation
import Glibc

/// What an interrupted lab leaves behind is removed: SIGINT, SIGTERM or SIGHUP to a process
/// with live labs (vigil-lab stopped with Ctrl-C, a test run killed at its timeout) kills what
/// runs in their namespaces, deletes the namespaces, unmounts what is mounted in their work
/// directories and removes those, then exits with 128 + the signal's number.
///
/// The handler only sets a flag and writes the signal's number to a pipe (about all a signal
/// handler may do); a thread of its own does the rest, from the labs' names alone and never
/// from a `Lab`'s state, which the interrupted thread may be changing at that moment. That
/// thread goes on meanwhile: the removal is repeated until a pass finds nothing of the labs
/// (a node it was starting), and a process exit it reaches first (an error of a command that
/// lost its namespace) waits for the removal, which ends the process. The signals get a
/// handler, not `SIG_IGN` or a mask: a daemon the lab spawns starts with the default
/// dispositions (a handler does not survive `exec`; an ignored or blocked signal would).
/// Installed when the first lab of the process is made; a process without labs (the lab's own
/// helpers such as `arp-watch`, which stop on SIGINT) keeps its own handling.
enum LabSignals {
    private static let lock = NSLock()
    /// Live labs: namespace prefix → work directory.
    nonisolated(unsafe) private static var live: [String: String] = [:]
    nonisolated(unsafe) private static var installed = false
    /// Written by the signal handler (set once, before any handler is installed).
    nonisolated(unsafe) private static var pipeWrite: Int32 = -1
    /// Set by the signal handler before it writes: an exit must wait for the removal.
    nonisolated(unsafe) private static var interrupted: Int32 = 0

    static func register(prefix: String, workDir: String) {
        lock.lock()
        defer { lock.unlock() }
        live[prefix] = workDir
        if !installed {
            installed = true
            install()
        }
    }

    static func unregister(prefix: String) {
        lock.lock()
        defer { lock.unlock() }
        live[prefix] = nil
    }

    private static func install() {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return }
        // Not inherited by what the lab spawns.
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        pipeWrite = fds[1]
        let readEnd = fds[0]
        let waiter = Thread {
            var signo: UInt8 = 0
            while true {
                let n = read(readEnd, &signo, 1)
                if n == 1 { break }
                if n == 0 || (n < 0 && errno != EINTR) {
                    // Nothing would act on a signal any more: they end the process again.
                    for s in signals { _ = signal(s, SIG_DFL) }
                    return
                }
            }
            for pass in 0..<5 {
                if !removeLiveLabs() { break }
                if pass < 4 { usleep(200_000) }
            }
            _exit(128 + Int32(signo))
        }
        waiter.name = "lab-signals"
        waiter.start()
        // An exit while the removal runs waits for it (the removal ends the process).
        atexit {
            if LabSignals.interrupted != 0 { while true { pause() } }
        }
        for s in signals {
            _ = signal(s) { received in
                LabSignals.interrupted = 1
                var b = UInt8(truncatingIfNeeded: received)
                _ = write(LabSignals.pipeWrite, &b, 1)
            }
        }
    }

    private static let signals: [Int32] = [SIGINT, SIGTERM, SIGHUP]

    /// Removes what every live lab made, by name: the processes in its namespaces (ours, or
    /// started by our daemons), the namespaces, its nodes' cgroups (private systemd), mounts in
    /// its work directory, the directory (kept with `VIGIL_LAB_KEEP`, as a normal teardown
    /// does). Whether it found anything to remove.
    @discardableResult
    static func removeLiveLabs() -> Bool {
        var found = false
        let labs: [String: String] = {
            lock.lock()
            defer { lock.unlock() }
            return live
        }()
        let namespaces = Lab.namespaceNames()
        let mounts = ((try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? "").split(separator: "\n").compactMap { line -> String? in
            let fields = line.split(separator: " ")
            return fields.count > 1 ? String(fields[1]) : nil
        }
        for (prefix, dir) in labs {
            let mine = namespaces.filter { $0.hasPrefix(prefix + "-") }
            let cgroups = Lab.cgroupDirs(prefix: prefix)
            if !mine.isEmpty || !cgroups.isEmpty { found = true }
            Lab.removeNamespaces(mine)
            for d in cgroups { Lab.removeCgroup(d) }
            for m in mounts where m.hasPrefix(dir + "/") { _ = umount2(m, Int32(MNT_DETACH)) }
            if ProcessInfo.processInfo.environment["VIGIL_LAB_KEEP"] == nil {
                try? FileManager.default.removeItem(atPath: dir)
            }
        }
        return found
    }
}
