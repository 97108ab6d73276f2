import Foundation
import Glibc

/// A private systemd per lab node (issue 13's `systemd:` resources; the test machine need not
/// run systemd as PID 1): `/lib/systemd/systemd --system` as PID 1 of a PID namespace, in the
/// node's network namespace, with its own `/run` (a tmpfs: the node's runtime units, drop-ins and
/// the manager's private socket) and its own cgroup subtree (`vigil-lab-PREFIX-nodeN` in every
/// mounted hierarchy), booting an empty target. clusterd and hactl of the node run in its mount
/// namespace, so they reach it at /run/systemd/private as they would the machine's own.
extension Lab {
    static let systemdBinary = "/lib/systemd/systemd"

    func cgroupDirs(_ i: Int) -> [String] {
        let name = "vigil-lab-\(prefix)-\(nodeName(i))"
        if FileManager.default.fileExists(atPath: "/sys/fs/cgroup/cgroup.procs") { return ["/sys/fs/cgroup/\(name)"] }  // cgroup v2 only
        return ["systemd", "unified"].filter { FileManager.default.fileExists(atPath: "/sys/fs/cgroup/\($0)/cgroup.procs") }.map { "/sys/fs/cgroup/\($0)/\(name)" }
    }

    /// Starts node `i`'s systemd (once); returns its PID (PID 1 inside its namespace).
    public func startSystemd(_ i: Int) throws -> pid_t {
        if let p = systemdPids[i], Glibc.kill(p, 0) == 0 { return p }
        guard FileManager.default.isExecutableFile(atPath: Self.systemdBinary) else { throw LabError("\(Self.systemdBinary) is missing: install Debian's systemd package") }
        let dirs = cgroupDirs(i)
        guard !dirs.isEmpty else { throw LabError("no writable cgroup hierarchy for a private systemd") }
        // The launcher moves itself into the node's cgroups first (its children inherit them),
        // then enters the network namespace with nsenter: `ip netns exec` would remount /sys
        // without the cgroup hierarchies systemd needs.
        let inner = """
            set -e
            mount -t tmpfs -o mode=0755 tmpfs /run
            mkdir -p /run/systemd/system /run/resource-agents
            printf '[Unit]\\nDescription=Vigil lab node (nothing else starts)\\nDefaultDependencies=no\\n' > /run/systemd/system/vigil-lab.target
            exec env container=vigil-lab \(Self.systemdBinary) --system --unit=vigil-lab.target --log-target=console --log-level=info
            """
        let outer = """
            set -e
            for d in \(dirs.joined(separator: " ")); do mkdir -p "$d"; echo $$ > "$d/cgroup.procs"; done
            exec nsenter --net=/run/netns/\(ns(i)) unshare --pid --fork --mount --propagation private --mount-proc /bin/sh -c "$0"
            """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", outer, inner]
        let fh = try appendingHandle("\(workDir)/systemd-\(nodeName(i)).log")
        p.standardOutput = fh
        p.standardError = fh
        try p.run()
        systemdLaunchers[i] = p
        // systemd is unshare's child; it is up once its private socket answers.
        var pid: pid_t?
        do {
            try waitFor("\(nodeName(i))'s private systemd", timeout: 40) {
                // (The launcher's children include its mkdir for a moment: only systemd counts.)
                pid = Lab.run("/usr/bin/pgrep", ["-P", "\(p.processIdentifier)", "-x", "systemd"]).out.split(separator: "\n").first.flatMap { pid_t($0) }
                guard let pid else { return false }
                return Lab.run("/usr/bin/nsenter", ["-t", "\(pid)", "-m", "test", "-S", "/run/systemd/private"]).code == 0
            }
        } catch {
            let state = pid.map { (try? String(contentsOfFile: "/proc/\($0)/status", encoding: .utf8))?.split(separator: "\n").prefix(3).joined(separator: " ") ?? "gone" } ?? "-"
            throw LabError("\(nodeName(i))'s private systemd did not come up (launcher \(p.processIdentifier), systemd \(pid.map { "\($0)" } ?? "not found"): \(state)); its log:\n" + tail("\(workDir)/systemd-\(nodeName(i)).log", lines: 30))
        }
        guard let pid else { throw LabError("no systemd") }
        systemdPids[i] = pid
        return pid
    }

    /// `systemctl ARGS` against node `i`'s systemd.
    public func systemctl(_ i: Int, _ args: [String]) -> (code: Int32, out: String, err: String) {
        guard let pid = systemdPids[i] else { return (1, "", "no private systemd for \(nodeName(i))") }
        return run("/usr/bin/nsenter", ["-t", "\(pid)", "-m", "-p", "systemctl"] + args)
    }

    /// Writes a file in node `i`'s private /run (a unit, say).
    public func writeRunFile(_ i: Int, _ path: String, _ contents: String) throws {
        guard path.hasPrefix("/run/"), let pid = systemdPids[i] else { throw LabError("\(path): only /run of a node with a private systemd") }
        let r = run("/usr/bin/nsenter", ["-t", "\(pid)", "-m", "/bin/sh", "-c", "mkdir -p \"$(dirname \"$0\")\" && cat > \"$0\"", path], stdin: contents)
        guard r.code == 0 else { throw LabError("cannot write \(path) on \(nodeName(i)): \(r.err)") }
    }

    /// Reads a file of node `i`'s private /run (nil: none).
    public func readRunFile(_ i: Int, _ path: String) -> String? {
        guard let pid = systemdPids[i] else { return nil }
        let r = run("/usr/bin/nsenter", ["-t", "\(pid)", "-m", "cat", path])
        return r.code == 0 ? r.out : nil
    }

    /// The prefix that runs a command in node `i`'s private systemd's mount and PID namespaces
    /// (systemd answers no peer from outside its PID namespace), if it has one.
    func systemdMountPrefix(_ i: Int) -> [String] {
        systemdPids[i].map { ["nsenter", "-t", "\($0)", "-m", "-p"] } ?? []
    }

    /// hactl in node `i`'s namespaces (and its private systemd's, if any): as is, for a command
    /// that asks no clusterd (agent list, agent info); `hactl(_:_:)` adds the node's IPC name.
    public func hactlLocal(_ i: Int, _ args: [String], stdin: String? = nil) -> (code: Int32, out: String, err: String) {
        run("/usr/sbin/ip", ["netns", "exec", ns(i)] + systemdMountPrefix(i) + [options.binDir + "/hactl"] + args, stdin: stdin)
    }

    /// Teardown: every private systemd (and with it its PID namespace) goes, then its cgroups.
    func stopSystemds() {
        for (_, pid) in systemdPids { Glibc.kill(pid, SIGKILL) }
        for (_, p) in systemdLaunchers {
            Glibc.kill(p.processIdentifier, SIGKILL)
            Lab.reap(p.processIdentifier)
        }
        for i in Set(systemdPids.keys).union(systemdLaunchers.keys) {
            for d in cgroupDirs(i) where FileManager.default.fileExists(atPath: d) { Lab.removeCgroup(d) }
        }
        systemdPids = [:]
        systemdLaunchers = [:]
    }

    /// Whatever is still in one of our nodes' cgroups is ours (a systemd whose PID we never
    /// learnt, a unit's process): killed, then the directories go, depth first, once the
    /// processes have left (bounded).
    static func removeCgroup(_ d: String) {
        for pid in Lab.run("/usr/bin/find", [d, "-name", "cgroup.procs", "-exec", "cat", "{}", ";"]).out.split(separator: "\n").compactMap({ pid_t($0) }) where pid > 1 {
            Glibc.kill(pid, SIGKILL)
        }
        for _ in 0..<100 {
            _ = Lab.run("/usr/bin/find", [d, "-depth", "-type", "d", "-exec", "rmdir", "{}", ";"])
            if !FileManager.default.fileExists(atPath: d) { break }
            usleep(20_000)
        }
    }

    /// The cgroups of every node of the lab named `prefix` (for a removal by name).
    static func cgroupDirs(prefix: String) -> [String] {
        ["/sys/fs/cgroup", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"].flatMap { root -> [String] in
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
            return entries.filter { $0.hasPrefix("vigil-lab-\(prefix)-") }.map { root + "/" + $0 }
        }
    }
}
