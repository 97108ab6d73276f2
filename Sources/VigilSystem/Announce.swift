import Glibc
import CVigilSys
import VigilCore

/// Tells the segment where an address now lives: gratuitous ARP for IPv4,
/// unsolicited neighbour advertisement (override flag set) for IPv6.
///
/// The sockets are opened once and kept for the life of the daemon. Closing a packet socket
/// waits for an RCU grace period in the kernel (`packet_release` → `synchronize_net`), tens of
/// milliseconds on a busy machine: opening and closing one per announcement stalled the event
/// loop as soon as a node held a few dozen addresses. One `AF_PACKET` socket sends on every
/// interface (the interface is chosen per packet by `sll_ifindex`); it is opened with protocol 0
/// so the kernel queues nothing to it. The ICMPv6 socket filters out every incoming message.
/// An instance is used from one thread only (clusterd's announcement worker).
public final class Announcer: @unchecked Sendable {
    private var packetSocket: Int32 = -1
    private var icmp6Socket: Int32 = -1
    /// Hardware address and index per interface name, refreshed when a send fails.
    private var interfaces: [String: (index: Int32, mac: [UInt8])] = [:]
    public private(set) var socketsOpened = 0

    public init() {}

    deinit {
        if packetSocket >= 0 { close(packetSocket) }
        if icmp6Socket >= 0 { close(icmp6Socket) }
    }

    /// `fresh`: look the interface up again (its index or hardware address may have changed,
    /// e.g. a bond failing over with `fail_over_mac=active`); done at the start of every series.
    public func announce(_ address: IPAddress, interface: String, fresh: Bool = false) throws {
        if fresh { interfaces[interface] = nil }
        let iface = try lookup(interface)
        do {
            if address.family == .v4 {
                try gratuitousARP(address, mac: iface.mac, ifindex: iface.index)
            } else {
                try unsolicitedNA(address, mac: iface.mac, ifindex: iface.index)
            }
        } catch {
            // The interface may have been re-created with another index: look it up again next time.
            interfaces[interface] = nil
            throw error
        }
    }

    private func lookup(_ interface: String) throws -> (index: Int32, mac: [UInt8]) {
        if let i = interfaces[interface] { return i }
        guard let idx = AddressManager.ifindex(interface) else { throw SystemError("announce on \(interface)", errno: ENODEV) }
        guard let mac = Interfaces.hardwareAddress(interface), mac.count == 6 else {
            throw SystemError("hardware address of \(interface)", errno: ENODEV)
        }
        interfaces[interface] = (idx, mac)
        return (idx, mac)
    }

    private func packet() throws -> Int32 {
        if packetSocket >= 0 { return packetSocket }
        let s = socket(AF_PACKET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard s >= 0 else { throw SystemError("packet socket") }
        socketsOpened += 1
        packetSocket = s
        return s
    }

    private func icmp6() throws -> Int32 {
        if icmp6Socket >= 0 { return icmp6Socket }
        let s = socket(AF_INET6, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), Int32(IPPROTO_ICMPV6))
        guard s >= 0 else { throw SystemError("ICMPv6 socket") }
        var hops: Int32 = 255
        setsockopt(s, Int32(IPPROTO_IPV6), IPV6_MULTICAST_HOPS, &hops, socklen_t(MemoryLayout<Int32>.size))
        setsockopt(s, Int32(IPPROTO_IPV6), IPV6_UNICAST_HOPS, &hops, socklen_t(MemoryLayout<Int32>.size))
        // ICMP6_FILTER (1) at level IPPROTO_ICMPV6: every bit set blocks every type from the queue.
        var filter = [UInt32](repeating: 0xFFFF_FFFF, count: 8)
        _ = filter.withUnsafeMutableBytes { setsockopt(s, Int32(IPPROTO_ICMPV6), 1, $0.baseAddress, socklen_t($0.count)) }
        socketsOpened += 1
        icmp6Socket = s
        return s
    }

    private func gratuitousARP(_ address: IPAddress, mac: [UInt8], ifindex: Int32) throws {
        let s = try packet()
        let ethPArp = UInt16(ETH_P_ARP)
        // ARP request with sender and target protocol address both the floating address.
        var pkt: [UInt8] = [0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]
        pkt += mac + address.bytes + [0, 0, 0, 0, 0, 0] + address.bytes
        var sll = sockaddr_ll()
        sll.sll_family = UInt16(AF_PACKET)
        sll.sll_protocol = ethPArp.bigEndian
        sll.sll_ifindex = ifindex
        sll.sll_halen = 6
        withUnsafeMutableBytes(of: &sll.sll_addr) { raw in for i in 0..<6 { raw[i] = 0xFF } }
        let n = pkt.withUnsafeBytes { raw in
            withUnsafePointer(to: &sll) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(s, raw.baseAddress, raw.count, 0, $0, socklen_t(MemoryLayout<sockaddr_ll>.size))
                }
            }
        }
        guard n == pkt.count else { throw SystemError("send gratuitous ARP") }
    }

    private func unsolicitedNA(_ address: IPAddress, mac: [UInt8], ifindex: Int32) throws {
        let s = try icmp6()
        // Type 136, code 0, checksum (kernel fills), flags: Override; target; option 2 (target link-layer address).
        // The source is chosen by the kernel from the interface (RFC 4861 only asks for an address of it).
        var pkt: [UInt8] = [136, 0, 0, 0, 0x20, 0, 0, 0]
        pkt += address.bytes
        pkt += [2, 1] + mac
        guard let allNodes = IPAddress("ff02::1") else { return }
        let n = pkt.withUnsafeBytes { raw in
            withSockaddr(allNodes, port: 0, scope: UInt32(ifindex)) { sa, len in
                sendto(s, raw.baseAddress, raw.count, 0, sa, len)
            }
        }
        guard n == pkt.count else { throw SystemError("send unsolicited neighbour advertisement") }
    }
}
