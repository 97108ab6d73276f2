import Glibc
import VigilCore
import VigilSystem
import VigilSystemd

/// `systemd:UNIT` resources: their operations through systemd's D-Bus API instead of a process
/// (see `SystemdUnit` for the rules, `SystemdBus` for the connection). Results come back on the
/// loop like a process's; the executor's timeout applies (a late answer is dropped).
extension AgentExecutor {
    func startSystemd(_ r: Request) {
        let bus: SystemdBus
        if let b = systemd { bus = b } else {
            bus = SystemdBus(reactor: reactor)
            bus.log = { [log] in log.warning($0) }
            setSystemd(bus)
        }
        let unit = r.spec.type, resource = r.resource
        let token = beginBusOperation(r)
        let done: (OperationOutcome, String) -> Void = { [weak self] outcome, output in
            self?.endBusOperation(resource, token: token, outcome: outcome, output: output)
        }
        switch r.op {
        case .monitor:
            bus.unitState(unit) { result in
                switch result {
                case .success(let s): done(SystemdUnit.monitor(s), "")
                case .failure(let e): done(.softError("systemd: \(e)"), "")
                }
            }
        case .start:
            bus.unitState(unit) { [weak self] result in
                guard let self else { return }
                switch result {
                case .failure(let e): return done(.softError("systemd: \(e)"), "")
                case .success(let s):
                    if let refused = SystemdUnit.refusal(unit, s) { return done(refused, "") }
                }
                let startJob = {
                    bus.job("StartUnit", unit) { result in
                        switch result {
                        case .failure(let e): done(.softError("systemd: \(e)"), "")
                        case .success(let jobResult):
                            // (An unknown end, the connection broke: the unit's state decides.)
                            bus.unitState(unit) { after in
                                done(SystemdUnit.jobEnded(.start, unit, result: jobResult == SystemdBus.unknownResult ? "done" : jobResult,
                                                          then: try? after.get()), "")
                            }
                        }
                    }
                }
                switch self.writeDropIn(unit) {
                case .failure(let why): done(.softError("\(why)"), "")
                case .success(false): startJob()
                case .success(true):
                    bus.reload { e in
                        if let e { return done(.softError("systemd daemon-reload after writing \(SystemdUnit.dropInPath(unit)): \(e)"), "") }
                        startJob()
                    }
                }
            }
        case .stop:
            bus.job("StopUnit", unit) { result in
                switch result {
                case .failure(let e) where e.isNoSuchUnit: done(.success, "")  // not loaded: not running
                case .failure(let e): done(.softError("systemd: \(e)"), "")
                case .success(let jobResult) where jobResult == SystemdBus.unknownResult:
                    // The connection broke before the job's end: what the unit is now decides.
                    bus.unitState(unit) { after in
                        switch after {
                        case .success(let st): done(SystemdUnit.monitor(st) == .notRunning ? .success : .softError("\(unit) is still \(st.active) after its stop"), "")
                        case .failure(let e): done(.softError("systemd: \(e)"), "")
                        }
                    }
                case .success(let jobResult): done(SystemdUnit.jobEnded(.stop, unit, result: jobResult, then: nil), "")
                }
            }
        case .metaData:
            done(.success, SystemdUnit.metadata(unit))
        case .validateAll:
            done(.success, "")
        case .migrateTo, .migrateFrom:
            done(.hardError("systemd units do not migrate"), "")
        }
    }

    /// The runtime drop-in (see `SystemdUnit.dropIn`); true when it was written (systemd must
    /// reload), false when it was already in place.
    func writeDropIn(_ unit: String) -> Result<Bool, SystemError> {
        let path = SystemdUnit.dropInPath(unit)
        let want = Array(SystemdUnit.dropIn.utf8)
        if let have = try? Files.read(path, limit: 65_536), have == want { return .success(false) }
        do {
            try Files.ensureDirectory(String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)]))
            try Files.writeAtomically(path, want, mode: 0o644)
            return .success(true)
        } catch {
            return .failure(SystemError("write \(path): \(error)", errno: EIO))
        }
    }
}
