import Glibc
import CVigilSys
import VigilCore

/// Floating addresses through rtnetlink (RTM_NEWADDR / RTM_DELADDR / RTM_GETADDR), no `ip` involved.
///
/// Every address Vigil adds carries `IFA_PROTO = 86` ('V') and, for IPv4, the label
/// `<ifname>:vigil` (when it fits in 15 characters), so `ip addr` shows whose it is and a
/// restarted clusterd finds the addresses it left behind.
public final class AddressManager {
    public static let proto: UInt8 = 86
    private let fd: Int32
    private var seq: UInt32 = 1

    public struct Found: Equatable, Sendable {
        public var address: IPAddress
        public var prefixLength: Int
        public var ifindex: Int32
        public var proto: UInt8
        public var label: String?
    }

    public init() throws {
        fd = try openRouteSocket(groups: 0, nonBlocking: false, what: "netlink")
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    public static func ifindex(_ name: String) -> Int32? {
        let i = if_nametoindex(name)
        return i == 0 ? nil : Int32(i)
    }

    public func add(_ prefix: IPPrefix, interface: String) throws {
        guard let idx = Self.ifindex(interface) else { throw SystemError("interface \(interface)", errno: ENODEV) }
        var attrs = ByteBuffer()
        attrs.attr(UInt16(IFA_LOCAL), prefix.address.bytes)
        attrs.attr(UInt16(IFA_ADDRESS), prefix.address.bytes)
        if prefix.address.family == .v4 {
            let label = "\(interface):vigil"
            if label.utf8.count <= 15 { attrs.attr(UInt16(IFA_LABEL), Array(label.utf8) + [0]) }
        }
        // No duplicate address detection: the coordinator already guarantees uniqueness, and
        // DAD would keep an IPv6 address unusable for a second after takeover.
        attrs.attr(UInt16(IFA_FLAGS), le32(UInt32(IFA_F_NODAD)))
        attrs.attr(11 /* IFA_PROTO */, [Self.proto])
        // Never replace: an address configured by someone else (a static host address) must
        // not become ours, or a later stop would delete it. One that is already ours (a
        // restarted clusterd, a repeated start) is fine as it is.
        do {
            try request(type: UInt16(RTM_NEWADDR), flags: UInt16(NLM_F_CREATE | NLM_F_EXCL), prefix: prefix, ifindex: idx, attrs: attrs.bytes, what: "add \(prefix) on \(interface)")
        } catch let e as SystemError where e.errno == EEXIST {
            guard try proto(of: prefix.address, ifindex: idx) == Self.proto else {
                throw SystemError("add \(prefix) on \(interface): the address is already configured on this machine, not by Vigil (remove it, or remove the resource)", errno: EEXIST)
            }
        }
    }

    /// The `IFA_PROTO` of `address` on interface `ifindex` (0: none given), nil if it is not there.
    public func proto(of address: IPAddress, ifindex: Int32) throws -> UInt8? {
        try list().first { $0.address == address && $0.ifindex == ifindex }?.proto
    }

    /// Removes the address only if it is Vigil's (`IFA_PROTO` 86) or absent: for paths that do
    /// not know whether this node added it (a stop after a failed start).
    public func removeIfOurs(_ prefix: IPPrefix, interface: String) throws {
        guard let idx = Self.ifindex(interface) else { return }
        guard let p = try proto(of: prefix.address, ifindex: idx) else { return }
        guard p == Self.proto else {
            throw SystemError("remove \(prefix) from \(interface): the address is not Vigil's; left in place", errno: EPERM)
        }
        try remove(prefix, interface: interface)
    }

    /// Removes an address; an address that is already gone is not an error.
    public func remove(_ prefix: IPPrefix, interface: String) throws {
        guard let idx = Self.ifindex(interface) else { return }
        var attrs = ByteBuffer()
        attrs.attr(UInt16(IFA_LOCAL), prefix.address.bytes)
        attrs.attr(UInt16(IFA_ADDRESS), prefix.address.bytes)
        do {
            try request(type: UInt16(RTM_DELADDR), flags: 0, prefix: prefix, ifindex: idx, attrs: attrs.bytes, what: "remove \(prefix) from \(interface)")
        } catch let e as SystemError where e.errno == EADDRNOTAVAIL || e.errno == ENODEV || e.errno == ENOENT {
            return
        }
    }

    /// All addresses on this machine (or namespace).
    /// Every address of the namespace. A dump the kernel marks interrupted (`NLM_F_DUMP_INTR`:
    /// addresses changed while it ran) is repeated, up to three times; messages of another
    /// sequence number (a late acknowledgement of an earlier request) are skipped.
    public func list() throws -> [Found] {
        for _ in 0..<3 {
            let s = nextSeq()
            var msg = ByteBuffer()
            let ifa = ifaddrmsgBytes(family: UInt8(AF_UNSPEC), prefixLength: 0, ifindex: 0)
            msg.header(len: UInt32(16 + ifa.count), type: UInt16(RTM_GETADDR), flags: UInt16(NLM_F_REQUEST | NLM_F_DUMP), seq: s)
            msg.bytes += ifa
            try sendRaw(msg.bytes, what: "list addresses")
            var found: [Found] = []
            var interrupted = false
            var buf = [UInt8](repeating: 0, count: 65536)
            receiving: while true {
                let n = buf.withUnsafeMutableBytes { raw in retrying { recv(fd, raw.baseAddress, raw.count, 0) } }
                guard n > 0 else { throw SystemError("netlink receive (list addresses)") }
                let chunk = Self.parseDump(buf[0..<n], seq: s)
                found += chunk.found
                interrupted = interrupted || chunk.interrupted
                if let err = chunk.error { throw SystemError("list addresses", errno: err) }
                if chunk.done { break receiving }
            }
            if !interrupted { return found }
        }
        throw SystemError("list addresses: interrupted three times in a row", errno: EINTR)
    }

    /// One received buffer of an address dump: the addresses in it, whether it ended the dump
    /// (`NLMSG_DONE`), an error the kernel reported for it, and whether any part was marked
    /// interrupted. Only messages with sequence number `seq` count. Pure, for the tests.
    public static func parseDump(_ buf: ArraySlice<UInt8>, seq: UInt32) -> (found: [Found], done: Bool, error: Int32?, interrupted: Bool) {
        parseMessages(buf, seq: seq, type: UInt16(RTM_NEWADDR))
    }

    /// The addresses removed in one buffer of address notifications (`RTM_DELADDR`, any
    /// sequence number: a notification carries the number of whatever request caused it).
    public static func parseRemovals(_ buf: ArraySlice<UInt8>) -> [Found] {
        parseMessages(buf, seq: nil, type: UInt16(RTM_DELADDR)).found
    }

    static func parseMessages(_ buf: ArraySlice<UInt8>, seq: UInt32?, type wanted: UInt16) -> (found: [Found], done: Bool, error: Int32?, interrupted: Bool) {
        let b = Array(buf)
        let n = b.count
        var found: [Found] = []
        var interrupted = false
        var off = 0
        while off + 16 <= n {
            let len = Int(rd32(b, off))
            let type = rd16(b, off + 4)
            let flags = rd16(b, off + 6)
            guard len >= 16, off + len <= n else { break }
            defer { off += (len + 3) & ~3 }
            if let seq, rd32(b, off + 8) != seq { continue }
            if flags & UInt16(NLM_F_DUMP_INTR) != 0 { interrupted = true }
            if type == UInt16(NLMSG_DONE) { return (found, true, nil, interrupted) }
            if type == UInt16(NLMSG_ERROR) {
                // (0 &- : the kernel never sends Int32.min, but a negation of it would trap.)
                let err = off + 20 <= n ? 0 &- Int32(bitPattern: rd32(b, off + 16)) : EPROTO
                if err != 0 { return (found, true, err, interrupted) }
                continue
            }
            guard type == wanted, len >= 24 else { continue }
            let fam = b[off + 16]
            let plen = Int(b[off + 17])
            let idx = Int32(bitPattern: rd32(b, off + 20))
            var a = off + 24
            var local: [UInt8]?
            var address: [UInt8]?
            var proto: UInt8 = 0
            var label: String?
            while a + 4 <= off + len {
                let alen = Int(rd16(b, a))
                let atype = rd16(b, a + 2)
                guard alen >= 4, a + alen <= off + len else { break }
                let data = Array(b[(a + 4)..<(a + alen)])
                switch atype {
                case UInt16(IFA_LOCAL): local = data
                case UInt16(IFA_ADDRESS): address = data
                case UInt16(IFA_LABEL): label = String(decoding: data.prefix { $0 != 0 }, as: UTF8.self)
                case 11: proto = data.first ?? 0
                default: break
                }
                a += (alen + 3) & ~3
            }
            let family: IPAddress.Family = fam == UInt8(AF_INET) ? .v4 : .v6
            if let bytes = local ?? address, let ip = IPAddress(family: family, bytes: bytes) {
                found.append(Found(address: ip, prefixLength: plen, ifindex: idx, proto: proto, label: label))
            }
        }
        return (found, false, nil, interrupted)
    }

    // MARK: internals

    private func nextSeq() -> UInt32 {
        seq &+= 1
        return seq
    }

    private func ifaddrmsgBytes(family: UInt8, prefixLength: UInt8, ifindex: Int32) -> [UInt8] {
        // struct ifaddrmsg { u8 family; u8 prefixlen; u8 flags; u8 scope; u32 index; }
        [family, prefixLength, 0, 0] + le32(UInt32(bitPattern: ifindex))
    }

    private func request(type: UInt16, flags: UInt16, prefix: IPPrefix, ifindex: Int32, attrs: [UInt8], what: String) throws {
        let fam = UInt8(prefix.address.family == .v4 ? AF_INET : AF_INET6)
        let body = ifaddrmsgBytes(family: fam, prefixLength: UInt8(prefix.length), ifindex: ifindex) + attrs
        var msg = ByteBuffer()
        let s = nextSeq()
        msg.header(len: UInt32(16 + body.count), type: type, flags: UInt16(NLM_F_REQUEST | NLM_F_ACK) | flags, seq: s)
        msg.bytes += body
        try sendRaw(msg.bytes, what: what)
        var buf = [UInt8](repeating: 0, count: 8192)
        while true {
            let n = buf.withUnsafeMutableBytes { raw in retrying { recv(fd, raw.baseAddress, raw.count, 0) } }
            guard n >= 16 else { throw SystemError("netlink receive (\(what))") }
            var off = 0
            while off + 16 <= n {
                let len = Int(rd32(buf, off))
                let t = rd16(buf, off + 4)
                let rs = rd32(buf, off + 8)
                guard len >= 16 else { break }
                if t == UInt16(NLMSG_ERROR) && rs == s && off + 20 <= n {
                    let err = -Int32(bitPattern: rd32(buf, off + 16))
                    if err == 0 { return }
                    throw SystemError(what, errno: err)
                }
                off += (len + 3) & ~3
            }
        }
    }

    private func sendRaw(_ bytes: [UInt8], what: String) throws {
        var sa = sockaddr_nl()
        sa.nl_family = sa_family_t(AF_NETLINK)
        let n = bytes.withUnsafeBytes { raw in
            withUnsafePointer(to: &sa) { sp in
                sp.withMemoryRebound(to: sockaddr.self, capacity: 1) { sap in
                    retrying { sendto(fd, raw.baseAddress, raw.count, 0, sap, socklen_t(MemoryLayout<sockaddr_nl>.size)) }
                }
            }
        }
        guard n == bytes.count else { throw SystemError("netlink send (\(what))") }
    }
}

/// Netlink messages are in host byte order (little endian on the machines we run on).
struct ByteBuffer {
    var bytes: [UInt8] = []
    mutating func header(len: UInt32, type: UInt16, flags: UInt16, seq: UInt32) {
        bytes += le32(len) + le16(type) + le16(flags) + le32(seq) + le32(0)
    }
    mutating func attr(_ type: UInt16, _ data: [UInt8]) {
        let len = 4 + data.count
        bytes += le16(UInt16(len)) + le16(type) + data
        while bytes.count % 4 != 0 { bytes.append(0) }
    }
}

func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * UInt32($0))) & 0xFF) } }
func rd16(_ b: [UInt8], _ o: Int) -> UInt16 { UInt16(b[o]) | UInt16(b[o + 1]) << 8 }
func rd32(_ b: [UInt8], _ o: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(b[o + $1]) << (8 * UInt32($1)) } }

/// Interface state and hardware address, through ioctl on a datagram socket.
public enum Interfaces {
    public struct State: Equatable, Sendable {
        public var exists: Bool
        public var up: Bool
        public var running: Bool
    }

    /// One datagram socket for the life of the process, only ever used for these ioctls (each
    /// call brings its own `ifreq`, so threads may share it): the monitor asks about interfaces
    /// every second, and a socket opened and closed per question costs three system calls.
    private static let querySocket: Int32 = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)

    private static func withIfreq<T>(_ name: String, _ body: (Int32, inout ifreq) -> T) -> T? {
        let s = querySocket
        guard s >= 0 else { return nil }
        var ifr = ifreq()
        let nameBytes = Array(name.utf8.prefix(15))
        withUnsafeMutableBytes(of: &ifr.ifr_ifrn.ifrn_name) { raw in
            for (i, b) in nameBytes.enumerated() { raw[i] = b }
        }
        return body(s, &ifr)
    }

    public static func state(_ name: String) -> State {
        let r: State? = withIfreq(name) { s, ifr in
            guard vigil_ioctl_ifreq(s, vigil_SIOCGIFFLAGS(), &ifr) == 0 else { return State(exists: false, up: false, running: false) }
            let flags = Int32(ifr.ifr_ifru.ifru_flags)
            return State(exists: true, up: flags & Int32(IFF_UP) != 0, running: flags & Int32(IFF_RUNNING) != 0)
        }
        return r ?? State(exists: false, up: false, running: false)
    }

    public static func hardwareAddress(_ name: String) -> [UInt8]? {
        let r: [UInt8]?? = withIfreq(name) { s, ifr in
            guard vigil_ioctl_ifreq(s, vigil_SIOCGIFHWADDR(), &ifr) == 0 else { return nil }
            return withUnsafeBytes(of: ifr.ifr_ifru.ifru_hwaddr.sa_data) { Array($0.prefix(6)) }
        }
        return r ?? nil
    }
}

extension Interfaces {
    /// The name of an interface index, or nil when the index is unknown.
    public static func name(ofIndex index: Int32) -> String? {
        var buf = [CChar](repeating: 0, count: 17)
        guard buf.withUnsafeMutableBufferPointer({ vigil_if_indextoname(UInt32(bitPattern: index), $0.baseAddress) != 0 }) else { return nil }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Address notifications from the kernel (rtnetlink's IPv4 and IPv6 address groups): an address
/// removed behind clusterd's back is known the moment it happens, without dumping every address
/// of the machine once a second. A notification lost to a full socket buffer (`ENOBUFS`) is
/// reported as `overflowed`, and the caller then checks with a dump.
public final class AddressEvents {
    public let fd: Int32

    public init() throws {
        fd = try openRouteSocket(groups: UInt32(RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR), nonBlocking: true, what: "netlink (address events)")
        // A takeover of a thousand addresses sends a thousand notifications at once: room for
        // them (SO_RCVBUFFORCE passes the system's limit, as root), so none is lost.
        var size: Int32 = 4 << 20
        if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    deinit { close(fd) }

    /// Reads what is waiting (at most `limit` buffers per call: the loop's other work goes on).
    public func read(limit: Int = 256) -> (removed: [AddressManager.Found], overflowed: Bool) {
        var removed: [AddressManager.Found] = []
        var overflowed = false
        var buf = [UInt8](repeating: 0, count: 16384)
        for _ in 0..<limit {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                removed += AddressManager.parseRemovals(buf[0..<n])
                continue
            }
            if n < 0 && errno == ENOBUFS {
                overflowed = true
                continue
            }
            break
        }
        return (removed, overflowed)
    }
}

/// A bound rtnetlink socket (close-on-exec), subscribed to `groups`.
func openRouteSocket(groups: UInt32, nonBlocking: Bool, what: String) throws -> Int32 {
    let fd = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0), NETLINK_ROUTE)
    guard fd >= 0 else { throw SystemError("\(what) socket") }
    var sa = sockaddr_nl()
    sa.nl_family = sa_family_t(AF_NETLINK)
    sa.nl_groups = groups
    let rc = withUnsafePointer(to: &sa) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_nl>.size)) }
    }
    guard rc == 0 else {
        let e = errno
        close(fd)
        throw SystemError("\(what) bind", errno: e)
    }
    return fd
}
