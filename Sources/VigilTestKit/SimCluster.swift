import VigilCore

/// Deterministic pseudo-random numbers for simulations (SplitMix64).
public struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Several engines on virtual time over a simulated network with per-direction, per-link
/// loss, delay and cuts. The shell's behaviour is emulated: starts succeed at once, and
/// `holding` records what each node runs. After every step it checks the safety invariants.
public struct SimCluster {
    public struct Path: Hashable { public var from: NodeID; public var to: NodeID; public var link: Int }
    public struct PathState {
        public var up = true
        public var loss = 0.0
        public var delay: UInt64 = 1
        public var jitter: UInt64 = 0
        /// Probability that a packet arrives twice (the copy with its own jitter, so possibly reordered).
        public var duplicate = 0.0
        /// Bursts: with this probability per packet the path starts dropping everything for `burstMs`.
        public var burst = 0.0
        public var burstMs: UInt64 = 0
        var burstUntil: UInt64 = 0
    }
    struct Packet { var at: UInt64; var order: UInt64; var from: NodeID; var to: NodeID; var link: Int; var inc: UInt64; var seq: UInt64; var msg: Message }

    /// What one UDP datagram carries after the envelope (65,507 bytes less header and MAC).
    public static let maxDatagramPayload = 65_507 - 80

    public let cluster: ClusterConfig
    public internal(set) var engines: [NodeID: Engine] = [:]
    public private(set) var now: UInt64 = 1_000
    public var paths: [Path: PathState] = [:]
    public private(set) var holding: [NodeID: Set<String>] = [:]
    public private(set) var crashed: Set<NodeID> = []
    public private(set) var violations: [String] = []
    /// The latest end of a term each node held as coordinator (on its own clock).
    var termEnds: [NodeID: UInt64] = [:]
    /// (time, node, event) for every event the engines reported.
    public private(set) var events: [(UInt64, NodeID, EngineEvent)] = []
    /// (time, node, resource, started?) for every start/stop.
    public private(set) var actions: [(UInt64, NodeID, String, Bool)] = []
    public private(set) var replies: [UInt64: (ok: Bool, version: UInt64, message: String)] = [:]
    /// Resources that fail to start on a node (simulating a missing interface).
    public var failingStarts: [NodeID: Set<String>] = [:]
    /// Resources a probe finds already running on a node.
    public var runningProbes: [NodeID: Set<String>] = [:]
    /// Resources whose probe on a node does not answer until `finishProbe`.
    public var hangingProbes: [NodeID: Set<String>] = [:]
    struct Probe: Hashable { var node: NodeID; var resource: String }
    var pendingProbes: Set<Probe> = []

    /// Answers a hanging probe: the resource is not running there.
    public mutating func finishProbe(_ r: String, on id: NodeID) {
        guard pendingProbes.remove(Probe(node: id, resource: r)) != nil else { return }
        drive(id) { e, now in e.probeResult(r, .notRunning, now: now) }
    }

    /// Resources whose stop fails on a node.
    public var failingStops: [NodeID: Set<String>] = [:]
    /// Resources whose migrate_to, or migrate_from, fails on a node (the instance stays where it was).
    public var failingMigrations: [NodeID: Set<String>] = [:]
    /// (time, node, resource, action) of every migrate_to and migrate_from, as Dummy runs them:
    /// migrate_to stops the instance on the source, migrate_from starts it on the target.
    public private(set) var migrationActions: [(UInt64, NodeID, String, AgentOperation)] = []
    /// Fencing (SimFencing.swift): attempts that fail per target, fences under way, and done.
    public var fenceFailures: [NodeID: Int] = [:]
    /// Targets a device reports fenced but leaves running (a wrong plug, a dummy agent).
    public var fenceMisses: Set<NodeID> = []
    var pendingFences: [PendingFence] = []
    public internal(set) var fences: [FenceDone] = []
    /// Watchdogs (with `[watchdog]`): each node's last pet, and the resets they caused.
    var lastPet: [NodeID: UInt64] = [:]
    public internal(set) var watchdogResets: [(node: NodeID, at: UInt64)] = []
    /// (time, node, resource) for every recurring monitor the engines asked for.
    public private(set) var monitors: [(UInt64, NodeID, String)] = []

    /// The resource dies on node `id` behind the cluster's back (its next monitor finds it gone).
    public mutating func kill(_ r: String, on id: NodeID) { holding[id]?.remove(r) }
    var inflight: [Packet] = []
    var seqs: [NodeID: UInt64] = [:]
    var incarnations: [NodeID: UInt64] = [:]
    var rng: SplitMix64
    var order: UInt64 = 0
    var nextTick: [NodeID: UInt64] = [:]
    /// Each node's monotonic clock: its own origin and a rate error in parts per million.
    public private(set) var clockOffset: [NodeID: UInt64] = [:]
    public private(set) var clockPPM: [NodeID: Int64] = [:]
    /// Nodes whose daemon is stopped (SIGSTOP): they process nothing, their kernel still holds
    /// their addresses until their guardian removes them at the lease deadline.
    public private(set) var paused: Set<NodeID> = []
    /// Times the guardian removed addresses because the daemon did not (node, time).
    public private(set) var guardianFired: [(NodeID, UInt64)] = []
    /// Off only to show that a test would catch the stalled daemon without it.
    public var guardianEnabled = true
    /// While set, every heartbeat sent is recorded in `heartbeatLog`.
    public var recordHeartbeats = false
    /// Wall time spent inside the engines' `receive` and `tick` (for `vigil-lab core-bench`).
    public var engineNanos: UInt64 = 0
    public struct SentHeartbeat: Sendable { public var at: UInt64; public var from: NodeID; public var to: NodeID; public var bytes: Int; public var heartbeat: Heartbeat }
    public private(set) var heartbeatLog: [SentHeartbeat] = []

    public init(cluster: ClusterConfig, resources: String = "", seed: UInt64 = 1) throws {
        self.cluster = cluster
        rng = SplitMix64(seed: seed)
        let set = try ResourceSet.parse(resources, file: "sim", cluster: cluster)
        let v = resources.isEmpty ? VersionedResources.empty : VersionedResources(version: 1, text: resources)
        for n in cluster.nodes {
            incarnations[n.id] = 1
            // Distinct clocks: every node's monotonic clock started at another moment.
            clockOffset[n.id] = UInt64(n.id.rawValue) * 7_919_000 + UInt64.random(in: 0..<1_000_000, using: &rng)
            clockPPM[n.id] = 0
            engines[n.id] = Engine(cluster: cluster, selfId: n.id, incarnation: 1, resources: v, resourceSet: set, now: (clockOffset[n.id] ?? 0) + now)
            holding[n.id] = []
            // Nodes start at random moments, so their heartbeats are out of phase as on real machines.
            nextTick[n.id] = now + UInt64.random(in: 0..<cluster.timing.interval, using: &rng)
            for m in cluster.nodes where m.id != n.id {
                for l in 0..<cluster.links.count { paths[Path(from: n.id, to: m.id, link: l)] = PathState() }
            }
        }
    }

    /// A cluster file for `n` nodes with `links` links and the given timing.
    public static func config(nodes n: Int, links: Int = 2, interval: Int = Int(Timing.defaultInterval), timeout: Int = Int(Timing.defaultTimeout), policy: String = "stop", witnesses: Set<Int> = []) throws -> ClusterConfig {
        var t = "[cluster]\nname = \"sim\"\nkey_file = \"/dev/null\"\nno_quorum_policy = \"\(policy)\"\n[timing]\nheartbeat_interval_ms = \(interval)\nfailure_timeout_ms = \(timeout)\n"
        for l in 0..<links { t += "[[link]]\nname = \"l\(l)\"\nport = \(5405 + l)\n" }
        for i in 1...n {
            let addrs = (0..<links).map { "\"10.\($0).0.\(i)\"" }.joined(separator: ", ")
            t += "[[node]]\nname = \"n\(i)\"\nid = \(i)\naddresses = [\(addrs)]\n"
            if witnesses.contains(i) { t += "role = \"witness\"\n" }
        }
        return try ClusterConfig.parse(t, file: "sim.toml")
    }

    public func engine(_ id: NodeID) -> Engine? { engines[id] }

    /// Node `id`'s monotonic clock at the current virtual (real) time.
    public func clock(_ id: NodeID) -> UInt64 {
        let base = (clockOffset[id] ?? 0) + now
        let ppm = clockPPM[id] ?? 0
        let skew = Int64(now) * ppm / 1_000_000
        return UInt64(max(0, Int64(base) + skew))
    }

    /// Makes node `id`'s clock run fast (positive) or slow (negative) by `ppm` parts per million.
    /// The lease argument holds for errors up to the configured bound (1000 ppm).
    public mutating func setClockRate(_ id: NodeID, ppm: Int64) {
        // Keep the clock continuous: fold the skew so far into the offset.
        let current = clock(id)
        clockPPM[id] = ppm
        let skew = Int64(now) * ppm / 1_000_000
        clockOffset[id] = UInt64(max(0, Int64(current) - Int64(now) - skew))
    }

    /// Stops node `id`'s daemon (SIGSTOP): no packet is read and no tick runs until `resume`.
    public mutating func pause(_ id: NodeID) { paused.insert(id) }
    public mutating func resume(_ id: NodeID) { paused.remove(id) }

    /// Status of node `id` on its own clock.
    public func status(_ id: NodeID) -> ClusterStatus? { engines[id]?.status(now: clock(id)) }

    public func holders(of r: String) -> [NodeID] {
        holding.filter { $0.value.contains(r) }.map(\.key).sorted()
    }

    public var coordinators: [NodeID] {
        engines.filter { !crashed.contains($0.key) && $0.value.isCoordinator }.map(\.key).sorted()
    }

    /// The node stops; what it ran is gone with it (a dead machine answers nobody).
    public mutating func crash(_ id: NodeID) {
        crashed.insert(id)
        holding[id] = []
        inflight.removeAll { $0.to == id || $0.from == id }
    }

    /// The node comes back as a new incarnation with empty state.
    public mutating func restart(_ id: NodeID) {
        guard let e = engines[id] else { return }
        crashed.remove(id)
        incarnations[id, default: 1] += 1
        seqs[id] = 0
        engines[id] = Engine(cluster: cluster, selfId: id, incarnation: incarnations[id] ?? 2, resources: e.resources, resourceSet: e.resourceSet, now: clock(id))
    }

    /// Advances virtual time by `ms`, one millisecond at a time.
    public mutating func run(_ ms: UInt64) {
        let end = now + ms
        while now < end {
            now += 1
            step()
        }
    }

    /// Runs until `cond` holds or `limit` ms pass; returns the time it took, or nil.
    public mutating func run(until limit: UInt64, _ cond: (SimCluster) -> Bool) -> UInt64? {
        let start = now
        while now < start + limit {
            if cond(self) { return now - start }
            now += 1
            step()
        }
        return cond(self) ? now - start : nil
    }

    mutating func step() {
        // Deliver due packets in a deterministic order.
        // A stopped daemon's packets wait in its socket buffer until it resumes.
        let due = inflight.filter { $0.at <= now && !paused.contains($0.to) }.sorted { ($0.at, $0.order) < ($1.at, $1.order) }
        inflight.removeAll { $0.at <= now && !paused.contains($0.to) }
        for p in due where !crashed.contains(p.to) {
            let at = clock(p.to)
            guard let d = withEngine(p.to, { $0.receive(from: p.from, link: p.link, incarnation: p.inc, seq: p.seq, message: p.msg, now: at) }) else { continue }
            execute(p.to, d)
        }
        finishFences()
        watchdogStep()
        let tick = cluster.timing.interval
        for id in engines.keys.sorted() where !crashed.contains(id) {
            // The guardian: independent of the daemon, it removes the node's addresses once its
            // lease deadline passed without renewal.
            if guardianEnabled, let e = engines[id], let held = holding[id], !held.isEmpty, clock(id) >= e.guardianDeadline {
                let addresses = held.filter { e.resourceSet.ip(named: $0) != nil }
                if !addresses.isEmpty {
                    holding[id] = held.subtracting(addresses)
                    guardianFired.append((id, now))
                }
            }
            guard !paused.contains(id) else { continue }
            guard let t = nextTick[id], t <= now else { continue }
            let at = clock(id)
            guard let d = withEngine(id, { $0.tick(now: at) }) else { continue }
            nextTick[id] = now + tick
            execute(id, d)
        }
        checkInvariants()
    }

    /// Like the daemon: after every input, sleep until the engine's next deadline (on the node's clock).
    mutating func reschedule(_ id: NodeID) {
        guard let e = engines[id] else { return }
        let local = clock(id)
        let next = e.nextDeadline(now: local)
        let at = now + max(1, next - min(next, local))
        nextTick[id] = min(nextTick[id] ?? at, at)
    }

    mutating func execute(_ id: NodeID, _ directives: [Engine.Directive]) {
        defer { reschedule(id) }
        var queue = directives[...]
        while let d = queue.popFirst() {
            switch d {
            case .send(let to, let original):
                // Every message goes through the wire codec, bounded by one UDP datagram, as
                // the daemon sends it.
                let payload = original.encodePayload()
                // Heartbeats and their pages fit one unfragmented datagram, anything else the
                // largest packet a node accepts.
                let bound = original.kind == 1 || original.kind == 11 ? Message.heartbeatBudget : Message.maxPayload
                guard payload.count <= bound else {
                    violations.append("t=\(now): message kind \(original.kind) of \(payload.count) bytes from n\(id) exceeds \(bound)")
                    continue
                }
                let msg: Message
                do {
                    msg = try Message.decode(kind: original.kind, payload: payload)
                } catch {
                    violations.append("t=\(now): message kind \(original.kind) from n\(id) does not decode: \(error)")
                    continue
                }
                if recordHeartbeats, case .heartbeat(let h) = original {
                    heartbeatLog.append(SentHeartbeat(at: now, from: id, to: to, bytes: payload.count, heartbeat: h))
                }
                seqs[id, default: 0] += 1
                let seq = seqs[id] ?? 0
                for l in 0..<cluster.links.count {
                    let key = Path(from: id, to: to, link: l)
                    guard var ps = paths[key], ps.up else { continue }
                    if ps.burst > 0 && now >= ps.burstUntil && Double.random(in: 0..<1, using: &rng) < ps.burst {
                        ps.burstUntil = now + ps.burstMs
                        paths[key] = ps
                    }
                    if now < ps.burstUntil { continue }
                    if ps.loss > 0 && Double.random(in: 0..<1, using: &rng) < ps.loss { continue }
                    let copies = ps.duplicate > 0 && Double.random(in: 0..<1, using: &rng) < ps.duplicate ? 2 : 1
                    for _ in 0..<copies {
                        let j = ps.jitter > 0 ? UInt64.random(in: 0...ps.jitter, using: &rng) : 0
                        order += 1
                        inflight.append(Packet(at: now + ps.delay + j, order: order, from: id, to: to, link: l, inc: incarnations[id] ?? 1, seq: seq, msg: msg))
                    }
                }
            case .start(let r):
                if failingStarts[id]?.contains(r) ?? false {
                    queue.append(contentsOf: result(id) { $0.operationFinished(r, .start, .hardError("simulated start failure"), now: $1) })
                    continue
                }
                holding[id, default: []].insert(r)
                actions.append((now, id, r, true))
                queue.append(contentsOf: result(id) { $0.operationFinished(r, .start, .success, now: $1) })
            case .stop(let r):
                if failingStops[id]?.contains(r) ?? false {
                    queue.append(contentsOf: result(id) { $0.operationFinished(r, .stop, .hardError("simulated stop failure"), now: $1) })
                    continue
                }
                if holding[id]?.remove(r) != nil { actions.append((now, id, r, false)) }
                queue.append(contentsOf: result(id) { $0.operationFinished(r, .stop, .success, now: $1) })
            case .migrateTo(let r, _, _), .migrateFrom(let r, _, _):
                let op: AgentOperation
                if case .migrateTo = d { op = .migrateTo } else { op = .migrateFrom }
                migrationActions.append((now, id, r, op))
                if failingMigrations[id]?.contains(r) ?? false {
                    queue.append(contentsOf: result(id) { $0.operationFinished(r, op, .softError("simulated \(op.rawValue) failure"), now: $1) })
                    continue
                }
                if op == .migrateTo {
                    if holding[id]?.remove(r) != nil { actions.append((now, id, r, false)) }
                } else {
                    holding[id, default: []].insert(r)
                    actions.append((now, id, r, true))
                }
                queue.append(contentsOf: result(id) { $0.operationFinished(r, op, .success, now: $1) })
            case .monitor(let r):
                // The agent answers from what really runs: a resource the test killed is not running.
                monitors.append((now, id, r))
                let running = holding[id]?.contains(r) ?? false
                queue.append(contentsOf: result(id) { $0.operationFinished(r, .monitor, running ? .success : .notRunning, now: $1) })
            case .probe(let r):
                // A probe that hangs: answered only by `finishProbe`.
                if hangingProbes[id]?.contains(r) ?? false {
                    pendingProbes.insert(Probe(node: id, resource: r))
                    continue
                }
                if runningProbes[id]?.contains(r) ?? false {
                    holding[id, default: []].insert(r)
                    actions.append((now, id, r, true))
                }
                let found = runningProbes[id]?.contains(r) ?? false
                queue.append(contentsOf: result(id) { $0.probeResult(r, found ? .success : .notRunning, now: $1) })
            case .event(let ev):
                events.append((now, id, ev))
            case .reply(let rid, let ok, let v, let m):
                replies[rid] = (ok, v, m)
            case .fence(let target, _, _):
                pendingFences.append(PendingFence(at: now + Self.fenceDelayMs, by: id, target: target))
            case .announce, .persist, .adoptResources:
                break
            }
        }
    }

    mutating func checkInvariants() {
        guard violations.count < 10 else { return }
        var byResource: [String: [NodeID]] = [:]
        for (id, set) in holding where !crashed.contains(id) {
            for r in set { byResource[r, default: []].append(id) }
        }
        for (r, ids) in byResource where ids.count > 1 {
            violations.append("t=\(now): \(r) held by \(ids.sorted())")
        }
        if coordinators.count > 1 {
            violations.append("t=\(now): two coordinators \(coordinators)")
        }
        // The authority to start what a coordinator assigned never outlives its term (give or
        // take what the clocks' rate bound makes of a lease on both clocks, and a millisecond of
        // rounding on each).
        for (id, e) in engines where e.isCoordinator && !crashed.contains(id) { termEnds[id] = max(termEnds[id] ?? 0, e.election.termEnd) }
        let slack = 2 + (2 * cluster.timing.lease + 999) / 1000
        for (id, e) in engines where !crashed.contains(id) && !e.isCoordinator {
            guard let c = e.authority, c != id, clock(id) < e.authorityUntil, let end = termEnds[c], end != .max else { continue }
            if clock(c) >= end + slack {
                violations.append("t=\(now): n\(id) may start what n\(c) assigned for \(e.authorityUntil - clock(id)) ms more, after n\(c)'s term ended")
            }
        }
    }
}
