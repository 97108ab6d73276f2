#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An IPv4 or IPv6 address as raw network-order bytes.
public struct IPAddress: Hashable, Sendable, CustomStringConvertible, Codable {
    public enum Family: String, Sendable, Codable { case v4, v6 }
    public let family: Family
    public let bytes: [UInt8]

    public init?(_ text: String) {
        if text.contains(":") {
            var a = in6_addr()
            guard inet_pton(AF_INET6, text, &a) == 1 else { return nil }
            family = .v6
            bytes = withUnsafeBytes(of: &a) { Array($0) }
        } else {
            // inet_pton rejects the short and octal forms inet_aton would accept.
            var a = in_addr()
            guard inet_pton(AF_INET, text, &a) == 1 else { return nil }
            family = .v4
            bytes = withUnsafeBytes(of: &a) { Array($0) }
        }
    }

    public init?(family: Family, bytes: [UInt8]) {
        guard bytes.count == (family == .v4 ? 4 : 16) else { return nil }
        self.family = family
        self.bytes = bytes
    }

    public var description: String {
        var buf = [CChar](repeating: 0, count: 64)
        var copy = bytes
        let af = family == .v4 ? AF_INET : AF_INET6
        let ok = copy.withUnsafeMutableBytes { raw in
            buf.withUnsafeMutableBufferPointer { inet_ntop(af, raw.baseAddress, $0.baseAddress, 64) != nil }
        }
        guard ok else { return "?" }
        let bytes = buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }

    public var isUnspecified: Bool { bytes.allSatisfy { $0 == 0 } }
    public var isMulticast: Bool { family == .v4 ? (bytes[0] & 0xF0) == 0xE0 : bytes[0] == 0xFF }
    public var isLoopback: Bool {
        family == .v4 ? bytes[0] == 127 : bytes == [UInt8](repeating: 0, count: 15) + [1]
    }
}

/// An address with its prefix length, e.g. `198.18.0.100/24` or `fd00:1::100/64`.
public struct IPPrefix: Hashable, Sendable, CustomStringConvertible, Codable {
    public let address: IPAddress
    public let length: Int

    public init(address: IPAddress, length: Int) {
        self.address = address
        self.length = length
    }

    /// Parses `ADDRESS/LEN`. Returns a message naming the problem on failure.
    public static func parse(_ text: String) -> Result<IPPrefix, PrefixParseError> {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return .failure(.init(message: "'\(text)' must be ADDRESS/PREFIX, e.g. 192.0.2.10/24 or 2001:db8::10/64")) }
        guard let addr = IPAddress(String(parts[0])) else {
            return .failure(.init(message: "'\(parts[0])' is not a valid IPv4 or IPv6 address"))
        }
        let maxLen = addr.family == .v4 ? 32 : 128
        guard let len = Int(parts[1]), (1...maxLen).contains(len) else {
            return .failure(.init(message: "prefix length '\(parts[1])' must be 1...\(maxLen)"))
        }
        if addr.isUnspecified || addr.isMulticast || addr.isLoopback {
            return .failure(.init(message: "\(addr) cannot be a floating address (unspecified, multicast or loopback)"))
        }
        return .success(IPPrefix(address: addr, length: len))
    }

    public var description: String { "\(address)/\(length)" }
}

public struct PrefixParseError: Error, Sendable {
    public let message: String
}
