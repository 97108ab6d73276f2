import Foundation
import Glibc
import XCTest
import VigilCore
import VigilLab

/// Agents and hooks run as root from clusterd: they must inherit nothing but stdin, stdout and
/// stderr (no cluster sockets, no IPC, no epoll, no guardian page), whether or not a descriptor
/// was opened close-on-exec (issue 9, finding 9).
final class ChildDescriptorTests: NamespaceTestCase {
    func testAgentsInheritOnlyTheirStandardDescriptors() throws {
        let lab = try makeLab(heartbeatLinks: 1)
        let out = lab.workDir + "/fds"
        let script = lab.workDir + "/fdlist"
        // Python lists its own descriptors (the directory it reads is closed before readlink).
        try """
            #!/usr/bin/python3
            import os, sys
            S = "/run/resource-agents/fdlist.state"
            a = sys.argv[1] if len(sys.argv) > 1 else ""
            if a == "start":
                fds = []
                for n in sorted(os.listdir("/proc/self/fd"), key=int):
                    try:
                        fds.append(n + " -> " + os.readlink("/proc/self/fd/" + n))
                    except OSError:
                        pass
                with open("\(out).tmp", "w") as f:
                    f.write("\\n".join(fds) + "\\n")
                os.rename("\(out).tmp", "\(out)")
                open(S, "w").close()
            elif a == "stop":
                if os.path.exists(S):
                    os.remove(S)
            elif a == "status":
                sys.exit(0 if os.path.exists(S) else 3)
            else:
                sys.exit(3)
            """.write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        chmod(lab.workDir, 0o755)
        try startQuorate(lab)
        _ = try lab.apply(1, resources: "[[resource]]\nname = \"fdlist\"\nagent = \"script:\(script)\"\npreferred = [\"node2\"]\n")
        try lab.waitFor("the agent to start", timeout: 30) { FileManager.default.fileExists(atPath: out) }
        let listing = try String(contentsOfFile: out, encoding: .utf8)
        // "lr-x------ 1 root root 64 ... 10 -> /tmp/.../fdlist": the descriptor number before "->".
        var leaked: [String] = []
        for line in listing.split(separator: "\n") where line.contains(" -> ") {
            let parts = line.components(separatedBy: " -> ")
            guard let fd = Int(parts[0]) else { continue }
            if fd > 2 { leaked.append(String(line)) }
        }
        XCTAssertEqual(leaked, [], "descriptors inherited by the agent:\n\(listing)")
    }

    /// An agent starts a service in the background without redirecting its output (the service
    /// holds the agent's output pipe). When the agent exits, the pipe goes on being read (by the
    /// output keeper), so the service's later writes do not kill it with SIGPIPE, not even once
    /// clusterd itself is gone (issue 9, finding 9).
    func testAServiceWritingToItsAgentsOutputSurvivesTheAgent() throws {
        let lab = try makeLab(heartbeatLinks: 1)
        let script = lab.workDir + "/chatty"
        try """
            #!/bin/sh
            S=/run/resource-agents/chatty.pid
            case "$1" in
            start) sh -c 'while true; do echo tick; sleep 0.1; done' & echo $! > $S; exit 0 ;;
            stop) [ -f $S ] && kill $(cat $S); rm -f $S; exit 0 ;;
            status) [ -f $S ] && kill -0 $(cat $S) 2>/dev/null && exit 0; exit 3 ;;
            *) exit 3 ;;
            esac
            """.write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        chmod(lab.workDir, 0o755)
        try startQuorate(lab)
        _ = try lab.apply(1, resources: "[[resource]]\nname = \"chatty\"\nagent = \"script:\(script)\"\nmonitor_interval_ms = 300\npreferred = [\"node2\"]\n")
        try lab.waitFor("chatty started on node2", timeout: 20) {
            let r = try? self.status(lab, 1).resources.first { $0.name == "chatty" }
            return r?.state == "started" && r?.runningOn == ["node2"]
        }
        let since = Int(Lab.monoNowMs())
        Thread.sleep(forTimeInterval: 3)
        let failures = lab.allEvents().filter { $0.mono >= since && $0.text.hasPrefix("resource-failed") }
        XCTAssertEqual(failures.map(\.text), [], "the service died once its agent's pipe was closed")
        let r = try status(lab, 1).resources.first { $0.name == "chatty" }
        XCTAssertEqual(r?.runningOn, ["node2"])

        // clusterd itself goes (SIGKILL: no hand-over, no clean-up). Its read end of the pipe
        // closes with it; the output keeper's copy does not, so the service lives on.
        let keepers = lab.pids(in: 2, matching: "--output-keeper")
        XCTAssertEqual(keepers.count, 1, "node2 should have handed the pipe to its output keeper")
        // (Each lab node has its own /run/resource-agents: find the service by its command.)
        let services = lab.pids(in: 2, matching: "echo tick")
        XCTAssertEqual(services.count, 1)
        let service = try XCTUnwrap(services.first)
        lab.kill(2)
        Thread.sleep(forTimeInterval: 1.5)
        XCTAssertEqual(Glibc.kill(service, 0), 0, "the service died with clusterd's end of its output pipe")
        XCTAssertEqual(lab.pids(in: 2, matching: "--output-keeper"), keepers, "the keeper must outlive clusterd")
        // The service ends (we started it, through the agent): the keeper, its last pipe closed
        // and clusterd gone, ends too.
        Glibc.kill(service, SIGKILL)
        try lab.waitFor("the output keeper to exit", timeout: 10) { lab.pids(in: 2, matching: "--output-keeper").isEmpty }
        XCTAssertTrue(lab.events(2).contains { $0.text.contains("output-keeper: output of") && $0.text.contains("closed by its last writer") },
                      "the keeper logs the pipe it held as closed")
    }
}
