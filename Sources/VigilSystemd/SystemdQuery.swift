import CSystemd
import Glibc
import VigilCore

/// Blocking questions to systemd for hactl (a command may wait; clusterd never does): the unit
/// files it knows with their state, and one unit's state.
public enum SystemdQuery {
    public struct UnitFile: Sendable, Equatable {
        public var name: String
        /// enabled, enabled-runtime, disabled, static, masked, ...
        public var state: String
    }

    static func open() throws(SystemdBus.BusError) -> OpaquePointer { try SystemdBus.open(nil).0 }

    static func call(_ bus: OpaquePointer, _ path: String, _ iface: String, _ member: String, _ args: [String]) throws(SystemdBus.BusError) -> OpaquePointer {
        var (r, m) = SystemdBus.methodCall(bus, path, iface, member, args)
        var err = sd_bus_error()
        var reply: OpaquePointer?
        if r >= 0 { r = sd_bus_call(bus, m, 5_000_000, &err, &reply) }
        if let m { sd_bus_message_unref(m) }
        defer { sd_bus_error_free(&err) }
        guard r >= 0, let reply else {
            throw SystemdBus.BusError(name: err.name.map { String(cString: $0) } ?? "vigil.CallFailed",
                                      message: err.message.map { String(cString: $0) } ?? "\(member): \(String(cString: strerror(-r)))")
        }
        return reply
    }

    /// Every unit file systemd knows, with its state.
    public static func unitFiles() throws(SystemdBus.BusError) -> [UnitFile] {
        let bus = try open()
        defer { sd_bus_flush_close_unref(bus) }
        let m = try call(bus, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "ListUnitFiles", [])
        defer { sd_bus_message_unref(m) }
        var out: [UnitFile] = []
        guard sd_bus_message_enter_container(m, Int8(UInt8(ascii: "a")), "(ss)") > 0 else { return out }
        while sd_bus_message_enter_container(m, Int8(UInt8(ascii: "r")), "ss") > 0 {
            if let path = SystemdBus.readString(m, type: "s"), let state = SystemdBus.readString(m, type: "s") {
                out.append(UnitFile(name: String(path.split(separator: "/").last ?? ""), state: state))
            }
            sd_bus_message_exit_container(m)
        }
        sd_bus_message_exit_container(m)
        return out
    }

    /// One unit's state (loading it if need be).
    public static func unit(_ name: String) throws(SystemdBus.BusError) -> SystemdUnit.State {
        let bus = try open()
        defer { sd_bus_flush_close_unref(bus) }
        let m = try call(bus, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "LoadUnit", [name])
        defer { sd_bus_message_unref(m) }
        guard let path = SystemdBus.readString(m, type: "o") else { throw SystemdBus.BusError(name: "vigil.BadReply", message: "LoadUnit answered no path") }
        func property(_ p: String) throws(SystemdBus.BusError) -> String {
            let r = try call(bus, path, "org.freedesktop.DBus.Properties", "Get", ["org.freedesktop.systemd1.Unit", p])
            defer { sd_bus_message_unref(r) }
            return SystemdBus.readVariantString(r) ?? ""
        }
        return SystemdUnit.State(load: try property("LoadState"), active: try property("ActiveState"), fileState: try property("UnitFileState"))
    }
}
