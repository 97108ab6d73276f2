import Glibc
import CVigilSys
import VigilCore

/// Tells the segment where an address now lives: gratuitous ARP for IPv4,
/// unsolicited neighbour advertisement (override flag set) for IPv6.
public enum Announcer {
    public static func announce(_ address: IPAddress, interface: String) throws {
        guard let idx = AddressManager.ifindex(interface) else { throw SystemError("announce on \(interface)", errno: ENODEV) }
        guard let mac = Interfaces.hardwareAddress(interface), mac.count == 6 else {
            throw SystemError("hardware address of \(interface)", errno: ENODEV)
        }
        if address.family == .v4 {
            try gratuitousARP(address, mac: mac, ifindex: idx)
        } else {
            try unsolicitedNA(address, mac: mac, ifindex: idx)
        }
    }

    static func gratuitousARP(_ address: IPAddress, mac: [UInt8], ifindex: Int32) throws {
        let ethPArp = UInt16(ETH_P_ARP)
        let s = socket(AF_PACKET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(ethPArp.bigEndian))
        guard s >= 0 else { throw SystemError("packet socket") }
        defer { close(s) }
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

    static func unsolicitedNA(_ address: IPAddress, mac: [UInt8], ifindex: Int32) throws {
        let s = socket(AF_INET6, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(IPPROTO_ICMPV6))
        guard s >= 0 else { throw SystemError("ICMPv6 socket") }
        defer { close(s) }
        var hops: Int32 = 255
        setsockopt(s, Int32(IPPROTO_IPV6), IPV6_MULTICAST_HOPS, &hops, socklen_t(MemoryLayout<Int32>.size))
        setsockopt(s, Int32(IPPROTO_IPV6), IPV6_UNICAST_HOPS, &hops, socklen_t(MemoryLayout<Int32>.size))
        var idx = UInt32(ifindex)
        setsockopt(s, Int32(IPPROTO_IPV6), IPV6_MULTICAST_IF, &idx, socklen_t(MemoryLayout<UInt32>.size))
        // Source: the floating address itself (added without DAD, so usable at once).
        _ = withSockaddr(address, port: 0, scope: 0) { sa, len in bind(s, sa, len) }
        // Type 136, code 0, checksum (kernel fills), flags: Override; target; option 2 (target link-layer address).
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
