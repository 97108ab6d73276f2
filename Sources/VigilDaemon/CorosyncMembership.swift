import Glibc
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
///   outlast it, or every node would lose its lease at every membership change. Left out of the
///   cluster file, timing is derived from Corosync's effective values (`runtime.config.totem`);
///   given, it is refused when the lease does not exceed them (plus two heartbeat intervals).
///   Failover therefore takes about that long, unless fencing cuts it short.
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
        return CorosyncTiming(token: token, consensus: consensus)
    }

    /// The timing to run with under Corosync: the cluster file's, if it outlasts a ring
    /// re-formation, else derived from it (left out) or refused (given).
    static func corosyncTiming(_ cluster: ClusterConfig, _ t: CorosyncTiming) throws -> Timing {
        if cluster.timingGiven {
            let need = t.blackout + 2 * cluster.timing.interval
            guard cluster.timing.lease > need else {
                throw SystemError("timing.lease_ms (\(cluster.timing.lease) ms) must exceed corosync's token + consensus (\(t.token) + \(t.consensus) ms) plus two heartbeat intervals (\(need) ms in all): a ring re-formation holds every message that long, and every node would lose its lease at each one (leave [timing] out to derive it)", errno: EINVAL)
            }
            return cluster.timing
        }
        let lease = t.blackout + 500
        return Timing(interval: Timing.defaultInterval, timeout: lease, lease: lease)
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
                corosyncQuorate = quorate
                execute(engine.membershipQuorate(quorate, now: MonotonicClock.nowMs()))
            case let .ring(seq, members):
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
        c.close()
        corosync = nil
        corosyncQuorate = false
        corosyncLinks = [:]
        corosyncRetryAt = MonotonicClock.nowMs() + 1000
        execute(engine.membershipQuorate(false, now: MonotonicClock.nowMs()))
    }

    /// Shell round: reconnects when due, retries queued sends, refreshes link status (1/s).
    func corosyncTick(now: UInt64) {
        guard cluster.membership == .corosync else { return }
        if let c = corosync {
            do {
                try c.flush()
            } catch {
                return corosyncLost("\(error)")
            }
            guard now >= corosyncLinksAt else { return }
            corosyncLinksAt = now + 1000
            for n in cluster.nodes where n.id != selfNode.id {
                corosyncLinks[n.id] = try? c.links(to: n.id.rawValue)
            }
            return
        }
        guard now >= corosyncRetryAt else { return }
        corosyncRetryAt = now + 1000
        do {
            let c = try CorosyncClient(group: Self.corosyncGroup(cluster))
            let t = try Self.checkCorosync(c, cluster, selfNode)
            guard cluster.timing.lease > t.blackout + 2 * cluster.timing.interval else {
                log.error("corosync is back with token + consensus = \(t.blackout) ms, which the lease (\(cluster.timing.lease) ms) does not outlast: staying out (restart clusterd to derive the timing again)")
                c.close()
                return
            }
            log.info("reconnected to corosync (token \(t.token) ms, consensus \(t.consensus) ms)")
            attachCorosync(c)
        } catch {
            // Logged once per ten attempts.
            corosyncFailures += 1
            if corosyncFailures % 10 == 1 { log.warning("corosync still unreachable: \(error)") }
        }
    }

    /// Sends one sealed packet to the group (queued under Corosync's flow control).
    func corosyncSend(_ packet: [UInt8]) {
        guard let c = corosync else { return }
        do {
            // While Corosync holds messages back they queue (bounded: the oldest, stale
            // heartbeats by then, are dropped first).
            try c.send(packet)
        } catch {
            corosyncLost("\(error)")
        }
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
            guard let l = corosyncLinks[n.id] else { continue }
            st.nodes[i].links = l.connected.enumerated().map { ClusterStatus.LinkStatus(name: "knet\($0.offset)", up: $0.element, lastHeardMsAgo: nil) }
        }
    }
}
