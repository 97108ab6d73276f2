import Foundation
import Glibc

extension Scenarios {
    public struct StatusLatencyResult: Sendable {
        /// Wall time of each whole `hactl status` process, spawn to exit (ms).
        public var callsMs: [Double]
    }

    /// The three-node lab with its address placed; then `hactl status` run `runs` times as a
    /// whole process inside node1's namespace (timed there by `vigil-lab time-command`, so
    /// `ip netns exec`'s own set-up is not counted). `hactl`: the binary to time.
    public static func statusLatency(lab: Lab, hactl: String, runs: Int, log: (String) -> Void = { _ in }) throws -> StatusLatencyResult {
        try lab.startAll()
        try lab.waitFor("a quorate cluster", timeout: 15) {
            lab.hactl(1, ["status", "--output", "json"]).out.contains("\"quorate\" : true")
        }
        _ = try lab.apply(1, resources: resources(preferred: "node1"))
        try lab.waitFor("\(vip) on node1", timeout: 15) { lab.owners(of: vip) == [1] }
        let r = Lab.run("/usr/sbin/ip", ["netns", "exec", lab.ns(1), lab.options.binDir + "/vigil-lab", "time-command", "--runs", "\(runs)", "--",
                                        hactl, "status", "--ipc", "vigil-\(lab.prefix)-\(lab.nodeName(1))"])
        guard r.code == 0 else { throw LabError("timing hactl status failed: \(r.err)\(r.out)") }
        let ms = r.out.split(separator: "\n").compactMap { Double($0) }
        guard ms.count == runs else { throw LabError("expected \(runs) timings, got: \(r.out)") }
        log("hactl: \(hactl)")
        return StatusLatencyResult(callsMs: ms)
    }

    /// Runs `command` `runs` times one after the other (output discarded) and returns each
    /// run's wall time from spawn to exit in ms; throws if a run fails.
    public static func timeCommand(_ command: [String], runs: Int) throws -> [Double] {
        guard let path = command.first else { throw LabError("no command") }
        var out: [Double] = []
        for _ in 0..<runs {
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            let argv: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) } + [nil]
            defer { for p in argv { free(p) } }
            var pid: pid_t = 0
            let t0 = Lab.monoNowNs()
            let rc = posix_spawn(&pid, path, &actions, nil, argv, environ)
            guard rc == 0 else { throw LabError("cannot run \(path): \(String(cString: strerror(rc)))") }
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            let t1 = Lab.monoNowNs()
            guard status == 0 else { throw LabError("\(command.joined(separator: " ")) exited with status \(status)") }
            out.append(Double(t1 - t0) / 1e6)
        }
        return out
    }
}
