import CVigilSys
import Glibc
import VigilCore

/// A non-blocking UDP socket bound to one node address of one heartbeat link.
public final class UDPSocket {
    public let fd: Int32
    public let family: IPAddress.Family

    public init(bind address: IPAddress, port: UInt16) throws {
        family = address.family
        let af = address.family == .v4 ? AF_INET : AF_INET6
        fd = socket(af, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        // Heartbeats are network control traffic: DSCP CS6, and a larger receive buffer.
        var tos: Int32 = 0xC0
        if af == AF_INET {
            setsockopt(fd, Int32(IPPROTO_IP), IP_TOS, &tos, socklen_t(MemoryLayout<Int32>.size))
        } else {
            setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_TCLASS, &tos, socklen_t(MemoryLayout<Int32>.size))
        }
        var rcv: Int32 = 1 << 20
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, socklen_t(MemoryLayout<Int32>.size))
        let rc = withSockaddr(address, port: port) { sa, len in Glibc.bind(fd, sa, len) }
        guard rc == 0 else {
            let e = errno
            close(fd)
            throw SystemError("bind \(address) port \(port)", errno: e)
        }
    }

    deinit { close(fd) }

    /// Sends one datagram; errors (unreachable peer, link down) are returned, not thrown.
    @discardableResult
    public func send(_ bytes: [UInt8], to address: IPAddress, port: UInt16) -> Int32 {
        let n = bytes.withUnsafeBytes { raw in
            withSockaddr(address, port: port) { sa, len in
                retrying { sendto(fd, raw.baseAddress, raw.count, Int32(MSG_DONTWAIT), sa, len) }
            }
        }
        return n < 0 ? errno : 0
    }
}

func sockaddrToAddress(_ storage: inout sockaddr_storage) -> IPAddress? {
    if storage.ss_family == UInt16(AF_INET) {
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                IPAddress(family: .v4, bytes: withUnsafeBytes(of: sin.pointee.sin_addr) { Array($0) })
            }
        }
    } else if storage.ss_family == UInt16(AF_INET6) {
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin in
                IPAddress(family: .v6, bytes: withUnsafeBytes(of: sin.pointee.sin6_addr) { Array($0) })
            }
        }
    }
    return nil
}

func withSockaddr<T>(_ address: IPAddress, port: UInt16, scope: UInt32 = 0, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
    if address.family == .v4 {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        withUnsafeMutableBytes(of: &sin.sin_addr) { $0.copyBytes(from: address.bytes) }
        return withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    } else {
        var sin6 = sockaddr_in6()
        sin6.sin6_family = sa_family_t(AF_INET6)
        sin6.sin6_port = port.bigEndian
        sin6.sin6_scope_id = scope
        withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyBytes(from: address.bytes) }
        return withUnsafePointer(to: &sin6) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        }
    }
}

/// Datagrams read in batches with one recvmmsg(2) call: a batch smaller than asked for means
/// the socket has nothing more waiting, so a round needs no extra call that fails with EAGAIN.
public final class DatagramBatch {
    /// The largest datagram kept; a longer one is reported as cut.
    public static let slotSize = 65_536
    public let capacity: Int
    private let buffer: UnsafeMutableRawPointer
    private var lengths: [Int32]
    private var sources: [sockaddr_storage]
    public private(set) var count = 0

    public init(capacity: Int = 8) {
        self.capacity = min(max(1, capacity), Int(VIGIL_RECV_BATCH_MAX))
        buffer = UnsafeMutableRawPointer.allocate(byteCount: self.capacity * Self.slotSize, alignment: 16)
        lengths = Array(repeating: 0, count: self.capacity)
        sources = Array(repeating: sockaddr_storage(), count: self.capacity)
    }

    deinit { buffer.deallocate() }

    /// Reads up to `limit` waiting datagrams of `socket` (at most `capacity`); returns how many
    /// (0: none waiting or an error; the socket stays readable and poll tells again).
    public func receive(from socket: UDPSocket, limit: Int) -> Int {
        let n = UInt32(min(limit, capacity))
        let r = lengths.withUnsafeMutableBufferPointer { lens in
            sources.withUnsafeMutableBufferPointer { src in
                vigil_recv_batch(socket.fd, buffer.assumingMemoryBound(to: UInt8.self), Self.slotSize, n, lens.baseAddress, src.baseAddress)
            }
        }
        count = max(0, Int(r))
        return count
    }

    /// Datagram `i` of the last batch (nil: it was larger than a slot).
    public func datagram(_ i: Int) -> [UInt8]? {
        guard i >= 0, i < count, lengths[i] >= 0 else { return nil }
        return Array(UnsafeRawBufferPointer(start: buffer + i * Self.slotSize, count: Int(lengths[i])))
    }

    /// The source address of datagram `i` of the last batch (for error messages).
    public func source(_ i: Int) -> IPAddress? {
        guard i >= 0, i < count else { return nil }
        return sockaddrToAddress(&sources[i])
    }
}
