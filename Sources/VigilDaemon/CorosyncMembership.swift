import Glibc
import Synchronization
import VigilCore
import VigilCorosync
import VigilSystem
import VigilWire

/// `membership = "corosync"`: Vigil's messages travel in a CPG group of the local Corosync
/// instead of Vigil's own UDP heartbeats; the engine sees the same messages, on one virtual
/// link, and does not know which backend carried them.
///
/// The argument. Corosync's totem gives every member of a ring the same messages in the same
/// order and the same membership changes at the same point of that order (virtual synchrony);
/// votequorum says whether the ring holds a majority of votes. That is necessary for a lease
/// but not sufficient: a node cut off from the ring learns it only after Corosync's token
/// timeout and consensus, and until then it runs what it ran, while a stalled node (SIGSTOP,
/// a swap storm) learns nothing at all. So the lease rules stay as they are (`SupportLedger`):
/// a node keeps what runs only while a majority of its peers' echoes, carried over CPG, renew
/// its lease, and the majority starts a lost node's resources only after that lease ran out,
/// or after fencing. Two things change:
/// - A ring re-formation holds every message for up to token + consensus: the lease must
///   outlast it, or every node would lose its lease at every membership change. `[timing]` is
///   required (identical on every node, so every node counts the same lease) and refused when
///   the lease does not exceed Corosync's effective values (`runtime.config.totem`) plus two
///   heartbeat intervals; the error suggests token + consensus + max(500, token/2). Failover
///   therefore takes about that long, unless fencing cuts it short.
/// - Losing the connection to Corosync, or votequorum's quorum, ends the lease at once
///   (`Engine.membershipQuorate`): the node releases without waiting for its peers' support to
///   run out. It reconnects every second; a lease then needs the majority's support again.
extension Daemon {
    /// CPG group of the cluster's daemons.
    static func corosyncGroup(_ cluster: ClusterConfig) -> String { "vigil-\(cluster.name)" }

    /// How long a ring re-formation can hold messages, from Corosync's effective settings.
    struct CorosyncTiming {
        var token: UInt64
        var consensus: UInt64
        var blackout: UInt64 { token + consensus }
        /// Two nodes (EnginePair.swift): how long votequorum may take to settle a split, and the
        /// higher id's extra wait before fencing.
        var pairSettle: UInt64 = 0
        var pairFenceDelay: UInt64?
    }

    /// Connects to the local Corosync at start-up, retrying every second until it answers, and
    /// checks that it runs the cluster this file describes. Throws (clusterd does not start) when
    /// it does not.
    static func connectCorosyncAtStart(_ cluster: ClusterConfig, _ me: ClusterConfig.Node, log: EventLog) throws -> (CorosyncClient, CorosyncTiming) {
        var attempts = 0
        while true {
            do {
                let c = try CorosyncClient(group: corosyncGroup(cluster))
                let t = try checkCorosync(c, cluster, me)
                return (c, t)
            } catch let e as CorosyncClient.CSError where e.code == 2 || e.code == 6 {
                // Not running (yet), or busy forming its ring: wait for it.
                if attempts % 30 == 0 { log.warning("waiting for corosync: \(e)") }
                attempts += 1
                sleep(1)
            }
        }
    }

    /// Corosync's view must match the cluster file: the same cluster name, this node's nodeid
    /// equal to its id here, every node of the file in Corosync's nodelist under the same name.
    static func checkCorosync(_ c: CorosyncClient, _ cluster: ClusterConfig, _ me: ClusterConfig.Node) throws -> CorosyncTiming {
        let name = try c.clusterName()
        guard name == cluster.name else {
            throw SystemError("corosync runs cluster '\(name)', the cluster file names '\(cluster.name)': they must be the same cluster (totem.cluster_name)", errno: EINVAL)
        }
        let local = try c.localNode()
        guard local == me.id.rawValue else {
            throw SystemError("corosync's nodeid here is \(local), the cluster file gives node '\(me.name)' id \(me.id): a node's id must be its Corosync nodeid", errno: EINVAL)
        }
        for n in cluster.nodes {
            let theirs: String
            do {
                theirs = try c.nodeName(n.id.rawValue)
            } catch {
                throw SystemError("node '\(n.name)' (id \(n.id)) is not in corosync's nodelist: \(error)", errno: EINVAL)
            }
            guard theirs == n.name else {
                throw SystemError("corosync calls node \(n.id) '\(theirs)', the cluster file '\(n.name)': use the same names", errno: EINVAL)
            }
        }
        let token = UInt64(try c.cmapValue("runtime.config.totem.token"))
        let consensus = UInt64(try c.cmapValue("runtime.config.totem.consensus"))
        var t = CorosyncTiming(token: token, consensus: consensus)
        if cluster.isCorosyncPair { (t.pairSettle, t.pairFenceDelay) = try checkPairQuorum(c) }
        return t
    }

    /// Two nodes: votequorum must let one of them keep quorum when the other is gone, through
    /// corosync-qdevice (the tiebreak: one side of a split) or `two_node: 1` (both sides stay
    /// quorate, and the fence race decides). With neither, the survivor of any failure loses
    /// quorum and stops everything: refused, naming both ways.
    /// Returns the settle time (a device's vote may stay counted up to its `sync_timeout`,
    /// 30 s by default) and the higher id's fence delay (15 s under `two_node`, where both sides
    /// stay quorate and power fencing takes seconds; nil: the engine's default).
    static func checkPairQuorum(_ c: CorosyncClient) throws -> (UInt64, UInt64?) {
        let model = try c.cmapString("quorum.device.model")
        let twoNode = try c.cmapInteger("quorum.two_node") ?? 0
        if model != nil {
            let sync = try c.cmapInteger("quorum.device.sync_timeout") ?? 30_000
            let timeout = try c.cmapInteger("quorum.device.timeout") ?? 10_000
            return (UInt64(max(0, max(sync, timeout))), nil)
        }
        if twoNode != 0 { return (0, 15_000) }
        throw SystemError("a two-node cluster under Corosync needs a tiebreak in corosync.conf: a quorum device (quorum { device { model: net ... } } with corosync-qdevice here and corosync-qnetd on a third machine), or two_node: 1 (both nodes stay quorate in a split and fencing decides); with neither, the node that survives a failure loses quorum and stops everything", errno: EINVAL)
    }

    /// What a lease under Corosync should be: token + consensus and a margin for what can hold
    /// messages longer (recovery, a second gather round): half a token, at least 500 ms.
    static func suggestedLease(_ t: CorosyncTiming) -> UInt64 { t.blackout + max(500, t.token / 2) }

    /// The timing to run with under Corosync: the cluster file's, which must be given (every
    /// node must count the same lease: one node's Corosync may have another token after a
    /// reload, so a value derived per node could differ) and outlast a ring re-formation.
    static func corosyncTiming(_ cluster: ClusterConfig, _ t: CorosyncTiming) throws -> Timing {
        let suggested = suggestedLease(t)
        let advice = "[timing] heartbeat_interval_ms = 100, failure_timeout_ms = \(suggested), lease_ms = \(suggested) (token \(t.token) + consensus \(t.consensus) + max(500, token/2))"
        guard cluster.timingGiven else {
            throw SystemError("with membership = \"corosync\" the cluster file needs a [timing] table, the same on every node, whose lease outlasts a ring re-formation; for this Corosync: \(advice)", errno: EINVAL)
        }
        let need = t.blackout + 2 * cluster.timing.interval
        guard cluster.timing.lease > need else {
            throw SystemError("timing.lease_ms (\(cluster.timing.lease) ms) must exceed corosync's token + consensus (\(t.token) + \(t.consensus) ms) plus two heartbeat intervals (\(need) ms in all): a ring re-formation holds every message that long, and every node would lose its lease at each one; for this Corosync: \(advice)", errno: EINVAL)
        }
        return cluster.timing
    }

    /// Serves the connection's two descriptors from the loop.
    func attachCorosync(_ c: CorosyncClient) {
        corosync = c
        reactor.add(fd: c.cpgFD) { [unowned self] _ in self.corosyncReadable { try c.dispatchCPG() } }
        reactor.add(fd: c.quorumFD) { [unowned self] _ in self.corosyncReadable { try c.dispatchQuorum() } }
    }

    private func corosyncReadable(_ dispatch: () throws -> [CorosyncClient.Event]) {
        let events: [CorosyncClient.Event]
        do {
            events = try dispatch()
        } catch {
            return corosyncLost("\(error)")
        }
        let outer = engine.batching
        if !outer { engine.beginBatch() }
        defer { if !outer { execute(engine.endBatch(now: MonotonicClock.nowMs())) } }
        for e in events {
            switch e {
            case let .message(from, _, bytes):
                // Every member gets every message: what names another recipient is skipped
                // before any MAC is computed.
                guard Envelope.declaredRecipient(bytes) == selfNode.id.rawValue else { continue }
                receivePacket(bytes, link: 0, source: nil, carrier: from)
            case let .members(members, joined, left):
                let names = { (ids: [UInt32]) in ids.map { self.nodesById[NodeID(rawValue: $0) ?? self.selfNode.id]?.name ?? "\($0)" } }
                log.info("corosync-group members=\(names(members.map(\.node)).joined(separator: ",")) joined=\(names(joined).joined(separator: ",")) left=\(names(left.map(\.node)).joined(separator: ","))")
            case let .quorum(quorate, members):
                log.info("corosync-quorum quorate=\(quorate) members=\(members.sorted().map(String.init).joined(separator: ","))")
                execute(engine.membershipQuorate(quorate, now: MonotonicClock.nowMs()))
            case let .ring(seq, members):
                corosyncRing = Set(members)
                log.info("corosync-ring seq=\(seq) members=\(members.sorted().map(String.init).joined(separator: ","))")
            }
        }
    }

    /// The connection is gone (Corosync stopped or restarted): the lease ends at once.
    func corosyncLost(_ why: String) {
        guard let c = corosync else { return }
        log.error("lost the connection to corosync: \(why); releasing everything, reconnecting every second")
        reactor.remove(fd: c.cpgFD)
        reactor.remove(fd: c.quorumFD)
        corosync = nil
        corosyncRing = []
        corosyncThread?.close(c)
        corosyncRetryAt = MonotonicClock.nowMs() + 1000
        execute(engine.membershipQuorate(false, now: MonotonicClock.nowMs()))
    }

    /// Shell round: what the Corosync thread reports (a failed send, a new connection), queued
    /// sends retried, link status asked for (1/s), a reconnection when due.
    func corosyncTick(now: UInt64) {
        guard cluster.membership == .corosync, let thread = corosyncThread else { return }
        if let why = thread.takeFailure() { corosyncLost(why) }
        if let c = corosync {
            if thread.sendsWaiting { thread.flush(c) }
            guard now >= corosyncLinksAt else { return }
            corosyncLinksAt = now + 1000
            thread.pollLinks(c, nodes: cluster.nodes.map(\.id.rawValue).filter { $0 != selfNode.id.rawValue })
            return
        }
        switch thread.takeConnection() {
        case .connected(let c, let t)?:
            guard cluster.timing.lease > t.blackout + 2 * cluster.timing.interval else {
                log.error("corosync is back with token + consensus = \(t.blackout) ms, which the lease (\(cluster.timing.lease) ms) does not outlast: staying out (change [timing] and restart clusterd)")
                thread.close(c)
                return
            }
            log.info("reconnected to corosync (token \(t.token) ms, consensus \(t.consensus) ms)")
            attachCorosync(c)
        case .failed(let why)?:
            corosyncFailures += 1
            if corosyncFailures % 10 == 1 { log.warning("corosync still unreachable: \(why)") }
        case nil:
            guard now >= corosyncRetryAt else { return }
            corosyncRetryAt = now + 1000
            thread.connect(cluster: cluster, me: selfNode)
        }
    }

    /// Sends one sealed packet to the group (on the Corosync thread; queued there under
    /// Corosync's flow control, bounded: the oldest, stale heartbeats by then, go first).
    func corosyncSend(_ packet: [UInt8]) {
        guard let c = corosync else { return }
        corosyncThread?.send(c, packet)
    }

    /// Per-peer link status for `hactl status`: knet's links as Corosync reports them.
    func corosyncLinkStatus(_ st: inout ClusterStatus) {
        guard cluster.membership == .corosync else { return }
        for i in st.nodes.indices {
            let n = st.nodes[i]
            guard n.id != selfNode.id else {
                st.nodes[i].links = [ClusterStatus.LinkStatus(name: corosync == nil ? "corosync (disconnected)" : "corosync", up: corosync != nil, lastHeardMsAgo: nil)]
                continue
            }
            guard let l = corosyncThread?.links[n.id.rawValue] else { continue }
            st.nodes[i].links = l.connected.enumerated().map { ClusterStatus.LinkStatus(name: "knet\($0.offset)", up: $0.element, lastHeardMsAgo: nil) }
        }
    }
}

/// Corosync's request/response calls (a send, cmap, cfg, connecting, leaving the group) wait
/// for Corosync with no timeout of their own: a stopped or hung Corosync would hold whatever
/// thread called. They run here, one at a time, in order; the loop only dispatches what is
/// ready on the two descriptors (which never waits) and learns results at its shell rounds.
/// (Corosync's client libraries take their handle's lock for every call, so dispatching on the
/// loop while this thread sends on the same connection is safe.)
final class CorosyncThread: Sendable {
    private let worker: Worker
    private struct State {
        var failure: String?
        /// Sends Corosync's flow control holds back (retried at the shell rounds).
        var waiting = 0
        var links: [UInt32: CorosyncClient.NodeLinks] = [:]
        var connection: Connection?
        var connecting = false
    }
    enum Connection {
        case connected(CorosyncClient, Daemon.CorosyncTiming)
        case failed(String)
    }
    private let state = Mutex(State())
    /// Carries a value across threads: the client (its queue of sends is touched only here,
    /// its event buffer only by the loop's dispatch) or a connection's result.
    private final class Ref<T>: @unchecked Sendable {
        let value: T
        init(_ v: T) { value = v }
    }

    init() throws { worker = try Worker(name: "corosync") }

    func send(_ c: CorosyncClient, _ packet: [UInt8]) {
        let r = Ref(c)
        worker.submit { [self] in
            do {
                try r.value.send(packet)
            } catch {
                state.withLock { $0.failure = $0.failure ?? "\(error)" }
            }
            let waiting = r.value.queuedSends
            state.withLock { $0.waiting = waiting }
        }
    }

    var sendsWaiting: Bool { state.withLock { $0.waiting > 0 } }

    func flush(_ c: CorosyncClient) {
        let r = Ref(c)
        worker.submit { [self] in
            do {
                try r.value.flush()
            } catch {
                state.withLock { $0.failure = $0.failure ?? "\(error)" }
            }
            let waiting = r.value.queuedSends
            state.withLock { $0.waiting = waiting }
        }
    }

    func pollLinks(_ c: CorosyncClient, nodes: [UInt32]) {
        let r = Ref(c)
        worker.submit { [self] in
            var seen: [UInt32: CorosyncClient.NodeLinks] = [:]
            for n in nodes { seen[n] = try? r.value.links(to: n) }
            state.withLock { $0.links = seen }
        }
    }

    /// Knet's links towards each peer, as last polled.
    var links: [UInt32: CorosyncClient.NodeLinks] { state.withLock { $0.links } }

    func takeFailure() -> String? {
        state.withLock { s in
            defer { s.failure = nil }
            return s.failure
        }
    }

    func close(_ c: CorosyncClient) {
        let r = Ref(c)
        state.withLock { $0.links = [:] }
        worker.submit { r.value.close() }
    }

    /// Connects on this thread (one attempt at a time); `takeConnection` hands the result over.
    func connect(cluster: ClusterConfig, me: ClusterConfig.Node) {
        let busy = state.withLock { s in
            defer { s.connecting = true }
            return s.connecting
        }
        guard !busy else { return }
        worker.submit { [self] in
            let result: Connection
            do {
                let c = try CorosyncClient(group: Daemon.corosyncGroup(cluster))
                do {
                    result = .connected(c, try Daemon.checkCorosync(c, cluster, me))
                } catch {
                    c.close()
                    throw error
                }
            } catch {
                result = .failed("\(error)")
            }
            let ref = Ref(result)
            state.withLock { s in
                s.connection = ref.value
                s.connecting = false
            }
        }
    }

    func takeConnection() -> Connection? {
        state.withLock { s in
            defer { s.connection = nil }
            return s.connection
        }
    }
}
