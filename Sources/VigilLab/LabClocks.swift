import Foundation

/// Clocks of their own for lab nodes (see `Lab.clocks`): the monotonic clock in a time
/// namespace; the wall clock through clusterd's hidden `--wall-clock-skew-ms`.
extension Lab {
    func timeNamespaceFile(_ i: Int) -> String { "\(workDir)/time-\(nodeName(i))" }

    /// A time namespace for node `i` (its monotonic and boot-time clocks `monotonicS` ahead),
    /// kept by a bind mount on a file in the work directory, so that clusterd enters it with
    /// nsenter (which execs: the PID stays clusterd's) and a restart finds the same clock.
    func timeNamespace(_ i: Int, monotonicS: Int) throws -> String {
        let f = timeNamespaceFile(i)
        if FileManager.default.fileExists(atPath: f) { return f }
        guard FileManager.default.createFile(atPath: f, contents: nil) else { throw LabError("cannot create \(f)") }
        let r = Lab.run("/usr/bin/unshare", ["--time=" + f, "--monotonic", "\(monotonicS)", "--boottime", "\(monotonicS)", "/bin/true"])
        guard r.code == 0 else { throw LabError("no time namespace for \(nodeName(i)) (a kernel with CONFIG_TIME_NS is needed): \(r.err)") }
        return f
    }
}
