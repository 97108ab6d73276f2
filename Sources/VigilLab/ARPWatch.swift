import Foundation
import Glibc

/// Counts dual owners from outside, as a client on the segment sees them: asks "who has
/// ADDRESS?" every few milliseconds and flags every request answered by two different MACs.
/// Runs inside the client namespace (`vigil-lab arp-watch`), with a packet socket of its own.
public enum ARPWatch {
    public struct Result: Sendable, Equatable, CustomStringConvertible {
        public var requests = 0
        public var answered = 0
        public var dual = 0
        public var macs: Set<String> = []
        public var description: String {
            "arp_requests=\(requests) answered=\(answered) dual=\(dual) macs=\(macs.sorted().joined(separator: ","))"
        }
        /// Parses the line `description` prints.
        public init?(line: String) {
            var fields: [String: String] = [:]
            for part in line.split(separator: " ") {
                let kv = part.split(separator: "=", maxSplits: 1)
                if kv.count == 2 { fields[String(kv[0])] = String(kv[1]) }
            }
            guard let r = fields["arp_requests"].flatMap(Int.init), let a = fields["answered"].flatMap(Int.init),
                  let d = fields["dual"].flatMap(Int.init) else { return nil }
            requests = r
            answered = a
            dual = d
            macs = Set((fields["macs"] ?? "").split(separator: ",").map(String.init))
        }
        public init() {}
    }

    public static func run(interface: String, address: String, seconds: Double, intervalMs: Int) throws -> Result {
        guard let target = ipv4(address) else { throw LabError("arp-watch: '\(address)' is not an IPv4 address") }
        let ifindex = Int32(if_nametoindex(interface))
        guard ifindex > 0 else { throw LabError("arp-watch: no interface \(interface)") }
        let macText = (try? String(contentsOfFile: "/sys/class/net/\(interface)/address", encoding: .utf8)) ?? ""
        let mac = macText.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ":").compactMap { UInt8($0, radix: 16) }
        guard mac.count == 6 else { throw LabError("arp-watch: no MAC address on \(interface)") }
        let myIP = ownIPv4(interface) ?? [0, 0, 0, 0]
        let proto = UInt16(0x0806).bigEndian  // ETH_P_ARP
        let s = socket(AF_PACKET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(proto))
        guard s >= 0 else { throw LabError("arp-watch: packet socket: errno \(errno)") }
        defer { close(s) }
        // struct sockaddr_ll (linux/if_packet.h), built by hand: family, protocol (network
        // order), ifindex, hatype, pkttype, halen, addr[8].
        func sockaddrLL(broadcast: Bool) -> [UInt8] {
            var b = [UInt8](repeating: 0, count: 20)
            withUnsafeBytes(of: UInt16(AF_PACKET)) { for (i, x) in $0.enumerated() { b[i] = x } }
            withUnsafeBytes(of: proto) { for (i, x) in $0.enumerated() { b[2 + i] = x } }
            withUnsafeBytes(of: ifindex) { for (i, x) in $0.enumerated() { b[4 + i] = x } }
            if broadcast {
                b[11] = 6
                for i in 12..<18 { b[i] = 0xFF }
            }
            return b
        }
        let local = sockaddrLL(broadcast: false)
        let bound = local.withUnsafeBytes { raw in
            bind(s, raw.baseAddress?.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
        }
        guard bound == 0 else { throw LabError("arp-watch: bind: errno \(errno)") }
        let dest = sockaddrLL(broadcast: true)
        // ARP request: who has target? tell us.
        let request: [UInt8] = [0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01] + mac + myIP + [0, 0, 0, 0, 0, 0] + target
        var result = Result()
        var buf = [UInt8](repeating: 0, count: 256)
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            _ = request.withUnsafeBytes { raw in
                dest.withUnsafeBytes { d in
                    sendto(s, raw.baseAddress, raw.count, 0, d.baseAddress?.assumingMemoryBound(to: sockaddr.self), socklen_t(d.count))
                }
            }
            result.requests += 1
            var answers: Set<String> = []
            let windowEnd = Date().addingTimeInterval(Double(intervalMs) / 1000)
            while true {
                let left = windowEnd.timeIntervalSinceNow
                if left <= 0 { break }
                var pfd = pollfd(fd: s, events: Int16(POLLIN), revents: 0)
                guard poll(&pfd, 1, Int32(max(1, left * 1000))) > 0 else { continue }
                let n = buf.withUnsafeMutableBytes { recv(s, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                // A reply (op 2) whose sender protocol address is the watched address.
                guard n >= 28, buf[6] == 0, buf[7] == 2, Array(buf[14..<18]) == target else { continue }
                answers.insert(buf[8..<14].map { String(format: "%02x", $0) }.joined(separator: ":"))
            }
            if !answers.isEmpty { result.answered += 1 }
            if answers.count > 1 { result.dual += 1 }
            result.macs.formUnion(answers)
        }
        return result
    }

    static func ipv4(_ text: String) -> [UInt8]? {
        let parts = text.split(separator: ".").compactMap { UInt8($0) }
        return parts.count == 4 ? parts : nil
    }

    static func ownIPv4(_ interface: String) -> [UInt8]? {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return nil }
        defer { freeifaddrs(list) }
        var cur: UnsafeMutablePointer<ifaddrs>? = first
        while let p = cur {
            defer { cur = p.pointee.ifa_next }
            guard let sa = p.pointee.ifa_addr, sa.pointee.sa_family == UInt16(AF_INET),
                  String(cString: p.pointee.ifa_name) == interface else { continue }
            let addr = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr }
            return withUnsafeBytes(of: addr) { Array($0) }
        }
        return nil
    }
}

/// An ARP watcher running in the lab's client namespace (a `vigil-lab arp-watch` process).
public struct ARPWatcher {
    let process: Process
    let outPath: String

    /// Starts one for `address`, asking every 10 ms for `seconds`; its output goes to `name` in
    /// the lab's work directory.
    public init(lab: Lab, address: String, seconds: Int, name: String) throws {
        outPath = lab.workDir + "/" + name
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        guard let fh = FileHandle(forWritingAtPath: outPath) else { throw LabError("cannot open \(outPath)") }
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        process.arguments = ["netns", "exec", lab.clientNS, lab.options.binDir + "/vigil-lab", "arp-watch",
                             "--interface", "eth0", "--address", address, "--seconds", "\(seconds)", "--interval-ms", "10"]
        process.standardOutput = fh
        process.standardError = fh
        try process.run()
    }

    /// Waits for it to end and returns its result line.
    public func result() throws -> ARPWatch.Result {
        process.waitUntilExit()
        let text = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        guard let r = text.split(separator: "\n").compactMap({ ARPWatch.Result(line: String($0)) }).last else {
            throw LabError("arp-watch printed no result: \(text)")
        }
        return r
    }
}
