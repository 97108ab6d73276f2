/// Fencing: when the coordinator has a node powered off before its work starts elsewhere.
///
/// The rules (README "Fencing"):
/// - A lost node is fenced only once a majority withdrew its lease epoch (`gone`): a membership
///   flap alone never fences. It is fenced if it may hold a `requires = "fencing"` resource
///   (its last report lists it, it was assigned it, or nothing was ever heard from it), and such
///   a resource starts nowhere else until the fence is confirmed.
/// - A member whose stop of a `fencing` resource failed (blocked) is fenced when a device covers
///   it; without one the resource stays blocked until `hactl cleanup`, as before.
/// - A fenced node (the mark names the incarnation it had) holds nothing: its reports, its
///   blocked resources and its assignments no longer keep anything from starting elsewhere.
///   The mark ends when the node comes back with a new incarnation (it restarted), or with
///   `hactl cleanup NODE`.
/// - The coordinator runs the fence itself (it is never the target: a node never fences itself)
///   and tells every node the outcome, so a new coordinator does not fence again and a fenced
///   node that still runs learns it and stops everything.

/// One fencing outcome, kept in every node's history and sent to every node.
public struct FenceRecord: Sendable, Equatable, Codable {
    public enum Outcome: String, Sendable, Codable { case begun, succeeded, failed, confirmed }
    public var target: String
    /// The target's incarnation when it was fenced (0: never heard).
    public var targetIncarnation: UInt64
    public var outcome: Outcome
    /// Devices that did it (or were tried), "operator" for a manual confirmation.
    public var device: String
    /// The node that ran the agents.
    public var by: String
    public var reason: String
    /// Wall-clock milliseconds, stamped by the node that records it (0 in the core).
    public var wallMs: UInt64 = 0

    public init(target: String, targetIncarnation: UInt64, outcome: Outcome, device: String, by: String, reason: String) {
        self.target = target
        self.targetIncarnation = targetIncarnation
        self.outcome = outcome
        self.device = device
        self.by = by
        self.reason = reason
    }

    func encode(_ w: inout ByteWriter) {
        w.string(target)
        w.u64(targetIncarnation)
        w.u8(Outcome.allCodes.firstIndex(of: outcome).map(UInt8.init) ?? 0)
        w.string(device, max: 1024)
        w.string(by, max: Message.maxNameBytes)
        w.string(reason, max: 1024)
    }

    static func decode(_ r: inout ByteReader) throws(DecodeError) -> FenceRecord {
        let target = try r.string(max: Message.maxNameBytes)
        let inc = try r.u64()
        let code = Int(try r.u8())
        guard code < Outcome.allCodes.count else { throw DecodeError("unknown fence outcome \(code)") }
        return FenceRecord(target: target, targetIncarnation: inc, outcome: Outcome.allCodes[code], device: try r.string(max: 1024),
                           by: try r.string(max: Message.maxNameBytes), reason: try r.string(max: 1024))
    }
}

extension FenceRecord.Outcome {
    static let allCodes: [FenceRecord.Outcome] = [.begun, .succeeded, .failed, .confirmed]
}

/// A node fenced in `incarnation`, as this node learned `at` (its clock).
public struct FenceMark: Sendable, Equatable {
    public var incarnation: UInt64
    public var at: UInt64
}

/// The coordinator's fencing work in progress (part of its office: a new coordinator starts
/// from the marks every node keeps, and fences again what was not confirmed).
struct FenceJob: Sendable, Equatable {
    var reason: String
    var running = false
    var attempts = 0
    var retryAt: UInt64 = 0
    var lastError: String?
    /// Watchdog fencing (no device covers the node, or every level failed for a lost node and
    /// the nodes have watchdogs): when the wait for its reset began.
    var watchdogSince: UInt64?
    /// A fence of this coordinator that a member runs: when it was asked (the answer is its record).
    var delegatedAt: UInt64?
    /// The target's incarnation when this job began: the outcome applies to that life only (a
    /// fast-booting node may be back with a new one before a slow level finishes).
    var targetIncarnation: UInt64 = 0
}

extension Engine {
    /// Backoff between attempts after every level failed: 5 s, 10 s, 20 s, ... at most a minute.
    static func fenceBackoff(attempts: Int) -> UInt64 { min(60_000, 5_000 << UInt64(min(4, max(0, attempts - 1)))) }

    /// Whether a node can be fenced: a device covers it, or the cluster's nodes have a watchdog.
    func canFence(_ node: String) -> Bool { resourceSet.fencing.covers(node) || cluster.watchdog != nil }

    /// Whether `z` is fenced in its current incarnation (so it runs nothing we need to wait for).
    public func isFenced(_ z: NodeID) -> Bool {
        guard z != selfId, let mark = fenceMarks[z] else { return false }
        return mark.incarnation == (peers[z]?.incarnation ?? 0)
    }

    /// In a Corosync pair every resource requires fencing: no majority can free what a lost
    /// node ran (see `pairPeerLost`).
    func requiresFencing(_ r: String) -> Bool { cluster.isCorosyncPair || resourceSet.options(r).requiresFencing }

    /// Whether `r` cannot start elsewhere before `z` is fenced (see the rules above).
    func needsFence(_ z: NodeID, for r: String, office o: CoordinatorOffice) -> Bool {
        // A witness runs nothing: never fenced for resources.
        guard z != selfId, !witnesses.contains(z), requiresFencing(r), !isFenced(z) else { return false }
        if neverRuns(r, on: z) { return false }
        let heard = peers[z].map { $0.heldSet.contains(r) || o.placement[r] == z }
        // Where no device reaches, the configuration keeps such resources away: only what the
        // node said it held (from before a change of configuration) waits, for `hactl fence confirm`.
        guard let n = cluster.node(id: z), canFence(n.name) else { return heard ?? false }
        guard let p = peers[z], let rep = p.report else { return true }
        if heard == true { return true }
        // "Not held" counts only from a report that answers one of this coordinator's heartbeats
        // sent late enough: an older one may predate a start that an earlier coordinator (or this
        // one, before a withdrawal) ordered. A node the resource may not run on never held it.
        guard (resourceSet.options(r).locations[n.name] ?? 0) > -Score.infinity else { return false }
        return !(rep.echoIncarnation == incarnation && o.isFreshRelease(of: r, by: z, echo: rep.echo))
    }

    /// Coordinator: brings the fencing work up to date with what placement needs, and issues the
    /// fences that are due. `gone`: nodes a majority withdrew.
    mutating func updateFencing(gone: Set<NodeID>, now: UInt64, office o: inout CoordinatorOffice, out: inout [Directive]) {
        var wanted: [NodeID: String] = [:]
        for z in gone where !isFenced(z) && cluster.node(id: z).map({ canFence($0.name) }) == true {
            if let r = resourceSet.agents.first(where: { needsFence(z, for: $0.name, office: o) }) {
                wanted[z] = "lost while it may run \(r.name)"
            }
        }
        for p in peers.values where p.member && !isFenced(p.id) && canFence(p.name) {
            if let r = p.report?.blocked.first(where: { requiresFencing($0) }) {
                wanted[p.id] = "stop of \(r) failed"
            }
        }
        // Our own stop of such a resource failed: a member fences us (a node never fences itself).
        if resourceSet.fencing.covers(selfName), let r = local.first(where: { $0.value == .blocked && requiresFencing($0.key) })?.key {
            wanted[selfId] = "stop of \(r) failed on the coordinator"
        }
        for z in o.manualFences where !isFenced(z) { wanted[z] = wanted[z] ?? "requested by an operator" }
        // A job no longer wanted (the node came back, or was fenced) is dropped unless it runs.
        for (z, j) in o.fencing where wanted[z] == nil && !j.running { o.fencing[z] = nil }
        for (z, why) in wanted.sorted(by: { $0.key < $1.key }) {
            // A Corosync pair's own fence of the other node is under way: one fence at a time.
            if pairFence?.running == true && pairFenceTarget == z { continue }
            var j = o.fencing[z] ?? FenceJob(reason: why)
            // A delegated fence whose outcome never came (the member died, a record was lost):
            // asked again after the backoff.
            if j.running, let at = j.delegatedAt, now >= at + delegationLimit(for: name(of: z)) {
                j.running = false
                j.delegatedAt = nil
                j.retryAt = now + Self.fenceBackoff(attempts: j.attempts)
                o.fencing[z] = j
            }
            if j.running { continue }
            if j.attempts == 0 && j.watchdogSince == nil { j.targetIncarnation = peers[z]?.incarnation ?? 0 }
            // The watchdog: where no device covers the node, or, for a lost node, once every level
            // failed (a node without power has a dead BMC too; its watchdog reset it all the same).
            if let wd = cluster.watchdog, !resourceSet.fencing.covers(name(of: z)) || (j.attempts > 0 && gone.contains(z)) {
                watchdogFence(z, why: why, job: &j, delay: wd.fenceDelayMs, now: now, office: &o, out: &out)
                continue
            }
            guard now >= j.retryAt else {
                o.nextRound = min(o.nextRound, j.retryAt)
                continue
            }
            var executor = selfName
            if z == selfId {
                guard let m = peers.values.filter({ $0.member && !witnesses.contains($0.id) }).map(\.id).min() else { continue }
                executor = name(of: m)
                j.delegatedAt = now
                out.append(.send(to: m, .fenceDelegate(node: selfName)))
                o.nextRound = min(o.nextRound, now + delegationLimit(for: selfName))
            } else {
                out.append(.fence(target: z, name: name(of: z), reason: why))
            }
            j.running = true
            j.attempts += 1
            j.reason = why
            o.fencing[z] = j
            announce(FenceRecord(target: name(of: z), targetIncarnation: j.targetIncarnation, outcome: .begun,
                                 device: "", by: executor, reason: why), out: &out)
        }
    }

    /// How long a member may take to fence this node for us: every device of every level, and 5 s.
    func delegationLimit(for node: String) -> UInt64 {
        resourceSet.fencing.levels(for: node).flatMap { $0 }.reduce(5000) { $0 + 2 * $1.timeoutMs }
    }

    /// Our coordinator asks us to fence it (its own stop failed): only the coordinator we follow,
    /// only for itself, only with a device that covers it; we run the levels and tell everyone.
    mutating func receiveFenceDelegate(node: String, from sender: NodeID, out: inout [Directive]) {
        guard !isWitness, authority == sender, name(of: sender) == node, resourceSet.fencing.covers(node) else { return }
        out.append(.fence(target: sender, name: node, reason: "the coordinator's own stop failed; it asked to be fenced"))
    }

    /// No device covers `z`, but it has a watchdog: it stopped petting when its lease ended (or
    /// when its stop failed), so it has been reset `delay` after we first wanted it fenced.
    mutating func watchdogFence(_ z: NodeID, why: String, job j: inout FenceJob, delay: UInt64, now: UInt64, office o: inout CoordinatorOffice, out: inout [Directive]) {
        func record(_ outcome: FenceRecord.Outcome) {
            let rec = FenceRecord(target: name(of: z), targetIncarnation: j.targetIncarnation, outcome: outcome,
                                  device: "watchdog", by: selfName, reason: why)
            if outcome == .succeeded { setMark(z, rec.targetIncarnation, now: now) }
            announce(rec, out: &out)
        }
        guard let since = j.watchdogSince else {
            j.watchdogSince = now
            o.fencing[z] = j
            o.nextRound = min(o.nextRound, now + delay)
            return record(.begun)
        }
        guard now >= since + delay else {
            o.fencing[z] = j
            o.nextRound = min(o.nextRound, since + delay)
            return
        }
        o.fencing[z] = nil
        o.dirty = true
        record(.succeeded)
    }

    /// The shell ran the levels for `target`: `device` names what succeeded (or what was tried).
    public mutating func fenceFinished(target: NodeID, ok: Bool, device: String, detail: String, now: UInt64) -> [Directive] {
        var out: [Directive] = []
        var reason = detail
        var inc = peers[target]?.incarnation ?? 0
        if var j = pairFence, j.running, pairFenceTarget == target {
            j.running = false
            reason = j.reason
            inc = j.targetIncarnation
            if ok {
                pairFence = nil
            } else {
                j.lastError = detail
                j.retryAt = now + Self.fenceBackoff(attempts: j.attempts)
                pairFence = j
            }
        }
        if var o = office, var j = o.fencing[target] {
            office = nil
            j.running = false
            reason = j.reason
            inc = j.targetIncarnation
            if ok {
                o.fencing[target] = nil
                o.manualFences.remove(target)
            } else {
                j.lastError = detail
                j.retryAt = now + Self.fenceBackoff(attempts: j.attempts)
                o.fencing[target] = j
            }
            o.dirty = true
            office = o
        }
        let record = FenceRecord(target: name(of: target), targetIncarnation: inc,
                                 outcome: ok ? .succeeded : .failed, device: device, by: selfName, reason: ok ? reason : "\(reason): \(detail)")
        if ok { setMark(target, inc, now: now) }
        announce(record, out: &out)
        return evaluate(now: now, out: &out)
    }

    /// Records that `z` was fenced in incarnation `inc`, at `now` (see `checkFenceTook`).
    mutating func setMark(_ z: NodeID, _ inc: UInt64, now: UInt64) {
        fenceMarks[z] = FenceMark(incarnation: inc, at: now)
    }

    /// An outcome this node produced: into its own history and to every other node.
    func announce(_ rec: FenceRecord, out: inout [Directive]) {
        out.append(.event(.fence(rec)))
        for id in cluster.nodes.map(\.id) where id != selfId { out.append(.send(to: id, .fenceRecord(rec))) }
    }

    /// A packet from `z` in the incarnation it was fenced in, sent after the mark (later than a
    /// failure timeout, so not one already in flight): the fence did not power it off. The mark
    /// goes (its own reports decide again, so a flap cannot free what it still holds) and the
    /// coordinator fences it again if it still must.
    mutating func checkFenceTook(_ z: NodeID, incarnation inc: UInt64, now: UInt64, out: inout [Directive]) {
        guard let mark = fenceMarks[z], mark.incarnation == inc, now > mark.at + timing.timeout else { return }
        fenceMarks[z] = nil
        out.append(.event(.fenceIneffective(name(of: z))))
        // If it must still be fenced (its stop failed), not at once again: after the backoff.
        if var o = office {
            office = nil
            var j = FenceJob(reason: "the previous fence did not power it off")
            j.attempts = 1
            j.retryAt = now + Self.fenceBackoff(attempts: 1)
            j.targetIncarnation = inc
            o.fencing[z] = j
            o.dirty = true
            office = o
        }
    }

    /// A fence outcome from the node that ran it (or an operator's confirmation).
    mutating func receiveFenceRecord(_ rec: FenceRecord, from sender: NodeID, now: UInt64, out: inout [Directive]) {
        guard let target = cluster.node(named: rec.target) else { return }
        out.append(.event(.fenceRecorded(rec)))
        guard rec.outcome == .succeeded || rec.outcome == .confirmed else { return }
        if target.id == selfId {
            // We were fenced and still run (a wrong plug, a dummy device): stop everything now
            // and stay out until `hactl cleanup` names this node.
            // A watchdog "fence" of a node that holds nothing needing fencing took nothing away
            // (it pets freely, as it should): it stays in.
            let moot = rec.device == "watchdog" && watchdogPetUntil(now: now) == Watchdog.petFreely
            if rec.targetIncarnation == incarnation && !fencedOut && !moot {
                fencedOut = true
                out.append(.event(.fencedWhileRunning(by: rec.by, device: rec.device)))
            }
        } else {
            setMark(target.id, rec.targetIncarnation, now: now)
            if var o = office { office = nil; o.fencing[target.id] = nil; o.manualFences.remove(target.id); o.dirty = true; office = o }
        }
    }

    /// `hactl fence NODE` (`confirm`: the operator says it is off) from this node or forwarded.
    public mutating func requestFence(requestId: UInt64, node: String, confirm: Bool, now: UInt64) -> [Directive] {
        var out: [Directive] = []
        guard let n = cluster.node(named: node) else {
            return [.reply(requestId: requestId, ok: false, version: resources.version, message: "'\(node)' is not a node of cluster '\(cluster.name)'")]
        }
        // A Corosync pair without a coordinator (the other node is lost and not fenced): the
        // operator's word that it is off is taken here, by the quorate node.
        if confirm, cluster.isCorosyncPair, !isCoordinator, engineQuorate, let p = pairPeerLost(), p.id == n.id, !isFenced(n.id) {
            recordConfirmedOff(n.id, now: now, out: &out)
            out.append(.reply(requestId: requestId, ok: true, version: resources.version, message: "\(n.name) recorded as fenced by an operator; what it ran is recovered here"))
            return evaluate(now: now, out: &out)
        }
        if !forwardUnlessCoordinator(.fenceRequest(requestId: requestId, node: node, confirm: confirm), requestId: requestId, now: now, out: &out) {
            handleFenceRequest(requestId: requestId, origin: selfId, target: n.id, confirm: confirm, now: now, out: &out)
        }
        return evaluate(now: now, out: &out)
    }

    mutating func handleFenceRequest(requestId: UInt64, origin: NodeID, target: NodeID, confirm: Bool, now: UInt64, out: inout [Directive]) {
        func reply(_ ok: Bool, _ msg: String) { answer(requestId: requestId, origin: origin, ok: ok, msg, out: &out) }
        guard isCoordinator, var o = office else { return reply(false, "\(selfName) is no longer the coordinator; retry") }
        let tname = name(of: target)
        if target == selfId { return reply(false, "\(tname) is the coordinator: a node never fences itself; run the command on another node after it stepped down, or fence it by hand") }
        if confirm {
            // The operator powered it off: record it as fenced (loud: every node logs it).
            guard !isMember(target) else { return reply(false, "\(tname) is a member right now (its heartbeats arrive): it is not off") }
            recordConfirmedOff(target, now: now, out: &out)
            office = nil
            o.fencing[target] = nil
            o.manualFences.remove(target)
            o.dirty = true
            office = o
            return reply(true, "\(tname) recorded as fenced by an operator; what it ran is recovered elsewhere")
        }
        guard resourceSet.fencing.covers(tname) else { return reply(false, "no fence device covers \(tname): add a [[fence]] device with it in 'hosts' or 'host_map' (a watchdog resets a node only when it loses its lease or fails a stop)") }
        office = nil
        o.manualFences.insert(target)
        o.fencing[target]?.retryAt = 0
        o.dirty = true
        office = o
        reply(true, "fencing of \(tname) requested from \(selfName); see hactl fence history")
    }

    /// An operator says `target` is off: marked fenced in its current life, and every node told.
    mutating func recordConfirmedOff(_ target: NodeID, now: UInt64, out: inout [Directive]) {
        let rec = FenceRecord(target: name(of: target), targetIncarnation: peers[target]?.incarnation ?? 0, outcome: .confirmed,
                              device: "operator", by: selfName, reason: "confirmed off by an operator")
        setMark(target, rec.targetIncarnation, now: now)
        announce(rec, out: &out)
    }

    /// `hactl cleanup NODE`: this node may run again after it learned it was fenced; every node
    /// forgets its mark (a fenced node that comes back with the same incarnation stays out until then).
    mutating func cleanupNode(_ node: ClusterConfig.Node, out: inout [Directive]) {
        fenceMarks[node.id] = nil
        if node.id == selfId && fencedOut {
            fencedOut = false
            out.append(.event(.cleanedUp("node \(node.name)")))
        }
        urgent = true
        office?.dirty = true
    }
}
