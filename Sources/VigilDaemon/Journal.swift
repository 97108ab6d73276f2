import Glibc
import Synchronization
import VigilCore
import VigilSystem

/// The node's journal of cluster events (`hactl history`): bounded, rotating, on disk in the
/// state directory (`journal`, and `journal.1` before it; each at most `maxFileBytes`), and the
/// newest `ringCapacity` records in memory, from which peers' requests are answered (nothing is
/// read from disk on the loop). Records are taken from the loop and from the announcer thread,
/// so the ring is behind a mutex; lines are written, then `fdatasync`ed, by the storage thread
/// in batches (a takeover of a thousand addresses is one write, not a thousand).
public final class JournalStore: @unchecked Sendable {
    public static let maxFileBytes = 2 << 20
    public static let ringCapacity = 8192

    struct State {
        var ring: [JournalRecord] = []
        var nextSeq: UInt64 = 1
        var pending: [UInt8] = []
        var flushQueued = false
        var fd: Int32 = -1
        /// The open file's size, from fstat when the storage thread opens it.
        var fileBytes = 0
        var droppedLines = 0
    }
    static let maxPending = 4 << 20

    let path: String
    let maxFileBytes: Int
    let worker: Worker
    let log: EventLog
    private let state = Mutex(State())

    /// Loads what the files hold (lines that are not records are skipped and counted: a torn
    /// line after a crash, a damaged file).
    public init(dir: String, worker: Worker, log: EventLog, maxFileBytes: Int = JournalStore.maxFileBytes) {
        path = dir + "/journal"
        self.maxFileBytes = maxFileBytes
        self.worker = worker
        self.log = log
        var records: [JournalRecord] = []
        var skipped = 0
        for p in [path + ".1", path] where Files.exists(p) {
            do {
                let bytes = try Files.read(p, limit: maxFileBytes + 65_536, regularOnly: true)
                for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
                    if let r = JournalRecord.parse(line: line) { records.append(r) } else { skipped += 1 }
                }
            } catch {
                log.warning("journal \(p) not read (\(error)); the history starts without it")
            }
        }
        if skipped > 0 { log.warning("journal: \(skipped) damaged lines skipped in \(path)") }
        // Out-of-order seqs (a planted or mixed file) keep only the increasing run's records.
        var ordered: [JournalRecord] = []
        for r in records where r.seq > (ordered.last?.seq ?? 0) { ordered.append(r) }
        state.withLock {
            $0.ring = Array(ordered.suffix(Self.ringCapacity))
            $0.nextSeq = (ordered.last?.seq ?? 0) + 1
        }
    }

    /// Adds an event now; returns at once.
    public func record(_ text: String) {
        let wall = Int64(clamping: WallClock.nowMs()), mono = MonotonicClock.nowMs()
        let queue = state.withLock { s -> Bool in
            let r = JournalRecord(seq: s.nextSeq, wallMs: wall, monoMs: mono, text: text)
            s.nextSeq += 1
            s.ring.append(r)
            if s.ring.count > Self.ringCapacity + 1024 { s.ring.removeFirst(s.ring.count - Self.ringCapacity) }
            // A storage thread stuck on a slow disk must not grow memory (locked) without end.
            if s.pending.count < Self.maxPending { s.pending.append(contentsOf: r.line.utf8) } else { s.droppedLines += 1 }
            defer { s.flushQueued = true }
            return !s.flushQueued
        }
        if queue { worker.submit { [self] in flush() } }
    }

    /// Records after `after` (by seq) with wall time at or after `sinceWallMs`.
    public func records(after: UInt64, sinceWallMs: Int64) -> ArraySlice<JournalRecord> {
        state.withLock { s in
            let ring = s.ring
            var lo = 0, hi = ring.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if ring[mid].seq <= after { lo = mid + 1 } else { hi = mid }
            }
            var start = lo
            while start < ring.count, ring[start].wallMs < sinceWallMs { start += 1 }
            return ring[start...]
        }
    }

    public var count: Int { state.withLock { $0.ring.count } }

    /// The storage thread: writes what is pending, rotating before a line would take the file
    /// past `maxFileBytes` (journal becomes journal.1, the older journal.1 goes), then syncs.
    private func flush() {
        let (bytes, fdNow, size, dropped) = state.withLock { s -> ([UInt8], Int32, Int, Int) in
            defer { s.pending = []; s.flushQueued = false; s.droppedLines = 0 }
            return (s.pending, s.fd, s.fileBytes, s.droppedLines)
        }
        if dropped > 0 { log.warning("journal: \(dropped) records not written (the disk was too slow); they stay in memory for hactl history") }
        guard !bytes.isEmpty else { return }
        var fd = fdNow
        var fileBytes = size
        func reopen() -> Bool {
            fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard fd >= 0 else {
                log.warning("journal \(path) not written: \(String(cString: strerror(errno)))")
                return false
            }
            var st = stat()
            fileBytes = fstat(fd, &st) == 0 ? Int(st.st_size) : 0
            return true
        }
        func rotate() -> Bool {
            if fd >= 0 { close(fd) }
            fd = -1
            if rename(path, path + ".1") != 0 { log.warning("journal rotation of \(path) failed: \(String(cString: strerror(errno)))") }
            return reopen()
        }
        func write(_ part: ArraySlice<UInt8>) -> Bool {
            var off = part.startIndex
            while off < part.endIndex {
                let n = part[off...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else {
                    log.warning("journal \(path) write failed: \(String(cString: strerror(errno)))")
                    return false
                }
                off += n
                fileBytes += n
            }
            return true
        }
        defer {
            if fd >= 0 { _ = fdatasync(fd) }
            state.withLock {
                $0.fd = fd
                $0.fileBytes = fileBytes
            }
        }
        if fd < 0, !reopen() { return }
        var segment = bytes.startIndex
        var lineStart = bytes.startIndex
        while lineStart < bytes.endIndex {
            let lineEnd = (bytes[lineStart...].firstIndex(of: 10) ?? (bytes.endIndex - 1)) + 1
            if fileBytes + (lineEnd - segment) > maxFileBytes, fileBytes + (lineStart - segment) > 0 {
                guard write(bytes[segment..<lineStart]), rotate() else { return }
                segment = lineStart
            }
            lineStart = lineEnd
        }
        _ = write(bytes[segment...])
    }
}
