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
    final class BackendBox: @unchecked Sendable {
        let backend: any AddressBackend
        init(_ b: any AddressBackend) { backend = b }
    }

    let nodeName: String
    let box: BackendBox
    var netlink: any AddressBackend { box.backend }
    let log: EventLog
    private(set) var definitions: [String: FloatingIP] = [:]
    var active: [String: Active] = [:]
    var announcements: [Announcement] = []
    /// Long-lived announcement sockets (never one per packet), used on a worker thread so a
    /// takeover of hundreds of addresses never delays the reactor.
    let announcer = Announcer()
    let worker: Worker
    /// Told (on the announcer thread) of each address's first announcement: the journal's.
    var onFirstAnnouncement: (@Sendable (String) -> Void)?
    var failures: [String: FailureKind] = [:]

    let reactor: Reactor
    let netlinkThread: OffLoop
    /// Requests of this round, sent to the netlink thread as one batch when the round ends.
    var queued: [Request] = []
    /// Requests asked for whose result has not come back (queued ones included).
    var inFlight = 0
    /// Addresses whose removal failed: still counted as held (the guardian stays armed).
    var stuck: [String: Active] = [:]
    /// Removals we asked for, by address, with when: their notifications are ours, not a
    /// vanished address (a notification can be read after a new add of the same address).
    var ownRemovals: [IPAddress: [UInt64]] = [:]
    var generations: [String: UInt64] = [:]
    var nextGeneration: UInt64 = 0
    var dumpInFlight = false
    /// Told the results of a batch of adds and removes, in the order they were asked for.
    var onResults: ([Outcome]) -> Void = { _ in }
    /// Told that an address checked by the monitor is no longer configured.
    var onVanished: (_ name: String, _ why: String) -> Void = { _, _ in }

    /// The kernel's address notifications (nil: not available, or not wanted by a test): an
    /// address removed behind our back is noticed when it happens; the dump then runs only as a
    /// safety net, every `fullCheckMs`, or at once after notifications were lost.
    var events: AddressEvents?
    var nextFullCheck: UInt64 = 0
    /// Notifications were lost: the next round dumps and checks every address held.
    var fullCheckWanted = false

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
    /// At start-up in maintenance: the addresses of ours still configured (clusterd stopped
    /// without removing them) are taken as held, each matching a definition on its interface;
    /// any other mark of ours is removed as usual. Returns the names taken.
    func adoptLeftovers(now: UInt64) -> [String] {
        let found: [AddressManager.Found]
        do {
            found = try netlink.list()
        } catch {
            log.error("cannot list addresses at start-up: \(error)")
            return []
        }
        var taken: [String] = []
        for f in found where f.proto == AddressManager.proto {
            let ifname = Interfaces.name(ofIndex: f.ifindex) ?? "?"
            let p = IPPrefix(address: f.address, length: f.prefixLength)
            if let ip = definitions.values.first(where: { $0.prefix == p && $0.interface(on: nodeName) == ifname }), active[ip.name] == nil {
                active[ip.name] = Active(ip: ip, interface: ifname, nextMonitor: now + ip.monitorIntervalMs, nextRefresh: nil)
                nextMonitorDue = min(nextMonitorDue, now + ip.monitorIntervalMs)
                log.info("address-adopted resource=\(ip.name) address=\(p) interface=\(ifname) (left in place during maintenance)")
                taken.append(ip.name)
                continue
            }
            do {
                try netlink.remove(p, interface: ifname)
                log.info("leftover-removed address=\(p) interface=\(ifname) (no definition matches it)")
            } catch {
                log.error("cannot remove leftover address \(p) from \(ifname): \(error)")
            }
        }
        return taken
    }

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
                let (announcer, log, n, journal) = (announcer, log, a.total - a.remaining + 1, onFirstAnnouncement)
                let (name, address, interface, total) = (a.name, a.address, a.interface, a.total)
                worker.submit {
                    // Checked again just before sending: never announce past the lease.
                    guard MonotonicClock.nowMs() < leaseDeadline else { return }
                    do {
                        try announcer.announce(address, interface: interface, fresh: n == 1)
                        let text = "announced resource=\(name) address=\(address) interface=\(interface) \(address.family == .v4 ? "garp" : "unsolicited-na") \(n)/\(total)"
                        log.info(text)
                        if n == 1 { journal?(text) }
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
    var nextMonitorDue: UInt64 = 0

    /// An address could not be added: if its interface is down, watch for it to come back.
    func markStartFailed(_ name: String, now: UInt64) {
        guard let ip = definitions[name], let ifname = ip.interface(on: nodeName) else { return }
        let st = Interfaces.state(ifname)
        if !st.exists || !st.up { failures[name] = .interfaceDown(ifname) }
    }
}
