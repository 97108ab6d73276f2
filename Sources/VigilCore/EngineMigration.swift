/// Live migration (OCF's migrate_to / migrate_from, as Pacemaker runs them for
/// `allow-migrate`): a planned move of a resource whose agent can carry a running instance
/// across (a VM with `ocf:heartbeat:VirtualDomain`) moves it without a restart.
///
/// The coordinator drives it in three steps, each confirmed by the nodes' heartbeats:
/// 1. **migrate_to** on the source, which keeps the resource assigned meanwhile
///    (`OCF_RESKEY_CRM_meta_migrate_source` / `_target` name the two nodes). The source
///    reports `migrated` when it succeeded.
/// 2. **migrate_from** on the target, which now has the assignment; the source keeps its
///    instance (it is told to) until the target reports the resource started.
/// 3. **stop** on the source: the coordinator drops its order and the source, no longer
///    assigned the resource, stops it as it stops anything it must not run.
///
/// Only a planned move migrates (a ban, a preference, standby): the source is a member, the
/// resource runs there alone and has not failed there. A failover is always a start. Every
/// resource of the group, ordering or colocation set must allow migration, otherwise the whole
/// set stops and starts as before. A failed migrate_to stops the resource on the source and
/// has the target stop it too (it may hold a partial instance) before it is started; a failed
/// migrate_from stops it on the target and then on the source; both count as failures of the
/// node that failed. A source whose order disappears (the coordinator changed or gave up)
/// never restarts its migrated instance on its own: it stops it, and starts it again only on a
/// fresh assignment, which no coordinator gives while the target still holds the resource.

/// One line of a heartbeat's migration list: an order of the coordinator for the recipient
/// (kinds 1–3) or the sender's own progress (kinds 4–5).
public struct MigrationEntry: Sendable, Equatable, Hashable {
    public enum Kind: UInt8, Sendable {
        /// Run migrate_to towards `node` (the target); keep the instance until the order ends.
        case migrateTo = 1
        /// Take the resource over from `node` (the source) with migrate_from instead of start.
        case migrateFrom = 2
        /// A migration from `node` towards the recipient failed: stop the resource here (it may
        /// hold a partial instance) before anything else is done with it.
        case stopFirst = 3
        /// The sender's migrate_to towards `node` succeeded.
        case migrated = 4
        /// The sender ran the stop a `stopFirst` order asked for.
        case stoppedFirst = 5
        var isOrder: Bool { rawValue <= 3 }
    }
    public var resource: String
    public var kind: Kind
    public var node: NodeID
    public init(resource: String, kind: Kind, node: NodeID) {
        self.resource = resource
        self.kind = kind
        self.node = node
    }

    /// At most this many lines in one heartbeat (the coordinator runs at most
    /// `CoordinatorOffice.maxMigrations` at once, each at most two lines per node).
    static let maxEntries = 64

    static func encode(_ list: [MigrationEntry], _ w: inout ByteWriter) {
        let sorted = list.sorted { ($0.resource, $0.kind.rawValue) < ($1.resource, $1.kind.rawValue) }.prefix(maxEntries)
        w.u16(UInt16(sorted.count))
        for e in sorted {
            w.shortString(e.resource)
            w.u8(e.kind.rawValue)
            w.node(e.node)
        }
    }

    static func decodeList(_ r: inout ByteReader) throws(DecodeError) -> [MigrationEntry] {
        let n = try r.count(max: maxEntries)
        var out: [MigrationEntry] = []
        out.reserveCapacity(n)
        for _ in 0..<n {
            let name = try r.shortString()
            let raw = try r.u8()
            guard let kind = Kind(rawValue: raw) else { throw DecodeError("unknown migration entry kind \(raw) for '\(name)'") }
            out.append(MigrationEntry(resource: name, kind: kind, node: try r.node()))
        }
        return out
    }
}

/// A node's side of migrations: the orders of the coordinator in office, and its progress.
struct MigrationState: Sendable, Equatable {
    /// The coordinator's orders for this node, by resource (kinds 1–3).
    var orders: [String: MigrationEntry] = [:]
    /// migrate_to running or done here: resource to target.
    var towards: [String: NodeID] = [:]
    /// Resources whose `stopFirst` stop was issued here (reported once it finished).
    var stoppedFirst: Set<String> = []
    /// Peers that speak the previous protocol version: they cannot read migration lines.
    var olderProtocol: Set<NodeID> = []
}

extension CoordinatorOffice {
    struct Migration: Sendable, Equatable {
        enum Phase: Sendable, Equatable { case migrateTo, migrateFrom, aborted }
        var source: NodeID
        var target: NodeID
        var phase: Phase
    }
    /// Migrations at once (each adds a line or two to two nodes' heartbeats).
    static let maxMigrations = 16

    /// The orders for `node` from the migrations in progress.
    func migrationOrders(for node: NodeID) -> [MigrationEntry] {
        var out: [MigrationEntry] = []
        for (r, m) in migrations {
            switch m.phase {
            case .migrateTo:
                if node == m.source { out.append(.init(resource: r, kind: .migrateTo, node: m.target)) }
            case .migrateFrom:
                if node == m.source { out.append(.init(resource: r, kind: .migrateTo, node: m.target)) }
                if node == m.target { out.append(.init(resource: r, kind: .migrateFrom, node: m.source)) }
            case .aborted:
                if node == m.target { out.append(.init(resource: r, kind: .stopFirst, node: m.source)) }
            }
        }
        return out
    }
}

extension Engine {
    /// The orders this node follows: its own office's if it coordinates, else its coordinator's.
    var myMigrationOrders: [String: MigrationEntry] {
        guard isCoordinator else { return migration.orders }
        var out: [String: MigrationEntry] = [:]
        for e in office?.migrationOrders(for: selfId) ?? [] { out[e.resource] = e }
        return out
    }

    /// What a heartbeat to `id` carries: the coordinator's orders for it, and our progress.
    func migrationLines(to id: NodeID) -> [MigrationEntry] {
        var out = isCoordinator ? (office?.migrationOrders(for: id) ?? []) : []
        for (r, t) in migration.towards where local[r] == .migrated { out.append(.init(resource: r, kind: .migrated, node: t)) }
        for r in migration.stoppedFirst where local[r] != .stopping && local[r] != .blocked { out.append(.init(resource: r, kind: .stoppedFirst, node: selfId)) }
        return out
    }

    /// Whether node `z` reports `r` migrated towards `target` (this node: its own state).
    func reportsMigrated(_ z: NodeID, _ r: String, to target: NodeID) -> Bool {
        if z == selfId { return local[r] == .migrated && migration.towards[r] == target }
        return peers[z]?.report?.migration.contains(.init(resource: r, kind: .migrated, node: target)) ?? false
    }

    func reportsStoppedFirst(_ z: NodeID, _ r: String) -> Bool {
        if z == selfId { return migration.stoppedFirst.contains(r) && local[r] != .stopping && local[r] != .blocked }
        return peers[z]?.report?.migration.contains(.init(resource: r, kind: .stoppedFirst, node: z)) ?? false
    }

    /// The shell: peers that speak the previous protocol version (no migration from or to them).
    public mutating func peersOnOlderProtocol(_ ids: Set<NodeID>) {
        if migration.olderProtocol != ids { migration.olderProtocol = ids }
    }

    /// Coordinator: a migration ends without its steps (the resource was removed or frozen).
    mutating func endMigration(_ r: String, _ why: String, office o: inout CoordinatorOffice, out: inout [Directive]) {
        guard let m = o.migrations.removeValue(forKey: r) else { return }
        if m.phase != .aborted { out.append(.event(.migrationAborted(r, from: name(of: m.source), to: name(of: m.target), reason: why))) }
        urgent = true
    }

    /// The coordinator's orders arrived with its heartbeat (or ended with its authority).
    mutating func takeMigrationOrders(_ lines: [MigrationEntry]) {
        var orders: [String: MigrationEntry] = [:]
        for e in lines where e.kind.isOrder { orders[e.resource] = e }
        if orders != migration.orders { migration.orders = orders }
    }

    // MARK: the coordinator

    /// One resource's migration in `place`: starts one for a planned move, or moves one on.
    /// Returns whether `place` is done with `r` this round (the migration holds it).
    mutating func migrationStep(_ r: String, target: NodeID?, holders: [NodeID], state: Scheduler.State, alive: Set<NodeID>,
                                office o: inout CoordinatorOffice, now: UInt64, out: inout [Directive], reasons: inout [String: String]) -> Bool {
        func abort(_ m: CoordinatorOffice.Migration, _ why: String, stopOnTarget: Bool) {
            o.migrations[r] = stopOnTarget ? .init(source: m.source, target: m.target, phase: .aborted) : nil
            // Assigned nowhere until both have let go: a source whose instance migrated away must
            // not start it again while the target may still run it (a VM would run twice).
            if o.placement[r] != nil { o.withdraw(r, now: now) }
            out.append(.event(.migrationAborted(r, from: name(of: m.source), to: name(of: m.target), reason: why)))
            urgent = true
        }
        let failedOn = { (z: NodeID) in state.banned[r]?.contains(z) ?? false }
        if let m = o.migrations[r] {
            let sourceIn = alive.contains(m.source) && isMember(m.source), targetIn = alive.contains(m.target) && isMember(m.target)
            switch m.phase {
            case .migrateTo:
                if failedOn(m.source) || state.fatal.contains(r) { abort(m, "migrate_to failed on \(name(of: m.source))", stopOnTarget: targetIn); return false }
                if !sourceIn || !targetIn { abort(m, "node \(name(of: sourceIn ? m.target : m.source)) lost", stopOnTarget: targetIn); return false }
                if peerIsLeaving(m.source) || peerIsLeaving(m.target) { abort(m, "a node is shutting down", stopOnTarget: true); return false }
                // A source that no longer holds it (restarted, say) has nothing to migrate.
                if !holders.contains(m.source) { abort(m, "\(name(of: m.source)) no longer holds it", stopOnTarget: true); return false }
                if reportsMigrated(m.source, r, to: m.target) {
                    guard target == m.target, !failedOn(m.target) else { abort(m, "the target changed", stopOnTarget: true); return false }
                    o.withdraw(r, now: now)
                    o.assign(r, to: m.target)
                    o.migrations[r]?.phase = .migrateFrom
                    out.append(.event(.placed(r, on: name(of: m.target))))
                    urgent = true
                }
                reasons[r] = "migrating from \(name(of: m.source)) to \(name(of: m.target)) (\(o.migrations[r]?.phase == .migrateFrom ? "migrate_from" : "migrate_to"))"
                return true
            case .migrateFrom:
                if startedOn(r, among: alive).contains(m.target) {
                    o.migrations[r] = nil
                    out.append(.event(.migrationCompleted(r, from: name(of: m.source), to: name(of: m.target))))
                    urgent = true
                    // Done with it this round: a further move (asked meanwhile) is the next round's,
                    // and may migrate again.
                    reasons[r] = "migrated from \(name(of: m.source)) to \(name(of: m.target))"
                    return true
                }
                if failedOn(m.target) || state.fatal.contains(r) || !targetIn || peerIsLeaving(m.target) {
                    abort(m, targetIn ? "migrate_from failed on \(name(of: m.target))" : "node \(name(of: m.target)) lost", stopOnTarget: false)
                    return false
                }
                reasons[r] = "migrating from \(name(of: m.source)) to \(name(of: m.target)) (migrate_from)"
                return true
            case .aborted:
                // The target stops what the failed migration may have left there before the
                // resource is placed anywhere (so nothing starts it while a partial instance may run).
                if reportsStoppedFirst(m.target, r) || !(alive.contains(m.target) && isMember(m.target)) {
                    o.migrations[r] = nil
                    urgent = true
                    return false
                }
                reasons[r] = "migration aborted: waiting for \(name(of: m.target)) to stop what it may have left there"
                return true
            }
        }
        // A planned move of a resource running, started, on one member only, that did not fail there.
        guard let c = o.placement[r], let t = target, c != t, o.migrations.count < CoordinatorOffice.maxMigrations,
              alive.contains(c), isMember(c), alive.contains(t), isMember(t), !peerIsLeaving(c), !peerIsLeaving(t),
              holders == [c], startedOn(r, among: alive) == [c], !failedOn(c), !failedOn(t), !state.fatal.contains(r),
              o.failovers[r] == nil, resourceSet.options(r).allowMigrate, resourceSet.migratable(r),
              !migration.olderProtocol.contains(c), !migration.olderProtocol.contains(t)
        else { return false }
        o.migrations[r] = .init(source: c, target: t, phase: .migrateTo)
        out.append(.event(.migrationBegun(r, from: name(of: c), to: name(of: t))))
        reasons[r] = "migrating from \(name(of: c)) to \(name(of: t)) (migrate_to)"
        urgent = true
        return true
    }

    // MARK: the node

    /// What migrations ask of this node in an `applyDesired` pass: stops of instances migrated
    /// away whose order ended (returned, for the stop pass), migrate_to on the source, and the
    /// stops `stopFirst` asks for.
    mutating func migrationWork(desired: Set<String>, mayAct: Bool, out: inout [Directive]) -> Set<String> {
        let orders = myMigrationOrders
        // Progress whose order is gone is forgotten (a stop-first report once its order ended).
        for r in migration.stoppedFirst where orders[r]?.kind != .stopFirst { migration.stoppedFirst.remove(r) }
        for (r, _) in migration.towards where local[r] != .migrating && local[r] != .migrated { migration.towards[r] = nil }
        var stops: Set<String> = []
        for (r, s) in local where s == .migrated && (orders[r]?.kind != .migrateTo || !resourceSet.nameSet.contains(r)) { stops.insert(r) }
        for (r, e) in orders.sorted(by: { $0.key < $1.key }) {
            switch e.kind {
            // (Dependents first, as a stop: what depends on it here has migrated away already.)
            case .migrateTo where mayAct && local[r] == .started && desired.contains(r) && !resourceSet.isFrozen(r) && resourceSet.agent(named: r) != nil
                && resourceSet.dependents(of: r).allSatisfy({ local[$0] == nil || local[$0] == .migrated }):
                local[r] = .migrating
                migration.towards[r] = e.node
                out.append(.event(.resourceMigrating(r, to: name(of: e.node))))
                out.append(.migrateTo(r, source: selfName, target: name(of: e.node)))
                factsUrgent = true
            case .stopFirst where local[r] == nil && !migration.stoppedFirst.contains(r) && resourceSet.agent(named: r) != nil:
                migration.stoppedFirst.insert(r)
                local[r] = .stopping
                out.append(.event(.resourceStopping(r)))
                out.append(.stop(r))
                factsUrgent = true
            default:
                break
            }
        }
        return stops
    }

    /// How a start of `r` is done here: nil to wait (a stop-first still due), else the directive.
    func startDirective(for r: String) -> Directive? {
        switch myMigrationOrders[r] {
        case let e? where e.kind == .stopFirst && !migration.stoppedFirst.contains(r):
            return nil
        case let e? where e.kind == .migrateFrom:
            return .migrateFrom(r, source: name(of: e.node), target: selfName)
        default:
            return .start(r)
        }
    }

    /// The shell finished a migrate_to or migrate_from.
    mutating func migrationFinished(_ name: String, _ op: AgentOperation, _ outcome: OperationOutcome, now: UInt64) -> [Directive] {
        var out: [Directive] = []
        if op == .migrateFrom {
            guard outcome.isFailure else { return resourceStarted(name, now: now) }
            if case .fatalError(let why) = outcome { return resourceFailed(name, reason: "migrate_from: \(why)", kind: .fatal, now: now) }
            return resourceFailed(name, reason: "migrate_from: \(outcome)", kind: .hard, now: now)
        }
        guard local[name] == .migrating else { return evaluate(now: now, out: &out) }
        guard outcome.isFailure else {
            local[name] = .migrated
            factsUrgent = true
            out.append(.event(.resourceMigratedAway(name, to: self.name(of: migration.towards[name] ?? selfId))))
            return evaluate(now: now, out: &out)
        }
        // It may still run here: stopped like any failed resource (and the target is told to stop it too).
        local[name] = .started
        if case .fatalError(let why) = outcome { return resourceFailed(name, reason: "migrate_to: \(why)", kind: .fatal, now: now) }
        return resourceFailed(name, reason: "migrate_to: \(outcome)", kind: .hard, now: now)
    }
}
