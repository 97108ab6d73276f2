import CSystemd
import Glibc
import VigilCore
import VigilSystem

/// systemd's D-Bus API (libsystemd's sd-bus, Debian's libsystemd-dev), driven asynchronously from
/// clusterd's reactor: `systemd:UNIT` resources are started and stopped by jobs whose end is the
/// manager's `JobRemoved` signal, and monitored by the unit's `ActiveState`. Nothing here
/// blocks: every call is sent and its reply handled when the bus's descriptor is readable.
///
/// As root it talks to the manager's private socket (`/run/systemd/private`, as systemctl
/// does), else to the system bus. A broken connection fails what is in flight and is opened
/// again by the next request.
public final class SystemdBus {
    public struct BusError: Error, CustomStringConvertible, Sendable {
        public var name: String
        public var message: String
        public var description: String { message.isEmpty ? name : "\(message) (\(name))" }
        public var isNoSuchUnit: Bool { name == "org.freedesktop.systemd1.NoSuchUnit" }
    }

    /// One call's reply handler, kept alive by sd-bus's slot until it is destroyed.
    final class Callback {
        weak var owner: SystemdBus?
        let id: UInt64
        init(owner: SystemdBus, id: UInt64) {
            self.owner = owner
            self.id = id
        }
    }

    private let reactor: Reactor
    private let explicitAddress: String?
    private var bus: OpaquePointer?
    private var fd: Int32 = -1
    private var nextId: UInt64 = 1
    private var inflight: [UInt64: (OpaquePointer?, BusError?) -> Void] = [:]
    /// Jobs waited for (job path to completion with systemd's result: done, failed, canceled,
    /// timeout, dependency, skipped), and results that came before their waiter (bounded).
    private var jobWaiters: [String: (String) -> Void] = [:]
    private var earlyResults: [String: String] = [:]
    private var signalCallback: Callback?
    public var log: (String) -> Void = { _ in }
    /// A job's result when the connection broke before its end: read the unit's state instead.
    public static let unknownResult = "unknown"

    /// `address`: a D-Bus address (a test's private manager); nil: the private socket as root,
    /// else the system bus.
    public init(reactor: Reactor, address: String? = nil) {
        self.reactor = reactor
        self.explicitAddress = address
    }

    deinit { close() }

    // MARK: requests

    /// The unit's load state, active state and unit file state (enabled, static, disabled, ...).
    public func unitState(_ unit: String, _ done: @escaping (Result<SystemdUnit.State, BusError>) -> Void) {
        call("/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "LoadUnit", [unit]) { [weak self] m, e in
            guard let self else { return }
            guard let m, e == nil, let path = Self.readString(m, type: "o") else { return done(.failure(e ?? BusError(name: "vigil.BadReply", message: "LoadUnit answered no path"))) }
            self.properties(path, ["LoadState", "ActiveState", "UnitFileState"], [:]) { r in
                done(r.map { SystemdUnit.State(load: $0["LoadState"] ?? "", active: $0["ActiveState"] ?? "", fileState: $0["UnitFileState"] ?? "") })
            }
        }
    }

    private func properties(_ path: String, _ names: [String], _ got: [String: String], _ done: @escaping (Result<[String: String], BusError>) -> Void) {
        guard let name = names.first else { return done(.success(got)) }
        call(path, "org.freedesktop.DBus.Properties", "Get", ["org.freedesktop.systemd1.Unit", name]) { [weak self] m, e in
            guard let self else { return }
            guard let m, e == nil else { return done(.failure(e ?? BusError(name: "vigil.BadReply", message: "no reply"))) }
            var next = got
            next[name] = Self.readVariantString(m) ?? ""
            self.properties(path, Array(names.dropFirst()), next, done)
        }
    }

    /// `StartUnit` or `StopUnit` in mode "replace"; `done` gets the job's result once it ended.
    public func job(_ method: String, _ unit: String, _ done: @escaping (Result<String, BusError>) -> Void) {
        call("/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", method, [unit, "replace"]) { [weak self] m, e in
            guard let self else { return }
            guard let m, e == nil, let job = Self.readString(m, type: "o") else { return done(.failure(e ?? BusError(name: "vigil.BadReply", message: "\(method) answered no job"))) }
            if let r = self.earlyResults.removeValue(forKey: job) { return done(.success(r)) }
            self.jobWaiters[job] = { done(.success($0)) }
        }
    }

    /// `daemon-reload` (after a drop-in was written).
    public func reload(_ done: @escaping (BusError?) -> Void) {
        call("/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "Reload", []) { _, e in done(e) }
    }

    /// Runs what is due: replies, signals, and sd-bus's own timeouts (the shell calls it on
    /// its rounds too, for the timeouts).
    public func process() {
        guard let b = bus else { return }
        while true {
            let r = sd_bus_process(b, nil)
            if r < 0 {
                broken("the connection to systemd broke: \(String(cString: strerror(-r)))")
                return
            }
            if r == 0 { break }
        }
        if bus != nil { reactor.modify(fd: fd, events: Int16(truncatingIfNeeded: max(0, sd_bus_get_events(b)))) }
    }

    // MARK: the connection

    private func connect() throws(BusError) -> OpaquePointer {
        if let b = bus { return b }
        let (opened, address) = try Self.open(explicitAddress)
        bus = opened
        fd = sd_bus_get_fd(opened)
        reactor.add(fd: fd, events: Int16(POLLIN)) { [weak self] _ in self?.process() }
        // JobRemoved ends every job; Subscribe makes the manager send it.
        let cb = Callback(owner: self, id: 0)
        signalCallback = cb
        var slot: OpaquePointer?
        let ctx = Unmanaged.passRetained(cb).toOpaque()
        // On the system bus only systemd's own signals count (another client could send one);
        // the private socket is a direct connection to systemd, whose messages carry no sender.
        let sender: String? = address == nil ? "org.freedesktop.systemd1" : nil
        if sd_bus_match_signal_async(opened, &slot, sender, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "JobRemoved",
                                     jobRemovedHandler, nil, ctx) >= 0, let slot {
            sd_bus_slot_set_destroy_callback(slot, releaseHandler)
            // The bus keeps the slot (floating) and ours is dropped: freed with the bus.
            sd_bus_slot_set_floating(slot, 1)
            sd_bus_slot_unref(slot)
        } else {
            Unmanaged<Callback>.fromOpaque(ctx).release()
        }
        call("/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "Subscribe", []) { _, _ in }
        return opened
    }

    /// A new connection: to `explicit`, else as root to the manager's private socket, else to
    /// the system bus; with the address used (nil: the system bus).
    static func open(_ explicit: String?) throws(BusError) -> (OpaquePointer, String?) {
        var b: OpaquePointer?
        var r: Int32
        let address = explicit ?? (geteuid() == 0 && access("/run/systemd/private", F_OK) == 0 ? "unix:path=/run/systemd/private" : nil)
        if let address {
            r = sd_bus_new(&b)
            if r >= 0 { r = sd_bus_set_address(b, address) }
            if r >= 0 { r = sd_bus_start(b) }
        } else {
            r = sd_bus_open_system(&b)
        }
        guard r >= 0, let opened = b else {
            if let b { sd_bus_unref(b) }
            throw BusError(name: "vigil.NoSystemd", message: "systemd is not reachable on this node (\(address ?? "system bus")): \(String(cString: strerror(-r)))")
        }
        return (opened, address)
    }

    private func broken(_ why: String) {
        log(why)
        close()
        let waiting = inflight
        inflight = [:]
        for (_, f) in waiting { f(nil, BusError(name: "vigil.Disconnected", message: why)) }
        let jobs = jobWaiters
        jobWaiters = [:]
        earlyResults = [:]
        // A job's end is unknown without the connection: the caller reads the unit's state.
        for (_, f) in jobs { f(SystemdBus.unknownResult) }
    }

    private func close() {
        guard let b = bus else { return }
        reactor.remove(fd: fd)
        bus = nil
        fd = -1
        sd_bus_close_unref(b)  // (no flush: a stuck systemd must not hold clusterd)
    }

    private func call(_ path: String, _ iface: String, _ member: String, _ args: [String], _ done: @escaping (OpaquePointer?, BusError?) -> Void) {
        let b: OpaquePointer
        do { b = try connect() } catch { return done(nil, error) }
        var (r, m) = Self.methodCall(b, path, iface, member, args)
        let id = nextId
        nextId += 1
        let ctx = Unmanaged.passRetained(Callback(owner: self, id: id)).toOpaque()
        var slot: OpaquePointer?
        if r >= 0 { r = sd_bus_call_async(b, &slot, m, replyHandler, ctx, 0) }
        if let m { sd_bus_message_unref(m) }
        guard r >= 0, let slot else {
            Unmanaged<Callback>.fromOpaque(ctx).release()
            return done(nil, BusError(name: "vigil.SendFailed", message: "\(member) not sent: \(String(cString: strerror(-r)))"))
        }
        sd_bus_slot_set_destroy_callback(slot, releaseHandler)
        // The bus keeps the slot until the reply (floating) and ours is dropped: the slot, and
        // with it the callback's box, is freed once the reply was handled.
        sd_bus_slot_set_floating(slot, 1)
        sd_bus_slot_unref(slot)
        inflight[id] = done
        reactor.modify(fd: fd, events: Int16(truncatingIfNeeded: max(0, sd_bus_get_events(b))))
    }

    fileprivate func replied(_ id: UInt64, _ m: OpaquePointer?) {
        guard let done = inflight.removeValue(forKey: id) else { return }
        if let m, sd_bus_message_is_method_error(m, nil) != 0 {
            let e = sd_bus_message_get_error(m)
            let name = e?.pointee.name.map { String(cString: $0) } ?? "?"
            let message = e?.pointee.message.map { String(cString: $0) } ?? ""
            return done(nil, BusError(name: name, message: message))
        }
        done(m, nil)
    }

    fileprivate func jobRemoved(_ m: OpaquePointer?) {
        guard let m else { return }
        var id: UInt32 = 0
        var job: UnsafePointer<CChar>?, unit: UnsafePointer<CChar>?, result: UnsafePointer<CChar>?
        guard sd_bus_message_read_basic(m, Int8(UInt8(ascii: "u")), &id) >= 0,
              sd_bus_message_read_basic(m, Int8(UInt8(ascii: "o")), &job) >= 0,
              sd_bus_message_read_basic(m, Int8(UInt8(ascii: "s")), &unit) >= 0,
              sd_bus_message_read_basic(m, Int8(UInt8(ascii: "s")), &result) >= 0,
              let job, let result else { return }
        let path = String(cString: job), r = String(cString: result)
        if let w = jobWaiters.removeValue(forKey: path) {
            w(r)
        } else {
            // Possibly ours, ahead of StartUnit's reply; bounded (others' jobs end here too).
            if earlyResults.count >= 256, let k = earlyResults.keys.first { earlyResults[k] = nil }
            earlyResults[path] = r
        }
    }

    /// A method call to systemd's manager with string arguments (the caller unrefs it).
    static func methodCall(_ bus: OpaquePointer, _ path: String, _ iface: String, _ member: String, _ args: [String]) -> (Int32, OpaquePointer?) {
        var m: OpaquePointer?
        var r = sd_bus_message_new_method_call(bus, &m, "org.freedesktop.systemd1", path, iface, member)
        for a in args where r >= 0 { r = a.withCString { sd_bus_message_append_basic(m, Int8(UInt8(ascii: "s")), $0) } }
        return (r, m)
    }

    static func readString(_ m: OpaquePointer, type: Character) -> String? {
        var p: UnsafePointer<CChar>?
        guard let t = type.asciiValue, sd_bus_message_read_basic(m, Int8(t), &p) >= 0, let p else { return nil }
        return String(cString: p)
    }

    static func readVariantString(_ m: OpaquePointer) -> String? {
        guard sd_bus_message_enter_container(m, Int8(UInt8(ascii: "v")), "s") > 0 else { return nil }
        defer { sd_bus_message_exit_container(m) }
        return readString(m, type: "s")
    }
}

private let replyHandler: sd_bus_message_handler_t = { m, userdata, _ in
    guard let userdata else { return 0 }
    let cb = Unmanaged<SystemdBus.Callback>.fromOpaque(userdata).takeUnretainedValue()
    cb.owner?.replied(cb.id, m)
    return 0
}

private let jobRemovedHandler: sd_bus_message_handler_t = { m, userdata, _ in
    guard let userdata else { return 0 }
    Unmanaged<SystemdBus.Callback>.fromOpaque(userdata).takeUnretainedValue().owner?.jobRemoved(m)
    return 0
}

private let releaseHandler: sd_bus_destroy_t = { userdata in
    guard let userdata else { return }
    Unmanaged<SystemdBus.Callback>.fromOpaque(userdata).release()
}
