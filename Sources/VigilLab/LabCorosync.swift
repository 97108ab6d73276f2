import Foundation
import Glibc

/// A real Corosync (Debian's, unmodified) per lab node: knet over the lab's two links, its own
/// authkey, state directory and log. Corosync 3.1.7 writes a fixed `/var/run/corosync.pid`, so
/// each instance runs in a mount namespace of its own with a private `/run`; its clients (the
/// probe, clusterd) join that mount namespace and the node's network namespace with `nsenter`,
/// since Corosync's local IPC is reachable only from there. knet uses ports 5420 and 5421, clear
/// of Vigil's own heartbeat ports.
extension Lab {
    public func corosyncConfPath(_ i: Int) -> String { "\(workDir)/corosync-\(nodeName(i)).conf" }
    public func corosyncLog(_ i: Int) -> String { "\(workDir)/corosync-\(nodeName(i)).log" }
    /// The lab's cluster name, in its cluster file and corosync.conf alike (a Vigil cluster on
    /// Corosync must be Corosync's cluster).
    public var corosyncClusterName: String { "lab" }

    /// Writes every node's corosync.conf and the shared authkey. `token` in ms (nil or 0:
    /// Corosync's default); `nodes` the members of the node list (default: all).
    public func writeCorosyncConfigs(token: Int? = nil, nodes: [Int]? = nil) throws {
        let key = workDir + "/corosync-authkey"
        if !FileManager.default.fileExists(atPath: key) {
            let bytes = (0..<256).map { _ in UInt8.random(in: 0...255) }
            _ = FileManager.default.createFile(atPath: key, contents: Data(bytes), attributes: [.posixPermissions: 0o400])
        }
        let members = nodes ?? Array(1...options.nodes)
        for i in members {
            let state = "\(workDir)/corosync-state-\(nodeName(i))"
            try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
            var conf = """
                totem {
                    version: 2
                    cluster_name: \(corosyncClusterName)
                    transport: knet
                    crypto_cipher: aes256
                    crypto_hash: sha256
                    keyfile: \(key)
                \(token.flatMap { $0 > 0 ? "    token: \($0)\n" : nil } ?? "")    interface {
                        linknumber: 0
                    }
                    interface {
                        linknumber: 1
                    }
                }
                nodelist {

                """
            for n in members {
                conf += """
                        node {
                            ring0_addr: 198.18.0.\(n)
                            ring1_addr: 198.18.1.\(n)
                            name: \(nodeName(n))
                            nodeid: \(n)
                        }

                    """
            }
            conf += """
                }
                quorum {
                    provider: corosync_votequorum
                \(options.corosyncQDevice ? Self.qdeviceSection : "")}
                logging {
                    to_stderr: no
                    to_syslog: no
                    to_logfile: yes
                    logfile: \(corosyncLog(i))
                    timestamp: on
                }
                system {
                    state_dir: \(state)
                    # No real-time scheduling in the lab: Corosync asks for SCHED_RR 99, and two of
                    # them on a 2-core machine, busy through a membership change while a quorum
                    # device answers, starve every other lab process (clusterd, the guardians) for
                    # seconds, which real nodes, each with CPUs of their own, would not see.
                    sched_rr: no
                }

                """
            try conf.write(toFile: corosyncConfPath(i), atomically: true, encoding: .utf8)
        }
    }

    /// The address and port of the lab's qnetd (in the client namespace, on link 0).
    static let qnetdAddress = "198.18.0.100", qnetdPort = 5403
    static let qdeviceSection = """
            device {
                votes: 1
                # Shorter than the defaults (10 s, 30 s): a ring change waits for the device's
                # vote, and Corosync 3.1 spins a CPU while it waits.
                timeout: 3000
                sync_timeout: 6000
                model: net
                net {
                    tls: off
                    host: \(qnetdAddress)
                    port: \(qnetdPort)
                    algorithm: ffsplit
                }
            }

        """

    /// Runs `command` (a shell line; `$0` is `arg`) in a mount namespace of its own with a
    /// private `/run`, inside network namespace `netns`; output to `out`.
    func startInPrivateRun(netns: String, command: String, arg: String, out: String, what: String, exe: String) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        // The machine's /run/netns stays visible under the private /run (carried over with
        // --rbind: each namespace is a mount of its own), so the lab's fence agent, which
        // clusterd runs in here, finds the namespaces it powers off.
        let view = workDir + "/netns-view-\(Lab.nextSerial())"
        p.arguments = ["netns", "exec", netns, "unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                       "mkdir -p \"$1\" && mount --rbind /run/netns \"$1\" && mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -p /run/lock /run/netns && mount --move \"$1\" /run/netns && exec " + command,
                       arg, view]
        let fh = try appendingHandle(out)
        p.standardOutput = fh
        p.standardError = fh
        try p.run()
        // Only once the process is the daemon itself are its namespaces the node's: before that
        // it is `ip`, `unshare` or the shell, and `nsenter` would join a namespace of theirs
        // (the root one, at first).
        let pid = p.processIdentifier
        try waitFor("\(what) to start", timeout: 10) {
            let path = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")) ?? ""
            return path.hasSuffix("/" + exe) || !p.isRunning
        }
        guard p.isRunning else { throw LabError("\(what) exited at once: see \(out)") }
        return p
    }

    /// Starts the lab's `corosync-qnetd` (TLS off) in the client namespace, once.
    public func startQNetd() throws {
        guard qnetd == nil else { return }
        qnetd = try startInPrivateRun(netns: clientNS, command: "/usr/bin/corosync-qnetd -f -s off -l \"$0\" -p \(Self.qnetdPort)",
                                      arg: Self.qnetdAddress, out: workDir + "/qnetd.out", what: "corosync-qnetd", exe: "corosync-qnetd")
    }

    /// Starts `corosync-qdevice` beside node `i`'s Corosync (it reads its settings from cmap),
    /// once that Corosync answers (within 30 s).
    public func startQDevice(_ i: Int) throws {
        try startQNetd()
        if let p = qdevices[i], p.isRunning { return }
        let argv = try inCorosyncNamespaces(i, ["/bin/sh", "-c", "mkdir -p /run/corosync-qdevice; i=0; until /usr/sbin/corosync-cmapctl totem.cluster_name >/dev/null 2>&1 || [ $i -ge 300 ]; do sleep 0.1; i=$((i+1)); done; exec /usr/sbin/corosync-qdevice -f -d"])
        let p = Process()
        p.executableURL = URL(fileURLWithPath: argv[0])
        p.arguments = Array(argv.dropFirst())
        let fh = try appendingHandle(workDir + "/qdevice-\(nodeName(i)).out")
        p.standardOutput = fh
        p.standardError = fh
        try p.run()
        qdevices[i] = p
    }

    /// Starts Corosync on node `i` in the foreground of its own mount namespace.
    public func startCorosync(_ i: Int) throws {
        corosyncs[i] = try startInPrivateRun(netns: ns(i), command: "/usr/sbin/corosync -f -c \"$0\"", arg: corosyncConfPath(i),
                                             out: workDir + "/corosync-\(nodeName(i)).out", what: "corosync on \(nodeName(i))", exe: "corosync")
    }

    /// The PID of node `i`'s Corosync (the shell execs it), if it runs.
    public func corosyncPID(_ i: Int) -> pid_t? {
        guard let p = corosyncs[i], p.isRunning else { return nil }
        return p.processIdentifier
    }

    /// Kills node `i`'s Corosync (SIGKILL: a crash).
    public func killCorosync(_ i: Int) {
        guard let p = corosyncs.removeValue(forKey: i) else { return }
        Glibc.kill(p.processIdentifier, SIGKILL)
        Lab.reap(p.processIdentifier)
    }

    /// A command line that runs `args` inside node `i`'s Corosync namespaces (mount and network).
    public func inCorosyncNamespaces(_ i: Int, _ args: [String]) throws -> [String] {
        guard let pid = corosyncPID(i) else { throw LabError("corosync is not running on \(nodeName(i))") }
        return ["/usr/bin/nsenter", "--target", "\(pid)", "--mount", "--net", "--"] + args
    }
}
