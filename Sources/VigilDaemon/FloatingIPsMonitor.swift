import VigilCore
import VigilSystem

/// Watching what is held: the interfaces every monitor interval, the addresses through the
/// kernel's notifications, a dump as the safety net.
extension FloatingIPs {
    /// Addresses the kernel says were removed: those still held here (not being stopped or
    /// added by us) vanished behind our back.
    func readEvents() {
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
    func checkActive(now: UInt64, failed: inout [(name: String, why: String, transient: Bool)]) {
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
    func verify(_ items: [(name: String, prefix: IPPrefix, interface: String)]) -> Bool {
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
}
