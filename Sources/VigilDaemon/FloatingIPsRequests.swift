import VigilCore
import VigilSystem

/// Adds and removes, carried out on the netlink thread in the order asked, their results
/// handed back to the loop in one batch (see `FloatingIPs`).
extension FloatingIPs {
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

    func ask(_ name: String, _ prefix: IPPrefix?, _ interface: String, _ kind: Request.Kind, ip: FloatingIP? = nil) {
        nextGeneration += 1
        generations[name] = nextGeneration
        if case .remove = kind, let prefix { expectRemoval(prefix.address) }
        queued.append(Request(name: name, prefix: prefix, interface: interface, kind: kind, generation: nextGeneration, ip: ip))
        inFlight += 1
        if queued.count == 1 { reactor.enqueue { [weak self] in self?.flush() } }
    }

    /// Sends this round's requests to the netlink thread as one batch.
    func flush() {
        guard !queued.isEmpty else { return }
        let batch = queued
        queued = []
        let box = self.box
        netlinkThread.run({ () -> [Outcome] in
            batch.map { Outcome(request: $0, error: Self.carryOut($0, box.backend)) }
        }, then: { [weak self] outcomes in self?.finished(outcomes) })
    }

    /// On the netlink thread.
    static func carryOut(_ r: Request, _ nl: any AddressBackend) -> String? {
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
    func finished(_ outcomes: [Outcome]) {
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
    /// At exit: removes every address held, but those in `keep` (maintenance: left in place).
    func stopAll(keep: Set<String> = []) {
        // Results still arriving only settle what is configured: the engine no longer acts.
        onResults = { _ in }
        onVanished = { _, _ in }
        flush()
        netlinkThread.finish()
        for name in active.keys.sorted() {
            if keep.contains(name) {
                log.info("address-left resource=\(name) (maintenance: left in place for the next clusterd)")
                continue
            }
            guard let a = active.removeValue(forKey: name) else { continue }
            do {
                try netlink.remove(a.ip.prefix, interface: a.interface)
                log.info("address-removed resource=\(name) address=\(a.ip.prefix) interface=\(a.interface)")
            } catch {
                log.error("cannot remove \(a.ip.prefix) from \(a.interface): \(error)")
            }
        }
    }

    func expectRemoval(_ a: IPAddress) {
        let now = MonotonicClock.nowMs()
        // Forgotten after 5 s (a removal of an address that was not there sends nothing).
        ownRemovals = ownRemovals.compactMapValues { t in
            let kept = t.filter { now < $0 + 5000 }
            return kept.isEmpty ? nil : kept
        }
        ownRemovals[a, default: []].append(now)
    }

    func takeOwnRemoval(_ a: IPAddress) -> Bool {
        guard var t = ownRemovals[a], !t.isEmpty else { return false }
        t.removeFirst()
        ownRemovals[a] = t.isEmpty ? nil : t
        return true
    }
}
