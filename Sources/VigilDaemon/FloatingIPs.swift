import VigilCore
import VigilSystem

/// Runs floating addresses on this node: add/remove through rtnetlink, announce, monitor.
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

    let nodeName: String
    let netlink: AddressManager
    let log: EventLog
    private(set) var definitions: [String: FloatingIP] = [:]
    private(set) var active: [String: Active] = [:]
    private var announcements: [Announcement] = []
    /// Long-lived announcement sockets (never one per packet), used on a worker thread so a
    /// takeover of hundreds of addresses never delays the reactor.
    let announcer = Announcer()
    let worker: Worker
    var failures: [String: FailureKind] = [:]

    init(nodeName: String, log: EventLog) throws {
        self.nodeName = nodeName
        self.log = log
        self.netlink = try AddressManager()
        self.worker = try Worker(name: "announcer")
    }

    /// True while any address of ours is configured here (the guardian must then be armed).
    var holdsAny: Bool { !active.isEmpty }

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


    /// Adds the address; returns an error text on failure.
    func start(_ name: String, now: UInt64) -> String? {
        guard let ip = definitions[name] else { return "no definition for \(name)" }
        guard let ifname = ip.interface(on: nodeName) else { return "no interface configured for node \(nodeName)" }
        let st = Interfaces.state(ifname)
        guard st.exists else { return "interface \(ifname) does not exist" }
        guard st.up else { return "interface \(ifname) is down" }
        do {
            try netlink.add(ip.prefix, interface: ifname)
        } catch {
            return "\(error)"
        }
        log.info("address-added resource=\(name) address=\(ip.prefix) interface=\(ifname)")
        active[name] = Active(ip: ip, interface: ifname, nextMonitor: now + ip.monitorIntervalMs,
                              nextRefresh: ip.refreshIntervalMs > 0 ? now + ip.refreshIntervalMs : nil)
        nextMonitorDue = min(nextMonitorDue, now + min(ip.monitorIntervalMs, ip.refreshIntervalMs > 0 ? ip.refreshIntervalMs : UInt64.max))
        scheduleAnnouncements(name, now: now)
        return nil
    }

    func stop(_ name: String) {
        announcements.removeAll { $0.name == name }
        guard let a = active.removeValue(forKey: name) else {
            // Not ours as far as we know; make sure anyway (e.g. after a failed start), but never
            // delete an address someone else configured.
            if let ip = definitions[name], let ifname = ip.interface(on: nodeName) {
                do {
                    try netlink.removeIfOurs(ip.prefix, interface: ifname)
                } catch {
                    log.warning("stop of \(name): \(error)")
                }
            }
            return
        }
        do {
            try netlink.remove(a.ip.prefix, interface: a.interface)
            log.info("address-removed resource=\(name) address=\(a.ip.prefix) interface=\(a.interface)")
        } catch {
            log.error("cannot remove \(a.ip.prefix) from \(a.interface): \(error)")
        }
    }

    func stopAll() {
        for name in active.keys.sorted() { stop(name) }
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
        var present: Set<IPAddress>?
        var dumpFailed = false
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
            guard a.nextMonitor <= (anyDue ? now + a.ip.monitorIntervalMs / 2 : now) else {
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
            // A failed dump says nothing about the addresses: the check waits for the next round
            // (read as "none present", it used to fail over every address of the node).
            if present == nil && !dumpFailed {
                do {
                    present = Set(try netlink.list().map(\.address))
                } catch {
                    dumpFailed = true
                    log.warning("address dump failed: \(error); the address check waits for the next round")
                }
            }
            if let present, !present.contains(a.ip.prefix.address) {
                failed.append((name, "address \(a.ip.prefix.address) vanished from \(a.interface)", true))
            }
        }
        nextMonitorDue = next
    }

    /// An address could not be added: if its interface is down, watch for it to come back.
    func markStartFailed(_ name: String, now: UInt64) {
        guard let ip = definitions[name], let ifname = ip.interface(on: nodeName) else { return }
        let st = Interfaces.state(ifname)
        if !st.exists || !st.up { failures[name] = .interfaceDown(ifname) }
    }
}
