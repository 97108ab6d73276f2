import VigilCore
import VigilSystem

/// What floating addresses need from rtnetlink: `AddressManager`, or in the tests a stand-in
/// that stalls the way a contended `rtnl_lock` does.
protocol AddressBackend: AnyObject {
    func add(_ prefix: IPPrefix, interface: String) throws
    func remove(_ prefix: IPPrefix, interface: String) throws
    func removeIfOurs(_ prefix: IPPrefix, interface: String) throws
    func list() throws -> [AddressManager.Found]
}

extension AddressManager: AddressBackend {}

/// Runs floating addresses on this node: add/remove through rtnetlink, announce, monitor.
///
/// rtnetlink carries out a request inside the `send` system call, waiting for the kernel's
/// `rtnl_lock` (which anything on the machine that changes links or routes holds, sometimes for
/// seconds): no receive timeout bounds that. So every netlink call (add, remove, the address
/// dump of the monitor) runs on a thread of its own, in the order asked, and the results come
/// back to the loop in one batch per round; the loop that carries heartbeats never waits for
/// the kernel. While any request is in flight the node counts as holding addresses, so the
/// guardian stays armed.
final class FloatingIPs {
    struct Active {
        var ip: FloatingIP
        var interface: String
        var nextMonitor: UInt64
        var nextRefresh: UInt64?
    }
    struct Announcement {
        var name: String
        var address: IPAddress
        var interface: String
        var due: UInt64
        var remaining: Int
        var total: Int
        var interval: UInt64
    }
    /// Interfaces found down under an address: the failure lasts until the interface is back.
    /// (Other failures — a vanished address, a failed add — are transient: the engine forgets them.)
    enum FailureKind { case interfaceDown(String) }

    /// One request for the netlink thread. `generation` orders the requests of one resource: a
    /// result only settles the resource's state if no later request for it was made.
    struct Request: Sendable {
        enum Kind: Sendable {
            /// Add, unless the lease (`until`, monotonic ms) has run out by the time it runs.
            case add(until: UInt64)
            /// Remove an address we added (`known`) or, after a failed start, one only if ours.
            case remove(known: Bool)
        }
        var name: String
        /// nil: a stop of something never defined here (its result is still reported, in order).
        var prefix: IPPrefix?
        var interface: String
        var kind: Kind
        var generation: UInt64
        /// The definition an add was asked for (what is held once it is added, whatever the
        /// configuration says by then).
        var ip: FloatingIP?
    }
    struct Outcome: Sendable {
        var request: Request
        var error: String?
        var isStart: Bool { if case .add = request.kind { true } else { false } }
    }
    /// The netlink socket, used only by the netlink thread once the loop runs.
    private final class BackendBox: @unchecked Sendable {
        let backend: any AddressBackend
        init(_ b: any AddressBackend) { backend = b }
    }

    let nodeName: String
    private let box: BackendBox
    var netlink: any AddressBackend { box.backend }
    let log: EventLog
    private(set) var definitions: [String: FloatingIP] = [:]
    private(set) var active: [String: Active] = [:]
    private var announcements: [Announcement] = []
    /// Long-lived announcement sockets (never one per packet), used on a worker thread so a
    /// takeover of hundreds of addresses never delays the reactor.
    let announcer = Announcer()
    let worker: Worker
    var failures: [String: FailureKind] = [:]

    private let reactor: Reactor
    private let netlinkThread: OffLoop
    /// Requests of this round, sent to the netlink thread as one batch when the round ends.
    private var queued: [Request] = []
    /// Requests asked for whose result has not come back (queued ones included).
    private(set) var inFlight = 0
    /// Addresses whose removal failed: still counted as held (the guardian stays armed).
    private(set) var stuck: [String: Active] = [:]
    /// Removals we asked for, by address, with when: their notifications are ours, not a
    /// vanished address (a notification can be read after a new add of the same address).
    private var ownRemovals: [IPAddress: [UInt64]] = [:]
    private var generations: [String: UInt64] = [:]
    private var nextGeneration: UInt64 = 0
    private var dumpInFlight = false
    /// Told the results of a batch of adds and removes, in the order they were asked for.
    var onResults: ([Outcome]) -> Void = { _ in }
    /// Told that an address checked by the monitor is no longer configured.
    var onVanished: (_ name: String, _ why: String) -> Void = { _, _ in }

    /// The kernel's address notifications (nil: not available, or not wanted by a test): an
    /// address removed behind our back is noticed when it happens; the dump then runs only as a
    /// safety net, every `fullCheckMs`, or at once after notifications were lost.
    private var events: AddressEvents?
    private var nextFullCheck: UInt64 = 0
    /// Notifications were lost: the next round dumps and checks every address held.
    private var fullCheckWanted = false

    private func expectRemoval(_ a: IPAddress) {
        let now = MonotonicClock.nowMs()
        // Forgotten after 5 s (a removal of an address that was not there sends nothing).
        ownRemovals = ownRemovals.compactMapValues { t in
            let kept = t.filter { now < $0 + 5000 }
            return kept.isEmpty ? nil : kept
        }
        ownRemovals[a, default: []].append(now)
    }

    private func takeOwnRemoval(_ a: IPAddress) -> Bool {
        guard var t = ownRemovals[a], !t.isEmpty else { return false }
        t.removeFirst()
        ownRemovals[a] = t.isEmpty ? nil : t
        return true
    }
    static let fullCheckMs: UInt64 = 60_000

    init(nodeName: String, log: EventLog, reactor: Reactor, backend: (any AddressBackend)? = nil, watchEvents: Bool = true) throws {
        self.nodeName = nodeName
        self.log = log
        self.reactor = reactor
        self.box = BackendBox(try backend ?? AddressManager())
        self.worker = try Worker(name: "announcer")
        self.netlinkThread = try OffLoop(name: "netlink", reactor: reactor)
        if watchEvents {
            do {
                let e = try AddressEvents()
                events = e
                reactor.add(fd: e.fd) { [weak self] _ in self?.readEvents() }
            } catch {
                log.warning("no address notifications (\(error)): addresses are checked by a dump every monitor interval")
            }
        }
    }

    /// Addresses the kernel says were removed: those still held here (not being stopped or
    /// added by us) vanished behind our back.
    private func readEvents() {
        guard let events else { return }
        let (removed, overflowed) = events.read()
        if overflowed {
            log.warning("address notifications were lost (socket buffer full): checking every address now")
            fullCheckWanted = true
            nextMonitorDue = 0
        }
        for f in removed {
            if takeOwnRemoval(f.address) { continue }
            for (name, a) in active where a.ip.prefix.address == f.address && generations[name] == nil {
                guard let idx = AddressManager.ifindex(a.interface), idx == f.ifindex else { continue }
                onVanished(name, "address \(f.address) vanished from \(a.interface)")
            }
        }
    }

    /// True while any address of ours is configured here (the guardian must then be armed).
    var holdsAny: Bool { !active.isEmpty || inFlight > 0 || !stuck.isEmpty }

    /// When the next announcement is due, if any.
    var nextAnnouncementDue: UInt64? { announcements.map(\.due).min() }

    func setDefinitions(_ set: ResourceSet) {
        var new: [String: FloatingIP] = [:]
        for ip in set.ips { new[ip.name] = ip }
        definitions = new
    }

    /// Addresses we added in an earlier life (marked with our protocol number), by resource name.
    /// Ours that match no current definition are removed.
    /// At start-up: every Vigil address on this machine was added by an earlier life of clusterd,
    /// whose lease ended with it (a majority may already have started it elsewhere). They are
    /// removed; the coordinator places them again (on this node if it is still the best place).
    func removeLeftovers() {
        // At start-up, before the netlink thread has any work: called here directly.
        let found: [AddressManager.Found]
        do {
            found = try netlink.list()
        } catch {
            log.error("cannot list addresses at start-up: \(error)")
            return
        }
        for f in found where f.proto == AddressManager.proto {
            let ifname = Interfaces.name(ofIndex: f.ifindex) ?? "?"
            let p = IPPrefix(address: f.address, length: f.prefixLength)
            let resource = definitions.values.first { $0.prefix.address == f.address }?.name ?? "-"
            do {
                try netlink.remove(p, interface: ifname)
                log.info("leftover-removed address=\(p) interface=\(ifname) resource=\(resource) (left by an earlier life of clusterd; its lease ended with it)")
            } catch {
                log.error("cannot remove leftover address \(p) from \(ifname): \(error)")
            }
        }
    }


    /// Asks for the address to be added (the result comes through `onResults`); returns an
    /// error text at once when it cannot be (no definition, interface missing or down). Nothing
    /// is added once the lease (`until`) has run out, however long the request waited.
    func start(_ name: String, until: UInt64) -> String? {
        guard let ip = definitions[name] else { return "no definition for \(name)" }
        guard let ifname = ip.interface(on: nodeName) else { return "no interface configured for node \(nodeName)" }
        let st = Interfaces.state(ifname)
        guard st.exists else { return "interface \(ifname) does not exist" }
        guard st.up else { return "interface \(ifname) is down" }
        ask(name, ip.prefix, ifname, .add(until: until), ip: ip)
        return nil
    }

    /// Asks for the address to be removed (the result comes through `onResults`).
    func stop(_ name: String) {
        announcements.removeAll { $0.name == name }
        if let a = active.removeValue(forKey: name) ?? stuck[name] {
            ask(name, a.ip.prefix, a.interface, .remove(known: true))
        } else if let ip = definitions[name], let ifname = ip.interface(on: nodeName) {
            // Not ours as far as we know; make sure anyway (after a failed start, or while its
            // add is still in flight), but never delete an address someone else configured.
            ask(name, ip.prefix, ifname, .remove(known: false))
        } else {
            ask(name, nil, "", .remove(known: false))
        }
    }

    private func ask(_ name: String, _ prefix: IPPrefix?, _ interface: String, _ kind: Request.Kind, ip: FloatingIP? = nil) {
        nextGeneration += 1
        generations[name] = nextGeneration
        if case .remove = kind, let prefix { expectRemoval(prefix.address) }
        queued.append(Request(name: name, prefix: prefix, interface: interface, kind: kind, generation: nextGeneration, ip: ip))
        inFlight += 1
        if queued.count == 1 { reactor.enqueue { [weak self] in self?.flush() } }
    }

    /// Sends this round's requests to the netlink thread as one batch.
    private func flush() {
        guard !queued.isEmpty else { return }
        let batch = queued
        queued = []
        let box = self.box
        netlinkThread.run({ () -> [Outcome] in
            batch.map { Outcome(request: $0, error: Self.carryOut($0, box.backend)) }
        }, then: { [weak self] outcomes in self?.finished(outcomes) })
    }

    /// On the netlink thread.
    private static func carryOut(_ r: Request, _ nl: any AddressBackend) -> String? {
        guard let p = r.prefix else { return nil }
        do {
            switch r.kind {
            case .add(let until):
                guard MonotonicClock.nowMs() < until else { return "the lease ran out before the address could be added" }
                try nl.add(p, interface: r.interface)
                // The kernel may have held the add (rtnl_lock) past the lease, and past the
                // guardian's sweep: then it comes off again here, at once.
                if MonotonicClock.nowMs() >= until {
                    try? nl.remove(p, interface: r.interface)
                    return "the lease ran out while the kernel carried out the add; removed again"
                }
            case .remove(let known):
                if known { try nl.remove(p, interface: r.interface) } else { try nl.removeIfOurs(p, interface: r.interface) }
            }
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// On the loop: the results of one batch.
    private func finished(_ outcomes: [Outcome]) {
        let now = MonotonicClock.nowMs()
        inFlight -= outcomes.count
        for o in outcomes {
            let r = o.request
            let latest = generations[r.name] == r.generation
            if latest { generations[r.name] = nil }
            switch r.kind {
            case .add:
                if let e = o.error {
                    log.error("start resource=\(r.name) failed: \(e)")
                    continue
                }
                guard let p = r.prefix else { continue }
                log.info("address-added resource=\(r.name) address=\(p) interface=\(r.interface)")
                // A stop asked for meanwhile removes it again; until then it is not monitored.
                // What is held is what was added, whatever the configuration says by now (a
                // changed definition is restarted by the engine: stop, then start).
                guard latest, let ip = r.ip else { continue }
                active[r.name] = Active(ip: ip, interface: r.interface, nextMonitor: now + ip.monitorIntervalMs,
                                        nextRefresh: ip.refreshIntervalMs > 0 ? now + ip.refreshIntervalMs : nil)
                nextMonitorDue = min(nextMonitorDue, now + min(ip.monitorIntervalMs, ip.refreshIntervalMs > 0 ? ip.refreshIntervalMs : UInt64.max))
                scheduleAnnouncements(r.name, now: now)
            case .remove(let known):
                let p = r.prefix.map { "\($0)" } ?? "-"
                if let e = o.error {
                    if known { log.error("cannot remove \(p) from \(r.interface): \(e)") } else { log.warning("stop of \(r.name): \(e)") }
                    // Still configured as far as we know: the guardian stays armed for it, and
                    // the stop is reported failed (the engine does not move what may still be
                    // here; see Daemon.addressesDone).
                    if let ip = r.ip ?? definitions[r.name], let prefix = r.prefix, ip.prefix == prefix, known {
                        stuck[r.name] = Active(ip: ip, interface: r.interface, nextMonitor: now, nextRefresh: nil)
                    }
                } else {
                    stuck[r.name] = nil
                    if known { log.info("address-removed resource=\(r.name) address=\(p) interface=\(r.interface)") }
                }
                if latest { active[r.name] = nil }
            }
        }
        onResults(outcomes)
    }

    /// At exit, after the loop stopped: waits for what is in flight, then removes every
    /// address still held, here and now.
    func stopAll() {
        // Results still arriving only settle what is configured: the engine no longer acts.
        onResults = { _ in }
        onVanished = { _, _ in }
        flush()
        netlinkThread.finish()
        for name in active.keys.sorted() {
            guard let a = active.removeValue(forKey: name) else { continue }
            do {
                try netlink.remove(a.ip.prefix, interface: a.interface)
                log.info("address-removed resource=\(name) address=\(a.ip.prefix) interface=\(a.interface)")
            } catch {
                log.error("cannot remove \(a.ip.prefix) from \(a.interface): \(error)")
            }
        }
    }

    func scheduleAnnouncements(_ name: String, now: UInt64) {
        guard let a = active[name], a.ip.announceCount > 0 else { return }
        announcements.removeAll { $0.name == name }
        announcements.append(Announcement(name: name, address: a.ip.prefix.address, interface: a.interface, due: now,
                                          remaining: a.ip.announceCount, total: a.ip.announceCount, interval: a.ip.announceIntervalMs))
        runAnnouncements(now: now, leaseHeld: true)
    }

    /// Sends what is due. Nothing is announced once our lease has run out (`leaseHeld` false):
    /// the new owner repeats its own announcements.
    func runAnnouncements(now: UInt64, leaseHeld: Bool, leaseDeadline: UInt64 = UInt64.max) {
        guard leaseHeld else {
            announcements.removeAll()
            return
        }
        var keep: [Announcement] = []
        for var a in announcements {
            if a.due <= now {
                let (announcer, log, n) = (announcer, log, a.total - a.remaining + 1)
                let (name, address, interface, total) = (a.name, a.address, a.interface, a.total)
                worker.submit {
                    // Checked again just before sending: never announce past the lease.
                    guard MonotonicClock.nowMs() < leaseDeadline else { return }
                    do {
                        try announcer.announce(address, interface: interface, fresh: n == 1)
                        log.info("announced resource=\(name) address=\(address) interface=\(interface) \(address.family == .v4 ? "garp" : "unsolicited-na") \(n)/\(total)")
                    } catch {
                        log.warning("announce \(address) on \(interface) failed: \(error)")
                    }
                }
                a.remaining -= 1
                a.due = now + a.interval
            }
            if a.remaining > 0 { keep.append(a) }
        }
        announcements = keep
    }

    /// When `monitor` next has something to do (a check or a refresh announcement is due).
    private(set) var nextMonitorDue: UInt64 = 0

    /// Periodic checks. Returns resources that failed (name, reason) and ones whose failure cleared.
    func monitor(now: UInt64) -> (failed: [(name: String, why: String, transient: Bool)], recovered: [String]) {
        var failed: [(name: String, why: String, transient: Bool)] = []
        var recovered: [String] = []
        if now >= nextMonitorDue {
            checkActive(now: now, failed: &failed)
        }
        for (name, kind) in failures {
            switch kind {
            case .interfaceDown(let ifname):
                let st = Interfaces.state(ifname)
                if st.exists && st.up && st.running {
                    failures[name] = nil
                    recovered.append(name)
                }
            }
        }
        return (failed, recovered.sorted())
    }

    /// Checks the addresses whose monitor is due: one interface query per interface and one
    /// address dump per round, however many addresses share them.
    private func checkActive(now: UInt64, failed: inout [(name: String, why: String, transient: Bool)]) {
        var toVerify: [(name: String, prefix: IPPrefix, interface: String)] = []
        var states: [String: Interfaces.State] = [:]
        var next = UInt64.max
        // A round that checks one address checks every address due within half its interval
        // too: they fall into step, and a node with a hundred addresses dumps once per interval
        // rather than once per address.
        let anyDue = active.values.contains { $0.nextMonitor <= now }
        for name in active.keys.sorted() {
            guard var a = active[name] else { continue }
            if let r = a.nextRefresh, r <= now {
                a.nextRefresh = now + a.ip.refreshIntervalMs
                active[name] = a
                scheduleAnnouncements(name, now: now)
            }
            if let r = a.nextRefresh { next = min(next, r) }
            guard fullCheckWanted || a.nextMonitor <= (anyDue ? now + a.ip.monitorIntervalMs / 2 : now) else {
                next = min(next, a.nextMonitor)
                continue
            }
            a.nextMonitor = now + a.ip.monitorIntervalMs
            next = min(next, a.nextMonitor)
            active[name] = a
            let st = states[a.interface] ?? Interfaces.state(a.interface)
            states[a.interface] = st
            if !st.exists || !st.up || !st.running {
                let why = !st.exists ? "interface \(a.interface) disappeared" : (!st.up ? "interface \(a.interface) is down" : "interface \(a.interface) has no carrier")
                failures[name] = .interfaceDown(a.interface)
                failed.append((name, why, false))
                continue
            }
            toVerify.append((name, a.ip.prefix, a.interface))
        }
        nextMonitorDue = next
        // With notifications, the dump is only a safety net (and the check after lost ones).
        if (events == nil || now >= nextFullCheck || fullCheckWanted) && verify(toVerify) {
            nextFullCheck = now + Self.fullCheckMs
            fullCheckWanted = false
        }
    }

    /// Dumps the addresses on the netlink thread, after every add and remove asked for before,
    /// and reports those of `names` that are still held but no longer configured. One dump at a
    /// time: a round due while one is in flight is checked by the next.
    /// Whether a dump was started.
    @discardableResult
    private func verify(_ items: [(name: String, prefix: IPPrefix, interface: String)]) -> Bool {
        guard !items.isEmpty, !dumpInFlight else { return items.isEmpty && !dumpInFlight }
        dumpInFlight = true
        flush()  // the dump must see what this round asked for
        let box = self.box
        netlinkThread.run({ () -> Result<Set<IPAddress>, SystemError> in
            do {
                return .success(Set(try box.backend.list().map(\.address)))
            } catch let e as SystemError {
                return .failure(e)
            } catch {
                return .failure(SystemError("\(error)", errno: 0))
            }
        }, then: { [weak self] result in
            guard let self else { return }
            self.dumpInFlight = false
            switch result {
            case .failure(let e):
                // A failed dump says nothing about the addresses: the check waits for the next
                // round (read as "none present", it used to fail over every address of the node).
                self.log.warning("address dump failed: \(e); the address check waits for the next round")
            case .success(let present):
                for i in items where !present.contains(i.prefix.address) {
                    // Only what is still held as it was when the dump was asked for: a stop or a
                    // new add since then has its own result.
                    guard let a = self.active[i.name], a.ip.prefix == i.prefix, a.interface == i.interface,
                          self.generations[i.name] == nil else { continue }
                    self.onVanished(i.name, "address \(i.prefix.address) vanished from \(i.interface)")
                }
            }
        })
        return true
    }

    /// An address could not be added: if its interface is down, watch for it to come back.
    func markStartFailed(_ name: String, now: UInt64) {
        guard let ip = definitions[name], let ifname = ip.interface(on: nodeName) else { return }
        let st = Interfaces.state(ifname)
        if !st.exists || !st.up { failures[name] = .interfaceDown(ifname) }
    }
}
