#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Glibc

/// Which processes hold a Unix socket bound to an abstract name in this network namespace: for
/// the error when clusterd's IPC name is taken (anyone may bind an abstract name first).
public enum SocketHolders {
    public struct Holder: Equatable, Sendable {
        public var pid: Int32
        public var uid: UInt32
        public var command: String
    }

    /// Socket inodes bound to `@name` in the text of /proc/net/unix (pure, for the tests).
    public static func inodes(abstractName name: String, procNetUnix text: String) -> Set<UInt64> {
        var found: Set<UInt64> = []
        for line in text.split(separator: "\n").dropFirst() {
            // Num RefCount Protocol Flags Type St Inode [Path]
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            // libqb binds the whole sun_path: the name, then NULs, which the kernel shows as '@'.
            guard f.count >= 8, f[7].hasPrefix("@" + name), f[7].dropFirst(1 + name.utf8.count).allSatisfy({ $0 == "@" }),
                  let inode = UInt64(f[6]) else { continue }
            found.insert(inode)
        }
        return found
    }

    public static func find(abstractName name: String) -> [Holder] {
        guard let text = try? String(contentsOfFile: "/proc/net/unix", encoding: .utf8) else { return [] }
        let wanted = Set(inodes(abstractName: name, procNetUnix: text).map { "socket:[\($0)]" })
        guard !wanted.isEmpty, let pids = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        var holders: [Holder] = []
        for p in pids {
            guard let pid = Int32(p), pid != getpid() else { continue }
            guard let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(p)/fd") else { continue }
            let holds = fds.contains { fd in
                (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(p)/fd/\(fd)")).map { wanted.contains($0) } ?? false
            }
            guard holds else { continue }
            let comm = (try? String(contentsOfFile: "/proc/\(p)/comm", encoding: .utf8))?.trimmed() ?? "?"
            var st = stat()
            let uid = stat("/proc/\(p)", &st) == 0 ? st.st_uid : UInt32.max
            holders.append(Holder(pid: pid, uid: uid, command: comm))
        }
        return holders.sorted { $0.pid < $1.pid }
    }
}
