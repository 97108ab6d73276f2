import VigilCore

/// Simulated fence devices: a fence takes `fenceDelayMs`, then either powers the target off
/// (it crashes: what it ran is gone) and reports success, or fails while `fenceFailures` says so.
extension SimCluster {
    public static let fenceDelayMs: UInt64 = 300

    struct PendingFence { var at: UInt64; var by: NodeID; var target: NodeID }
    public struct FenceDone: Sendable { public var at: UInt64; public var by: NodeID; public var target: NodeID; public var ok: Bool }

    mutating func finishFences() {
        let due = pendingFences.filter { $0.at <= now }
        guard !due.isEmpty else { return }
        pendingFences.removeAll { $0.at <= now }
        for f in due where !crashed.contains(f.by) {
            let fails = (fenceFailures[f.target] ?? 0) > 0
            if fails { fenceFailures[f.target, default: 0] -= 1 } else if !fenceMisses.contains(f.target) { crash(f.target) }
            fences.append(FenceDone(at: now, by: f.by, target: f.target, ok: !fails))
            guard var e = engines[f.by] else { continue }
            let d = e.fenceFinished(target: f.target, ok: !fails, device: "sim", detail: fails ? "simulated failure" : "off", now: clock(f.by))
            engines[f.by] = e
            execute(f.by, d)
        }
    }

    /// Every node's guardian (never paused with the daemon) pets while the engine's pet-until
    /// allows; a watchdog not petted for its timeout resets the node (it crashes).
    mutating func watchdogStep() {
        guard let wd = cluster.watchdog else { return }
        for id in engines.keys.sorted() where !crashed.contains(id) {
            guard let e = engines[id] else { continue }
            if Watchdog.shouldPet(now: clock(id), petUntil: e.watchdogPetUntil(now: clock(id))) || lastPet[id] == nil {
                lastPet[id] = now
            } else if now >= (lastPet[id] ?? now) + UInt64(wd.timeoutS) * 1000 {
                crash(id)
                lastPet[id] = nil
                watchdogResets.append((id, now))
            }
        }
    }

    /// `hactl fence NODE` (or `fence confirm NODE`) on node `id`.
    public mutating func requestFence(on id: NodeID, node: String, confirm: Bool, requestId: UInt64) {
        guard var e = engines[id] else { return }
        let d = e.requestFence(requestId: requestId, node: node, confirm: confirm, now: clock(id))
        engines[id] = e
        execute(id, d)
    }
}
