import CVigilSys
import Glibc
import VigilCore
import VigilSystem

/// The guardian's watchdog (`[watchdog]` in the cluster file): opened once for the guardian's
/// whole life (never probed by opening and closing: with `nowayout` a close resets the machine),
/// its timeout set with WDIOC_SETTIMEOUT and read back with WDIOC_GETTIMEOUT, petted while
/// `Watchdog.shouldPet` allows. A FIFO instead of a character device is a stand-in (the
/// namespace lab's, which resets a lab node when petting stops): pets are one-byte writes.
final class WatchdogHolder {
    let path: String
    let fd: Int32
    let standIn: Bool
    let config: Watchdog
    private var lastPet: UInt64 = 0
    private var stoppedAt: UInt64?

    /// Status codes the guardian publishes for clusterd (shared word 2; word 3 the detail).
    enum Status: UInt64 { case unknown = 0, armed = 1, openFailed = 2, notAWatchdog = 3, timeoutTooLong = 4 }

    enum OpenError: Error {
        case failed(Status, detail: UInt64, message: String)
    }

    private init(path: String, fd: Int32, standIn: Bool, config: Watchdog) {
        self.path = path
        self.fd = fd
        self.standIn = standIn
        self.config = config
    }

    static func open(path: String, config: Watchdog) throws(OpenError) -> WatchdogHolder {
        let fd = Glibc.open(path, O_WRONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else {
            let e = errno
            let why: String
            switch e {
            case EBUSY: why = "busy: another process holds it (sbd?); Vigil's guardian must be its only user"
            case ENOENT: why = "no such device: load a watchdog driver (a hardware one such as iTCO_wdt or ipmi_watchdog, else softdog)"
            case ENXIO: why = "a stand-in FIFO with no reader"
            default: why = String(cString: strerror(e))
            }
            throw .failed(.openFailed, detail: UInt64(e), message: "cannot open watchdog \(path): \(why)")
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            Glibc.close(fd)
            throw .failed(.notAWatchdog, detail: 0, message: "cannot stat watchdog \(path)")
        }
        let kind = st.st_mode & S_IFMT
        if kind == S_IFIFO {
            return WatchdogHolder(path: path, fd: fd, standIn: true, config: config)
        }
        guard kind == S_IFCHR else {
            Glibc.close(fd)
            throw .failed(.notAWatchdog, detail: 0, message: "\(path) is not a watchdog device (not a character device)")
        }
        let holder = WatchdogHolder(path: path, fd: fd, standIn: false, config: config)
        _ = vigil_wd_settimeout(fd, Int32(config.timeoutS))
        let actual = vigil_wd_gettimeout(fd)
        // A device that resets later than configured would let the coordinator count the node
        // fenced too early: refused. Earlier is only stricter.
        guard actual > 0, Int(actual) <= config.timeoutS else {
            holder.disarm()
            throw .failed(.timeoutTooLong, detail: UInt64(max(0, actual)),
                          message: "watchdog \(path) keeps a timeout of \(actual) s, not the \(config.timeoutS) s configured (timeout_s): refused")
        }
        return holder
    }

    /// Pets if allowed and due; returns when to come back (CLOCK_MONOTONIC ms).
    func service(now: UInt64, petUntil: UInt64, log: EventLog) -> UInt64 {
        guard Watchdog.shouldPet(now: now, petUntil: petUntil) else {
            if stoppedAt == nil {
                stoppedAt = now
                // (Before clusterd's first word, at start-up, nothing is said.)
                if lastPet > 0 { log.warning("guardian: watchdog no longer petted (the lease ended while a resource that requires fencing is placed here, or its stop failed): this machine resets within \(config.timeoutS) s unless the lease is renewed") }
            }
            // Look again soon: a renewed lease resumes petting.
            return now + 100
        }
        if let s = stoppedAt {
            if lastPet > 0 { log.warning("guardian: watchdog petted again after \(now - s) ms") }
            stoppedAt = nil
        }
        if now >= lastPet + config.petIntervalMs {
            pet()
            lastPet = now
        }
        return min(lastPet + config.petIntervalMs, petUntil)
    }

    private func pet() {
        if standIn {
            var b: UInt8 = 0x31
            _ = Glibc.write(fd, &b, 1)
        } else if vigil_wd_keepalive(fd) != 0 {
            var b: UInt8 = 0x31
            _ = Glibc.write(fd, &b, 1)
        }
    }

    /// A clean end (nothing that needs fencing runs here): the magic close disarms the timer
    /// (a driver with `nowayout` ignores it: the machine then resets, as its owner chose).
    func disarm() {
        var v: UInt8 = 0x56  // 'V'
        _ = Glibc.write(fd, &v, 1)
        Glibc.close(fd)
    }
}
