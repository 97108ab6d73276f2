import VigilCore
import VigilIPC
import VigilSystem
import Glibc

/// `hactl move`, `ban` and `clear` (Constraints.swift in the core): an edit of the resources
/// text, proposed like `hactl apply`; and, on the coordinator, the removal of constraints whose
/// lifetime ended (wall clock, checked once a second).
extension Daemon {
    func constraintRequest(_ req: IPCRequest, _ conn: OpaquePointer, now: UInt64) -> IPCServer.Reply {
        guard let r = req.resource, !r.isEmpty else { return .now(IPCResponse(ok: false, message: "which resource?")) }
        let request: ConstraintEdit.Request
        switch req.command {
        case .move: request = .move(resource: r, node: req.node, lifetimeMs: req.lifetimeMs)
        case .ban:
            guard let n = req.node else { return .now(IPCResponse(ok: false, message: "ban needs a node")) }
            request = .ban(resource: r, node: n, lifetimeMs: req.lifetimeMs)
        default: request = .clear(resource: r)
        }
        // Where it runs now (a group: where its members run), for a move without a node.
        let set = engine.resourceSet
        let members = set.group(named: set.group(of: r)?.name ?? r)?.members ?? [r]
        let running = Array(Set(engine.status(now: now).resources.filter { members.contains($0.name) }.flatMap(\.runningOn))).sorted()
        let result: ConstraintEdit.Result
        do {
            result = try ConstraintEdit.apply(request, to: engine.resources.text, set: set, cluster: cluster,
                                              runningOn: running, wallNowMs: WallClock.nowMs())
        } catch {
            return .now(IPCResponse(ok: false, message: "\(error.description); nothing was changed"))
        }
        let id = nextRequestId
        nextRequestId += 1
        pendingReplies[id] = conn
        constraintMessages[id] = result.message
        execute(engine.proposeConfig(requestId: id, text: result.text, now: now))
        return .later
    }

    /// `hactl maintenance on|off`, `hactl unmanage|manage RESOURCE` (Maintenance.swift in the core).
    func maintenanceRequest(_ req: IPCRequest, _ conn: OpaquePointer, now: UInt64) -> IPCServer.Reply {
        let request: MaintenanceEdit.Request
        switch req.command {
        case .maintenance:
            guard let t = req.text, t == "on" || t == "off" else { return .now(IPCResponse(ok: false, message: "maintenance on or off?")) }
            request = .cluster(on: t == "on")
        default:
            guard let r = req.resource, !r.isEmpty else { return .now(IPCResponse(ok: false, message: "which resource?")) }
            request = .resource(r, managed: req.command == .manage)
        }
        let result: ConstraintEdit.Result
        do {
            result = try MaintenanceEdit.apply(request, to: engine.resources.text, set: engine.resourceSet)
        } catch {
            return .now(IPCResponse(ok: false, message: "\(error.description); nothing was changed"))
        }
        log.warning("hactl \(req.command.rawValue) \(req.text ?? req.resource ?? "") requested by an administrator")
        let id = nextRequestId
        nextRequestId += 1
        pendingReplies[id] = conn
        constraintMessages[id] = result.message
        execute(engine.proposeConfig(requestId: id, text: result.text, now: now))
        return .later
    }

    /// Fail counts go to the state directory when they changed (on the storage thread), so a
    /// restart of clusterd keeps them.
    func saveFailuresIfChanged(now: UInt64) {
        guard engine.failureSerial != savedFailureSerial else { return }
        savedFailureSerial = engine.failureSerial
        let wall = WallClock.nowMs()
        let wallMs = engine.failureRecord(now: now).mapValues { $0.map { wall - min(wall, $0) } }
        storage.submit { [store, log] in
            do { try store.saveFailures(wallMs) } catch { log.error("cannot save the fail counts: \(error)") }
        }
    }

    /// Coordinator, once a second: constraints whose lifetime ended leave the configuration.
    func expireConstraints(now: UInt64) {
        guard now >= nextExpiryCheck else { return }
        nextExpiryCheck = now + 1000
        guard engine.isCoordinator, expiryRequest == nil, !engine.resourceSet.operatorConstraints.isEmpty,
              let e = ConstraintEdit.expiring(engine.resources.text, set: engine.resourceSet, wallNowMs: WallClock.nowMs()) else { return }
        for c in e.ended { log.info("constraint-ended \(c.summary)") }
        let id = nextRequestId
        nextRequestId += 1
        expiryRequest = id
        execute(engine.proposeConfig(requestId: id, text: e.text, now: now))
    }
}
