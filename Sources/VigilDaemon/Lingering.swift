import VigilSystem

/// The output pipes of agents, hooks and fence agents after their process ended. A service that
/// an agent started in the background without redirecting its output holds the pipe's write
/// end; if clusterd closed the read end, the service's next write would kill it with SIGPIPE.
/// So the pipe is read (what exceeds the process's captured output is counted, not kept) until
/// every writer has closed it: by the output keeper, a process that outlives clusterd (see
/// `OutputKeeper`), or, if that cannot be started, by clusterd itself.
final class LingeringOutputs {
    /// At most this many pipes are kept (a descriptor and up to 16 KiB each); beyond, the
    /// pipe is closed as before and that is logged.
    static let limit = 1024
    private var kept: [Int32: ChildProcess] = [:]
    private let reactor: Reactor
    private let log: (String) -> Void

    private let keeper: OutputKeeperLink?

    init(reactor: Reactor, log: @escaping (String) -> Void, keeper: OutputKeeperLink? = nil) {
        self.reactor = reactor
        self.log = log
        self.keeper = keeper
    }

    /// Collects the output keeper's exit status if it ended.
    func reapKeeper() { keeper?.reap() }

    /// Called when `child` has been reaped, before its output is used: reads what is left, and
    /// keeps reading later if a descendant still holds the pipe.
    func release(_ child: ChildProcess) {
        let fd = child.outputFD
        reactor.remove(fd: fd)
        guard !child.drain() else { return }
        // Our copy of the read end closes with `child`; the keeper's stays open.
        if let keeper, keeper.adopt(fd, label: "\(child.command) (pid \(child.pid))") { return }
        guard kept.count < Self.limit else {
            log("\(Self.limit) output pipes of finished agents are still held open by what they started: closing the one of pid \(child.pid); what still writes to it gets SIGPIPE")
            return
        }
        kept[fd] = child
        reactor.add(fd: fd) { [weak self] _ in
            guard let self, let c = self.kept[fd] else { return }
            if c.drain() {
                self.reactor.remove(fd: fd)
                self.kept[fd] = nil
            }
        }
    }
}
