import Dispatch
import VigilCore

/// Driving the simulated nodes: operator commands, and engine calls in place.
extension SimCluster {
    public mutating func propose(on id: NodeID, requestId: UInt64, text: String) {
        drive(id) { e, now in e.proposeConfig(requestId: requestId, text: text, now: now) }
    }

    public mutating func cleanup(on id: NodeID, _ r: String) {
        drive(id) { e, now in e.cleanup(r, now: now) }
    }

    public mutating func standby(on id: NodeID, node: String, _ on: Bool, requestId: UInt64) {
        drive(id) { e, now in e.proposeStandby(requestId: requestId, node: node, on: on, now: now) }
    }

    public mutating func leave(_ id: NodeID) {
        drive(id) { e, now in e.beginLeaving(now: now) }
    }

    /// The node's membership engine (Corosync) says it is, or is not, in a quorate partition.
    public mutating func membershipQuorate(_ id: NodeID, _ quorate: Bool) {
        drive(id) { e, now in e.membershipQuorate(quorate, now: now) }
    }

    public mutating func fail(_ id: NodeID, _ r: String, reason: String, kind: Engine.FailureKind = .hard) {
        drive(id) { e, now in e.resourceFailed(r, reason: reason, kind: kind, now: now) }
    }

    /// Runs `body` on node `id`'s engine in place (taken out of the table, so that mutating it
    /// copies none of its storage, as in the daemon, which owns its one engine), adding the time
    /// it took to `engineNanos`.
    mutating func withEngine<T>(_ id: NodeID, _ body: (inout Engine) -> T) -> T? {
        guard var e = engines.removeValue(forKey: id) else { return nil }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let r = body(&e)
        engineNanos += DispatchTime.now().uptimeNanoseconds - t0
        engines[id] = e
        return r
    }

    /// An engine call on node `id`'s clock whose directives are queued by the caller.
    mutating func result(_ id: NodeID, _ body: (inout Engine, UInt64) -> [Engine.Directive]) -> [Engine.Directive] {
        let at = clock(id)
        return withEngine(id) { body(&$0, at) } ?? []
    }

    /// An engine call on node `id`'s clock whose directives are carried out at once.
    mutating func drive(_ id: NodeID, _ body: (inout Engine, UInt64) -> [Engine.Directive]) {
        guard engines[id] != nil else { return }
        execute(id, result(id, body))
    }
}
