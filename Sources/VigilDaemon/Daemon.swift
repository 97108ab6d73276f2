import Glibc
import VigilCore
import VigilCorosync
import VigilIPC
import VigilSystem
@preconcurrency import Crypto
import VigilWire

/// The shell around `Engine`: owns the sockets, netlink, the IPC server and the state
/// directory, feeds the engine with events and carries out its directives.
/// Everything runs on one thread, in the reactor.
public final class Daemon {
    let setup: NodeSetup
    let cluster: ClusterConfig
    /// The cluster's nodes by id (looked up for every datagram sent and received).
    let nodesById: [NodeID: ClusterConfig.Node]
    let selfNode: ClusterConfig.Node
    let log: EventLog
    let store: StateStore
    /// Writes the replicated configuration to disk off the loop.
    let storage: Worker
    let reactor: Reactor
    let key: PacketAuthenticator
    let policy: Envelope.Policy
    let clusterId: UInt32
    let incarnation: UInt64
    var engine: Engine
    var sockets: [UDPSocket] = []
    var replay = ReplayGuard()
    /// Each peer's incarnation as its authentic packets tell it, and when last confirmed: packets
    /// to a peer are sealed for that life while it was confirmed within the failure timeout,
    /// else for none (0), which the peer accepts only to learn our life (see `receiveDatagram`).
    var peerLives: [NodeID: (incarnation: UInt64, at: UInt64)] = [:]
    var seq: UInt64 = 0
    var counters = ClusterStatus.Counters()
    /// Configured peers heard speaking another protocol version (node name to version).
    var incompatible: [String: UInt16] = [:]
    /// The protocol version each peer last spoke in an authenticated packet; a peer on the
    /// previous version is answered in it (one release of overlap for a rolling upgrade).
    var peerProtocol: [NodeID: UInt16] = [:]
    /// The protocol version this node speaks to a peer it has not heard yet, and at most: the
    /// current one, or the previous one to stand in for a node not yet upgraded (tests).
    public var ownProtocol: UInt16 = Envelope.protocolVersion
    let ips: FloatingIPs
    let executor: AgentExecutor
    let hooks: HookRunner
    let fencer: Fencer
    var ipc: IPCServer?
    var metrics: DaemonMetrics?
    var watchPushQueued = false
    var metricsRetryAt: UInt64 = 0
    var whatIfThread: OffLoop?
    var metricsEndpoint: MetricsEndpoint?
    var pendingReplies: [UInt64: OpaquePointer] = [:]
    /// What a `hactl move`/`ban`/`clear` is told once its change is committed, by request.
    var constraintMessages: [UInt64: String] = [:]
    /// The coordinator's own change that drops ended constraints, while it is under way.
    var expiryRequest: UInt64?
    var nextExpiryCheck: UInt64 = 0
    var nextRequestId: UInt64 = 1
    var leavingSince: UInt64?
    var heldBeforeLeaving: Set<String> = []
    var exitCode: Int32 = 0
    /// Agent definitions as they were before a configuration change, for stopping removed ones.
    var lastAgents: [String: AgentResource] = [:]
    var guardian: GuardianLink?
    /// Shell timers (operation and hook timeouts, address checks, guardian restarts) run about
    /// every two heartbeat intervals (at least 100 ms), up to `shellSlackMs` early. The slack is
    /// at least one interval, so a round always finds a heartbeat's wakeup to ride along with
    /// instead of waking the loop on its own.
    var shellPeriodMs: UInt64 { max(100, 2 * cluster.timing.interval) }
    var shellSlackMs: UInt64 { shellPeriodMs / 2 }
    var nextShellRound: UInt64 = 0
    /// The engine's next deadline as of the last `nextWake`.
    var engineWake: UInt64 = 0
    /// `membership = "corosync"` (see CorosyncMembership.swift): the connection, and its state.
    var corosync: CorosyncClient?
    var corosyncAtStart: CorosyncClient?
    var corosyncThread: CorosyncThread?
    var corosyncLinksAt: UInt64 = 0
    var corosyncRetryAt: UInt64 = 0
    /// `engine.failureSerial` when the fail counts were last stored.
    var savedFailureSerial: UInt64 = 0
    /// Corosync's latest ring (node ids), empty while disconnected.
    var corosyncRing: Set<UInt32> = []
    var corosyncFailures = 0
    /// The journal (`hactl history`), each peer's clock offset as heartbeat echoes measure it,
    /// the history questions under way, and the answers given (see DaemonHistory).
    let journal: JournalStore
    var clockOffsets = ClockOffsets()
    var historyQueries: [UInt64: HistoryQuery] = [:]
    var lastHistoryAnswer: [NodeID: (id: UInt64, after: UInt64, at: UInt64)] = [:]
    var historyBudget: [NodeID: (count: Int, second: UInt64)] = [:]

    public init(setup: NodeSetup) throws {
        self.setup = setup
        let log = EventLog(node: setup.node.name)
        var cluster = setup.cluster
        var pairTiming: (settle: UInt64, delay: UInt64?)?
        if cluster.membership == .corosync {
            // Before anything else: Corosync's timing decides the engine's.
            let (c, t) = try Self.connectCorosyncAtStart(cluster, setup.node, log: log)
            cluster.timing = try Self.corosyncTiming(cluster, t)
            log.info("corosync membership: cluster \(cluster.name), token \(t.token) ms, consensus \(t.consensus) ms; lease \(cluster.timing.lease) ms")
            if cluster.isCorosyncPair {
                pairTiming = (t.pairSettle, t.pairFenceDelay)
                log.info("two-node cluster: nothing a lost node ran moves before it is fenced (every resource requires fencing); [[fence]] devices must cover both nodes; a lost node is fenced \(max(cluster.timing.lease, t.pairSettle)) ms after it was lost\(t.pairFenceDelay.map { " (node \(cluster.nodes.map(\.id).max() ?? setup.node.id) \($0) ms later)" } ?? "")")
            }
            corosyncAtStart = c
            corosyncThread = try CorosyncThread()
        }
        self.cluster = cluster
        self.nodesById = Dictionary(setup.cluster.nodes.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        self.selfNode = setup.node
        self.log = log
        self.store = try StateStore(dir: setup.cluster.stateDir(for: setup.node))
        self.incarnation = try store.nextIncarnation(nodeIndex: setup.cluster.nodes.firstIndex { $0.id == setup.node.id } ?? 0)
        self.key = PacketAuthenticator(key: makeKey(setup.key))
        self.policy = Envelope.Policy(clusterKey: makeKey(setup.key), encryptAll: setup.cluster.encryptAll)
        self.clusterId = Envelope.clusterId(setup.cluster.name)
        self.reactor = try Reactor()
        self.storage = try Worker(name: "storage")
        self.journal = JournalStore(dir: store.dir, worker: storage, log: log)
        self.ips = try FloatingIPs(nodeName: setup.node.name, log: log, reactor: reactor)
        ips.onFirstAnnouncement = { [journal] text in journal.record(text) }
        let spawner = try Spawner(reactor: reactor)
        // One set of lingering pipes for agents, fence agents and hooks (one limit for all).
        let outputs = LingeringOutputs(reactor: reactor, log: { [log] in log.warning($0) },
                                       keeper: OutputKeeperLink(node: setup.node.name, log: log))
        self.executor = AgentExecutor(reactor: reactor, log: log, spawner: spawner, outputs: outputs)
        self.fencer = Fencer(spawner: spawner, reactor: reactor, outputs: outputs, log: log)
        do {
            fencer.history = try store.loadFenceHistory()
        } catch {
            log.error("\(error)")
        }
        fencer.onRecord = { [store, storage, log] h in
            storage.submit {
                do { try store.saveFenceHistory(h) } catch { log.error("cannot save the fencing history: \(error)") }
            }
        }
        self.hooks = HookRunner(dir: setup.cluster.hooksDir, timeoutMs: setup.cluster.hookTimeoutMs,
                                base: ["PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                       "VIGIL_CLUSTER": setup.cluster.name, "VIGIL_LOCAL_NODE": setup.node.name],
                                reactor: reactor, spawner: spawner, outputs: outputs, log: log)

        var versioned = VersionedResources.empty
        var set = ResourceSet()
        do {
            if let saved = try store.loadResources() {
                let unknown = saved.unknownStandby(in: setup.cluster)
                if !unknown.isEmpty { throw SystemError("\(store.dir)/resources.state: standby names \(unknown.joined(separator: ", ")), not a node of the cluster", errno: EINVAL) }
                set = try ResourceSet.parse(saved.text, file: store.dir + "/resources.state", cluster: setup.cluster)
                versioned = saved
            }
        } catch {
            // Never start with a half-understood configuration: start empty and fetch the
            // current one from the peers.
            log.error("ignoring saved resource configuration: \(error); it will be fetched from the cluster")
        }
        self.engine = Engine(cluster: cluster, selfId: setup.node.id, incarnation: incarnation,
                             resources: versioned, resourceSet: set, now: MonotonicClock.nowMs())
        if let p = pairTiming {
            engine.pairSettleMs = p.settle
            engine.pairFenceDelayMs = p.delay
        }
        ips.setDefinitions(set)
        for a in set.agents { lastAgents[a.name] = a }
        // Fail counts of the previous life (stored with the wall clock).
        do {
            let saved = try store.loadFailures()
            let wall = WallClock.nowMs()
            engine.restoreFailures(saved.mapValues { $0.map { wall - min(wall, $0) } }, now: MonotonicClock.nowMs())
            if !saved.isEmpty { log.info("fail counts restored: " + saved.keys.sorted().map { "\($0)=\(saved[$0]?.count ?? 0)" }.joined(separator: " ")) }
        } catch {
            log.error("\(error)")
        }
        savedFailureSerial = engine.failureSerial
    }

    /// Runs until SIGTERM/SIGINT has handed every resource over (or the hand-over timed out).
    public func run() throws -> Int32 {
        let t = cluster.timing
        if cluster.realtime { Realtime.apply(priority: 10, log: log, who: "clusterd") }
        log.info("starting cluster=\(cluster.name) node=\(selfNode.name) id=\(selfNode.id) incarnation=\(incarnation) interval=\(t.interval)ms timeout=\(t.timeout)ms lease=\(t.lease)ms config-version=\(engine.resources.version) state-dir=\(store.dir)")
        for (i, link) in cluster.links.enumerated() where cluster.membership == .builtin {
            let sock = try UDPSocket(bind: selfNode.addresses[i], port: link.port)
            sockets.append(sock)
            reactor.add(fd: sock.fd) { [unowned self] _ in self.drain(link: i) }
        }
        if let c = corosyncAtStart {
            corosyncAtStart = nil
            // No lease before votequorum's first word (it comes with the first dispatch).
            execute(engine.membershipQuorate(false, now: MonotonicClock.nowMs()))
            attachCorosync(c)
        }
        let signals = try SignalDescriptor(signals: [SIGTERM, SIGINT, SIGHUP, SIGCHLD])
        reactor.add(fd: signals.fd) { [unowned self] _ in
            for s in signals.read() { self.signal(s) }
        }
        let server = IPCServer(name: cluster.ipcName(for: selfNode), adminGroup: cluster.adminGroup, poll: (
            add: { [unowned self] fd, events, handler in
                self.reactor.add(fd: fd, events: events) { revents in
                    if handler(revents) < 0 { self.reactor.remove(fd: fd) }
                }
            },
            modify: { [unowned self] fd, events in self.reactor.modify(fd: fd, events: events) },
            remove: { [unowned self] fd in self.reactor.remove(fd: fd) },
            enqueue: { [unowned self] job in self.reactor.enqueue(job) }
        ))
        server.log = { [log] in log.warning($0) }
        server.handler = { [unowned self] req, conn, peer in self.handleIPC(req, conn, peer) }
        try server.useOffLoop()
        try server.start()
        ipc = server
        log.info("ipc service=\(server.name) admin-group=\(cluster.adminGroup)")
        startMetrics(now: MonotonicClock.nowMs())

        // The guardian first: no address is held before something independent of this loop
        // can remove it.
        guardian = try GuardianLink(node: selfNode.name, log: log, watchdog: engine.isWitness ? nil : cluster.watchdog)
        // In maintenance what runs stays: our addresses still configured are taken as held.
        let adopted = engine.resourceSet.maintenance ? ips.adoptLeftovers(now: MonotonicClock.nowMs()) : []
        if !engine.resourceSet.maintenance { ips.removeLeftovers() }
        ips.onResults = { [unowned self] outcomes in self.addressesDone(outcomes) }
        ips.onVanished = { [unowned self] name, why in
            self.log.warning("monitor resource=\(name) failed: \(why)")
            self.execute(self.engine.resourceFailed(name, reason: why, kind: .transient, now: MonotonicClock.nowMs()))
        }
        for name in adopted { execute(engine.foundLeftover(name, now: MonotonicClock.nowMs())) }
        reactor.onTick = { [unowned self] in self.tick() }
        // Every operation that ended is recorded first; the engine evaluates once per batch.
        executor.batch = { [unowned self] body in
            guard !self.engine.batching else { return body() }
            self.engine.beginBatch()
            body()
            self.execute(self.engine.endBatch(now: MonotonicClock.nowMs()))
        }
        reactor.stallMs = max(20, cluster.timing.interval)
        reactor.onRegisterError = { [log] fd, e in log.error("descriptor \(fd) cannot be watched: \(SystemError("epoll_ctl", errno: e))") }
        reactor.onStall = { [log] what, ms in log.warning("event-loop-stall ms=\(ms) in=\"\(what)\" (heartbeats were late)") }
        reactor.nextWake = { [unowned self] in self.nextWake() }
        reactor.run()
        executor.killAll()
        storage.finish()
        whatIfThread?.finish()
        ips.stopAll(keep: engine.resourceSet.maintenance ? Set(engine.resourceSet.ips.map(\.name)) : [])
        if let c = corosync { corosyncThread?.close(c) }
        updateGuardian()
        guardian?.close()
        server.stop()
        log.info("stopped")
        return exitCode
    }

    // MARK: inputs

    /// The earliest instant the loop has to act without input: the engine's next deadline, a
    /// due announcement, or the next round of shell timers.
    func nextWake() -> UInt64 {
        let now = MonotonicClock.nowMs()
        // The engine lists only future instants: a deadline that came due stays due until the
        // engine's tick has seen it (else waking exactly at it would skip it to the next one).
        if engineWake == 0 || engineWake > now { engineWake = engine.nextDeadlineInPlace(now: now) }
        var wake = min(engineWake, nextShellRound)
        if let due = ips.nextAnnouncementDue { wake = min(wake, due) }
        return wake
    }

    /// The deadline the guardian enforces: the lease's, while we hold any address; none while
    /// the cluster is in maintenance (nothing is stopped, and clusterd may exit leaving the
    /// addresses to the next one).
    func guardianTarget(_ deadline: UInt64) -> UInt64 {
        ips.holdsAny && !engine.resourceSet.maintenance ? max(1, deadline) : 0
    }

    /// The deadline the guardian enforces: the lease's, while we hold any address.
    func updateGuardian() {
        guardian?.update(guardianTarget(engine.guardianDeadlineInPlace()))
        if cluster.watchdog != nil { guardian?.setPetUntil(engine.watchdogPetUntil(now: MonotonicClock.nowMs())) }
    }

    func tick() {
        let now = MonotonicClock.nowMs()
        if now >= engineWake {
            engineWake = 0
            execute(engine.tick(now: now))
        }
        ips.runAnnouncements(now: now, leaseHeld: now < engine.leaseUntil, leaseDeadline: engine.leaseUntil)
        // Shell timers ride along with the engine's wakeups: a round runs up to `shellSlackMs`
        // early rather than wake the loop on its own.
        guard now + shellSlackMs >= nextShellRound else { return }
        nextShellRound = now + shellPeriodMs
        executor.reap()
        metricsEndpoint?.reap(now: now)
        startMetrics(now: now)
        corosyncTick(now: now)
        expireConstraints(now: now)
        if !historyQueries.isEmpty { historyRound(now: now) }
        saveFailuresIfChanged(now: now)
        hooks.tick()
        fencer.reap()
        if !engine.isWitness { fencer.monitorDevices(engine.resourceSet.fencing.devices, now: now) }
        guardian?.supervise(current: guardianTarget(engine.guardianDeadline))
        let (failed, recovered) = ips.monitor(now: now)
        for f in failed {
            log.warning("monitor resource=\(f.name) failed: \(f.why)")
            execute(engine.resourceFailed(f.name, reason: f.why, kind: f.transient ? .transient : .hard, now: now))
        }
        for name in recovered { execute(engine.resourceRecovered(name, now: now)) }
        if let since = leavingSince {
            let decision = engine.mayExit(previouslyHeld: heldBeforeLeaving, leavingSince: since, now: now)
            if decision.complete {
                log.info("hand-over complete; exiting")
                reactor.stop()
            } else if decision.exit {
                log.warning("hand-over not confirmed within \(engine.handoverLimit) ms; exiting with resources stopped here")
                reactor.stop()
            }
        }
    }

    func signal(_ s: Int32) {
        switch s {
        case SIGCHLD:
            executor.reap()
            hooks.reap()
            fencer.reap()
            guardian?.reap(current: guardianTarget(engine.guardianDeadline))
        case SIGTERM, SIGINT:
            guard leavingSince == nil else {
                log.warning("second stop signal: exiting now")
                reactor.stop()
                return
            }
            let now = MonotonicClock.nowMs()
            leavingSince = now
            heldBeforeLeaving = engine.held
            execute(engine.beginLeaving(now: now))
        default:
            log.info("signal \(s) ignored (configuration is reloaded only by a restart)")
        }
    }

    let batch = DatagramBatch(capacity: 8)

    func drain(link: Int) {
        let sock = sockets[link]
        // A bounded batch per round: poll is level-triggered, so the rest is read after the
        // tick and the other descriptors had their turn (a flood cannot starve the leases).
        var budget = 64
        // The batch is evaluated once at its end (placement included), not once per datagram.
        let outer = engine.batching
        if !outer { engine.beginBatch() }
        defer { if !outer { execute(engine.endBatch(now: MonotonicClock.nowMs())) } }
        var more = true
        while more && budget > 0 {
            let asked = min(budget, batch.capacity)
            let n = batch.receive(from: sock, limit: asked)
            budget -= n
            // A short batch left nothing waiting: the round ends without a call that finds none.
            more = n == asked
            for i in 0..<n { receiveDatagram(i, link: link) }
        }
    }
}

extension UInt64 {
    var isPowerOfTwo: Bool { self != 0 && (self & (self - 1)) == 0 }
}
