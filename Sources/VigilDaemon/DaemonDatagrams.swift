import Glibc
import VigilCore
import VigilSystem
import VigilWire

/// The datagram path of the daemon: authenticated packets in, sealed packets out.
extension Daemon {
    func receiveDatagram(_ i: Int, link: Int) {
        guard let bytes = batch.datagram(i) else {
            counters.malformed += 1
            return
        }
        receivePacket(bytes, link: link, source: batch.source(i), carrier: nil)
    }

    /// One packet from link `link`: a datagram from `source`, or a CPG message that Corosync
    /// says node `carrier` sent (it must be the sender the packet authenticates).
    func receivePacket(_ bytes: [UInt8], link: Int, source: IPAddress?, carrier: UInt32?) {
        let here = Envelope.Destination(node: selfNode.id.rawValue, incarnation: incarnation, link: UInt8(truncatingIfNeeded: link))
        switch Envelope.open(bytes, authenticator: key, policy: policy, clusterId: clusterId, at: here) {
        case .failure(let e):
            let src = source.map { "\($0)" } ?? carrier.map { "corosync node \($0)" } ?? "?"
            switch e {
            case .incompatibleVersion(let v):
                counters.incompatible += 1
                // Remembered (and shown in status) only for a configured peer's address on this
                // link: anyone can send the magic with another version from any source address,
                // and must not grow a map, the log or every status reply.
                let peer = source.flatMap { a in cluster.nodes.first { $0.id != selfNode.id && $0.addresses.count > link && $0.addresses[link] == a } }
                    ?? carrier.flatMap { c in cluster.nodes.first { $0.id != selfNode.id && $0.id.rawValue == c } }
                if let peer, incompatible[peer.name] != v {
                    incompatible[peer.name] = v
                    log.error("peer \(peer.name) (\(src)) on link \(cluster.links[link].name) speaks protocol version \(v); this node speaks \(Envelope.protocolVersion): its packets are ignored")
                } else if peer == nil && counters.incompatible.isPowerOfTwo {
                    log.warning("dropped packet of protocol version \(v) from \(src), not a node of this cluster, total=\(counters.incompatible)")
                }
            case .badMAC:
                counters.forged = drop(counters.forged, "unauthenticated packet from \(src) (bad HMAC; wrong key or forged)")
            case .otherRecipient(let node, let inc):
                counters.misdirected = drop(counters.misdirected, "packet from \(src) sealed for node \(node) incarnation \(inc), not this node's current life")
            case .otherLink(let l):
                counters.misdirected = drop(counters.misdirected, "packet from \(src) on link \(cluster.links[link].name) sent on link \(l)")
            case .notEncrypted(let kind):
                counters.malformed = drop(counters.malformed, "packet from \(src): message kind \(kind) must be encrypted and was not")
            case .undecryptable:
                counters.forged = drop(counters.forged, "packet from \(src) that does not decrypt")
            case .tooLong:
                counters.oversize = drop(counters.oversize, "datagram of \(bytes.count) bytes from \(src) (longer than any node sends)")
            case .foreignCluster(let cid):
                counters.foreignCluster = drop(counters.foreignCluster, "packet for another cluster (id \(cid)) from \(src)")
            default:
                counters.malformed = drop(counters.malformed, "malformed packet from \(src): \(e)")
            }
        case .success(let (h, msg)):
            // A node that speaks the previous version (standing in for one not yet upgraded)
            // understands nothing newer, as that node would not.
            guard h.version <= ownProtocol else {
                counters.incompatible += 1
                return
            }
            guard let sender = NodeID(rawValue: h.sender), sender != selfNode.id, nodesById[sender] != nil else {
                counters.unknownSender += 1
                return
            }
            // Through Corosync: the node that sent it must be the node it authenticates.
            if let carrier, carrier != h.sender {
                counters.forged = drop(counters.forged, "message carried by corosync node \(carrier) claiming to be from node \(h.sender)")
                return
            }
            guard replay.accept(sender: h.sender, link: UInt8(link), incarnation: h.incarnation, seq: h.seq) else {
                counters.replayed += 1
                if counters.replayed.isPowerOfTwo { log.warning("dropped replayed packet claiming node \(h.sender) seq=\(h.seq) total=\(counters.replayed)") }
                return
            }
            counters.accepted += 1
            let now = MonotonicClock.nowMs()
            if (peerLives[sender]?.incarnation ?? 0) <= h.incarnation {
                // A new life may have a new monotonic clock: its offset is measured afresh.
                if let known = peerLives[sender]?.incarnation, known < h.incarnation { clockOffsets.forget(sender) }
                peerLives[sender] = (h.incarnation, now)
            }
            if peerProtocol[sender] != h.version {
                peerProtocol[sender] = h.version
                engine.peersOnOlderProtocol(Set(peerProtocol.filter { $0.value < Envelope.migrationVersion }.keys))
                if h.version != Envelope.protocolVersion {
                    log.warning("peer \(nodesById[sender]?.name ?? "?") speaks protocol version \(h.version) (this node \(Envelope.protocolVersion)): answered in \(h.version) until it is upgraded")
                }
            }
            // Sealed for no life of ours (the sender has not heard this one): it teaches us the
            // sender's life and nothing else. Recorded earlier, such a packet could otherwise be
            // replayed to a restarted node (whose replay guard is new) to make a dead peer or a
            // dead link look alive; our answer, sealed for the sender's life, gets its next
            // packets sealed for ours.
            guard h.recipientIncarnation == incarnation else { return }
            switch msg {
            case .heartbeat(let hb) where hb.echoIncarnation == incarnation:
                clockOffsets.record(peer: sender, sentAt: hb.sentAt, echo: hb.echo, receivedAt: now)
            case .historyRequest(let id, let after, let since, let sentAt):
                return answerHistory(from: sender, id: id, after: after, since: since, sentAt: sentAt, now: now)
            case .historyChunk(let c):
                return receiveHistoryChunk(c, from: sender, now: now)
            default: break
            }
            execute(engine.receive(from: sender, link: link, incarnation: h.incarnation, seq: h.seq, message: msg, now: now))
        }
    }

    /// Counts a dropped datagram and logs it at the 1st, 2nd, 4th, 8th ... time; returns the count.
    func drop(_ count: UInt64?, _ what: @autoclosure () -> String) -> UInt64 {
        let total = (count ?? 0) + 1
        if total.isPowerOfTwo { log.warning("dropped \(what()), total=\(total)") }
        return total
    }

    func send(_ msg: Message, to peer: NodeID) {
        guard let node = nodesById[peer] else { return }
        let version = min(ownProtocol, peerProtocol[peer] ?? ownProtocol)
        // Version 7 knows no history messages (the history asks no such peer; this is the net).
        if version < Envelope.protocolVersion, Envelope.isNew(kind: msg.kind) { return }
        let payload = msg.encodePayload()
        guard payload.count <= Message.maxPayload else {
            let total = (counters.sendErrors ?? 0) + 1
            counters.sendErrors = total
            log.error("message kind \(msg.kind) of \(payload.count) bytes to \(node.name) exceeds \(Message.maxPayload) bytes: not sent, total=\(total)")
            return
        }
        seq += 1
        // Sealed for the recipient's life as last confirmed within the failure timeout, else 0:
        // a stale or replayed life cannot keep two nodes refusing each other's packets.
        let now = MonotonicClock.nowMs()
        let theirs = peerLives[peer].flatMap { now - min(now, $0.at) < cluster.timing.timeout ? $0.incarnation : nil } ?? 0
        for (i, link) in cluster.links.enumerated() {
            let header = Envelope.Header(kind: msg.kind, link: UInt8(i), clusterId: clusterId, sender: selfNode.id.rawValue, incarnation: incarnation, seq: seq,
                                         recipient: peer.rawValue, recipientIncarnation: theirs, version: version)
            let packet = Envelope.seal(payload: payload, header: header, authenticator: key, cipher: policy.mustEncrypt(msg.kind) ? policy.cipher : nil)
            if cluster.membership == .corosync {
                corosyncSend(packet)
                continue
            }
            let err = sockets[i].send(packet, to: node.addresses[i], port: link.port)
            if err != 0 {
                let total = (counters.sendErrors ?? 0) + 1
                counters.sendErrors = total
                if total.isPowerOfTwo {
                    log.warning("send of \(packet.count) bytes to \(node.name) on link \(link.name) failed: \(String(cString: strerror(err))) total=\(total)")
                }
            }
        }
    }
}
