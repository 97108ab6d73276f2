import CVigilSys
import Glibc
import Synchronization
import VigilCore

/// A failed system call: what was attempted and errno, in words.
public struct SystemError: Error, CustomStringConvertible, Sendable {
    public let operation: String
    public let errno: Int32
    public init(_ operation: String, errno: Int32 = Glibc.errno) {
        self.operation = operation
        self.errno = errno
    }
    public var description: String { "\(operation): \(String(cString: strerror(errno)))" }
}

/// Retries a system call interrupted by a signal.
@inline(__always)
func retrying<T: BinaryInteger>(_ body: () -> T) -> T {
    while true {
        let r = body()
        if r == -1 && errno == EINTR { continue }
        return r
    }
}

public enum MonotonicClock {
    /// Milliseconds of CLOCK_MONOTONIC: shared by every process (and network namespace) of a machine.
    public static func nowMs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
    }
}

public enum WallClock {
    /// Added to every reading: clusterd's hidden `--wall-clock-skew-ms` makes a lab node's wall
    /// clock run off as a badly set machine's would (nodes of one kernel share the real one,
    /// and libfaketime's preload empties a Swift program's arguments). 0 everywhere else.
    public static let skewMs = Atomic<Int64>(0)
    public static func nowSeconds() -> UInt64 { nowMs() / 1000 }
    public static func nowMs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let ms = Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000 + skewMs.load(ordering: .relaxed)
        return UInt64(max(0, ms))
    }
}

public enum Files {
    /// `regularOnly`: a link planted at the name is not followed, a FIFO not waited on, and
    /// anything but a regular file refused (files in a state directory others could reach).
    public static func read(_ path: String, limit: Int = 1 << 20, regularOnly: Bool = false) throws -> [UInt8] {
        let fd = retrying { open(path, O_RDONLY | O_CLOEXEC | (regularOnly ? O_NOFOLLOW | O_NONBLOCK : 0)) }
        guard fd >= 0 else { throw SystemError("open \(path)") }
        defer { close(fd) }
        if regularOnly {
            var st = stat()
            guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { throw SystemError("\(path) is not a regular file", errno: EINVAL) }
        }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { raw in retrying { Glibc.read(fd, raw.baseAddress, 65536) } }
            if n < 0 { throw SystemError("read \(path)") }
            if n == 0 { break }
            out.append(contentsOf: buf[0..<n])
            if out.count > limit { throw SystemError("read \(path): larger than \(limit) bytes", errno: EFBIG) }
        }
        return out
    }

    public static func readText(_ path: String) throws -> String {
        String(decoding: try read(path), as: UTF8.self)
    }

    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    /// Writes atomically: a temporary file in the same directory, fsync, rename, fsync of the directory.
    public static func writeAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o600) throws {
        let tmp = path + ".tmp.\(getpid())"
        // Created exclusively and never through a symbolic link: whatever sits at the temporary
        // name (left by a crash, or planted) is removed (unlink removes a link, not its target)
        // and the creation retried once.
        let flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC
        var fd = retrying { open(tmp, flags, mode) }
        if fd < 0 && (errno == EEXIST || errno == ELOOP) {
            unlink(tmp)
            fd = retrying { open(tmp, flags, mode) }
        }
        guard fd >= 0 else { throw SystemError("create \(tmp)") }
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { raw in retrying { write(fd, raw.baseAddress.map { $0 + off }, bytes.count - off) } }
            if n < 0 {
                let e = errno
                close(fd)
                unlink(tmp)
                throw SystemError("write \(tmp)", errno: e)
            }
            off += n
        }
        if fsync(fd) != 0 {
            let e = errno
            close(fd)
            unlink(tmp)
            throw SystemError("fsync \(tmp)", errno: e)
        }
        close(fd)
        if rename(tmp, path) != 0 {
            let e = errno
            unlink(tmp)
            throw SystemError("rename \(tmp) to \(path)", errno: e)
        }
        let dir = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        let dfd = open(dir.isEmpty ? "/" : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            fsync(dfd)
            close(dfd)
        }
    }

    /// Creates a directory (and parents) with mode 0700 if missing.
    public static func ensureDirectory(_ path: String) throws {
        var cur = ""
        for part in path.split(separator: "/") {
            cur += "/" + part
            if mkdir(cur, 0o700) != 0 && errno != EEXIST { throw SystemError("mkdir \(cur)") }
        }
    }

    /// A directory only this user may change: not a symbolic link, owned by the effective user,
    /// not writable by group or others. Returns what is wrong, or nil.
    public static func privateDirectoryProblem(_ path: String) -> String? {
        var st = stat()
        guard lstat(path, &st) == 0 else { return "cannot inspect it: \(String(cString: strerror(errno)))" }
        if st.st_mode & S_IFMT == S_IFLNK { return "it is a symbolic link" }
        guard st.st_mode & S_IFMT == S_IFDIR else { return "it is not a directory" }
        guard st.st_uid == geteuid() else { return "it is owned by uid \(st.st_uid), not by uid \(geteuid()) running clusterd" }
        guard st.st_mode & 0o022 == 0 else { return "it is writable by group or others (mode \(String(st.st_mode & 0o777, radix: 8)))" }
        return nil
    }
}

/// The cluster key: at least 32 bytes, owned by the user running clusterd, not readable by group or others.
public enum KeyFile {
    /// Opens the file once and checks what was opened (fstat on the descriptor): the file read
    /// is the file checked, even if the path is swapped meanwhile. O_NONBLOCK: a FIFO put in its
    /// place cannot hang the start.
    public static func load(_ path: String, configFile: String) throws(ConfigError) -> [UInt8] {
        func fail(_ m: String) -> ConfigError { ConfigError(file: configFile, key: "cluster.key_file", message: m) }
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { throw fail("cannot use key file \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw fail("cannot use key file \(path): \(String(cString: strerror(errno)))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw fail("key file \(path) is not a regular file") }
        if st.st_mode & 0o077 != 0 {
            throw fail("key file \(path) has mode \(String(st.st_mode & 0o777, radix: 8)); it must not be accessible by group or others (chmod 600)")
        }
        if st.st_uid != geteuid() {
            throw fail("key file \(path) is owned by uid \(st.st_uid), not by the user running clusterd (uid \(geteuid()))")
        }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4097)
        while bytes.count <= 4096 {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw fail("cannot read key file \(path): \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            bytes += buf[0..<n]
        }
        if bytes.count > 4096 { throw fail("key file \(path) is larger than 4096 bytes") }
        if bytes.count < 32 {
            throw fail("key file \(path) holds \(bytes.count) bytes; at least 32 are required (e.g. head -c 64 /dev/urandom > \(path))")
        }
        return bytes
    }
}

public enum Host {
    public static func hostname() -> String? {
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, 255) == 0 else { return nil }
        let bytes = buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Addresses configured on this machine (or namespace), from getifaddrs.
    public static func localAddresses() -> Set<IPAddress> {
        var result: Set<IPAddress> = []
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return result }
        defer { freeifaddrs(list) }
        var cur: UnsafeMutablePointer<ifaddrs>? = first
        while let p = cur {
            if let sa = p.pointee.ifa_addr {
                if sa.pointee.sa_family == UInt16(AF_INET) {
                    let bytes = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                        withUnsafeBytes(of: sin.pointee.sin_addr) { Array($0) }
                    }
                    if let a = IPAddress(family: .v4, bytes: bytes) { result.insert(a) }
                } else if sa.pointee.sa_family == UInt16(AF_INET6) {
                    let bytes = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin in
                        withUnsafeBytes(of: sin.pointee.sin6_addr) { Array($0) }
                    }
                    if let a = IPAddress(family: .v6, bytes: bytes) { result.insert(a) }
                }
            }
            cur = p.pointee.ifa_next
        }
        return result
    }

    public static func groupID(named name: String) -> gid_t? {
        guard let g = getgrnam(name) else { return nil }
        return g.pointee.gr_gid
    }

    /// Supplementary groups of a uid (by its passwd entry), plus its primary group.
    public static func groups(ofUID uid: uid_t, primary: gid_t) -> [gid_t] {
        guard let pw = getpwuid(uid) else { return [primary] }
        var count: Int32 = 64
        var groups = [gid_t](repeating: 0, count: 64)
        if getgrouplist(pw.pointee.pw_name, primary, &groups, &count) < 0 {
            groups = [gid_t](repeating: 0, count: Int(count))
            _ = getgrouplist(pw.pointee.pw_name, primary, &groups, &count)
        }
        return Array(groups.prefix(Int(max(0, count))))
    }
}
