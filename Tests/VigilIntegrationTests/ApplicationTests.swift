import Foundation
import Glibc
import XCTest
import VigilCore
import VigilLab

/// Protected applications in the namespace cluster: a group of a floating address, a real
/// HTTP server started by an OCF agent, and ocf:heartbeat:Dummy from Debian's resource-agents.
final class ApplicationTests: NamespaceTestCase {

    func makeAppLab(hooks: Bool = false, hookTimeoutMs: Int = 10_000) throws -> (Lab, String) {
        if geteuid() == 0 { try Lab.installExampleAgent(from: Self.root) }
        var lab = try makeLab()
        if hooks {
            lab.teardown()
            var o = Lab.Options(binDir: Self.binDir)
            o.extraClusterLines = "hooks_dir = \"HOOKS\"\nhook_timeout_ms = \(hookTimeoutMs)"
            lab = try Lab(o)
            self.lab = lab
            let dir = lab.workDir + "/hooks"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let cfg = try String(contentsOfFile: lab.configPath, encoding: .utf8).replacingOccurrences(of: "\"HOOKS\"", with: "\"\(dir)\"")
            try cfg.write(toFile: lab.configPath, atomically: true, encoding: .utf8)
        }
        let docroot = lab.workDir + "/www"
        try FileManager.default.createDirectory(atPath: docroot, withIntermediateDirectories: true)
        try "hello from vigil\n".write(toFile: docroot + "/index.html", atomically: true, encoding: .utf8)
        chmod(lab.workDir, 0o755)
        return (lab, docroot)
    }

    /// The single node carrying the address, not counting `dead` (killed, links down).
    func owner(_ lab: Lab, dead: Set<Int> = []) -> Int? {
        let o = lab.owners(of: Scenarios.vip).filter { !dead.contains($0) }
        return o.count == 1 ? o.first : nil
    }

    func waitServing(_ lab: Lab, on node: Int? = nil, dead: Set<Int> = [], timeout: Double = 30) throws {
        let asker = (1...3).first { !dead.contains($0) } ?? 1
        try lab.waitFor("the web service to answer through \(Scenarios.vip)\(node.map { " on node\($0)" } ?? "")", timeout: timeout) {
            guard let o = self.owner(lab, dead: dead), node == nil || o == node else { return false }
            guard let st = try? self.status(lab, asker), st.resources.allSatisfy({ $0.state == "started" && $0.runningOn == [lab.nodeName(o)] }) else { return false }
            return lab.httpGet(Scenarios.webURL)
        }
    }

    func testGroupStartsInOrderServesAndFollowsAKilledNode() throws {
        let (lab, docroot) = try makeAppLab()
        try startQuorate(lab)
        _ = try lab.apply(1, resources: Scenarios.appResources(preferred: "node2", docroot: docroot))
        try waitServing(lab, on: 2)
        // In order on node2: address, then web server, then the Dummy.
        let ev = lab.events(2)
        // Position in node2's log: the daemon logs events in the order they happen.
        func t(_ text: String) throws -> Int { try XCTUnwrap(ev.firstIndex { $0.text == text }, text) }
        XCTAssertLessThan(try t("resource-started resource=web-ip"), try t("resource-starting resource=web"))
        XCTAssertLessThan(try t("resource-started resource=web"), try t("resource-starting resource=cache"))
        let st = try status(lab, 3)
        XCTAssertEqual(st.resources.map(\.name), ["web-ip", "web", "cache"])
        XCTAssertEqual(st.resources.map(\.group), ["websvc", "websvc", "websvc"])
        XCTAssertTrue(st.resources.allSatisfy { $0.runningOn == ["node2"] })
        // Probes ran everywhere before anything started.
        for i in 1...3 { XCTAssertTrue(lab.events(i).contains { $0.text.hasPrefix("probe resource=cache agent=ocf:heartbeat:Dummy") }, "node\(i)") }

        lab.kill(2)
        try lab.setLinks(2, up: false)
        try waitServing(lab, dead: [2])
        let newOwner = try XCTUnwrap(owner(lab, dead: [2]))
        XCTAssertNotEqual(newOwner, 2)
        XCTAssertTrue(try status(lab, newOwner).resources.allSatisfy { $0.runningOn == [lab.nodeName(newOwner)] })
    }

    func testKilledServiceRestartsInPlaceThenMovesAfterRepeatedFailures() throws {
        let (lab, docroot) = try makeAppLab()
        try startQuorate(lab)
        _ = try lab.apply(1, resources: Scenarios.appResources(preferred: "node2", docroot: docroot, monitorMs: 500, threshold: 2))
        try waitServing(lab, on: 2)
        // First failure: restarted on node2.
        let servers = lab.pids(in: 2, matching: "http.server")
        XCTAssertEqual(servers.count, 1)
        for p in servers { kill(p, SIGKILL) }
        try lab.waitFor("the monitor to notice", timeout: 10) { lab.events(2).contains { $0.text.hasPrefix("resource-failed resource=web failcount=1") } }
        try waitServing(lab, on: 2)
        XCTAssertEqual(try status(lab, 2).resources.first { $0.name == "web" }?.failCount, 1)
        XCTAssertTrue(lab.events(2).contains { $0.text.hasPrefix("resource-stopped resource=cache") }, "dependents restart with it")
        // Second failure reaches migration_threshold = 2: the whole group moves.
        for p in lab.pids(in: 2, matching: "http.server") { kill(p, SIGKILL) }
        try lab.waitFor("the group to leave node2", timeout: 20) { (self.owner(lab) ?? 2) != 2 }
        try waitServing(lab)
        let st = try status(lab, 1)
        XCTAssertTrue(st.resources.allSatisfy { $0.runningOn.count == 1 && $0.runningOn != ["node2"] }, "\(st.resources)")
        XCTAssertTrue(lab.allEvents().contains { $0.text.hasPrefix("failover-begun resource=web") && $0.text.contains("from=node2") })
        // Cleanup lets node2 take it again later (nothing moves now: stickiness).
        let c = lab.hactl(1, ["cleanup", "web"])
        XCTAssertEqual(c.code, 0, c.err)
        try lab.waitFor("fail count cleared", timeout: 10) {
            (try? self.status(lab, 2).resources.first { $0.name == "web" }?.failCount) == 0
        }
    }

    func testHooksRunInOrderWithTheDocumentedEnvironment() throws {
        let (lab, docroot) = try makeAppLab(hooks: true, hookTimeoutMs: 1000)
        let dir = lab.workDir + "/hooks"
        let log = lab.workDir + "/hooks.log"
        // The shipped example hook, plus a failing and a hanging one: neither may delay anything.
        let example = try String(contentsOfFile: Self.root + "/Examples/web-service/hooks/10-log", encoding: .utf8)
        try example.replacingOccurrences(of: "${VIGIL_HOOK_LOG:-/var/log/vigil-events.log}", with: log).write(toFile: dir + "/10-log", atomically: true, encoding: .utf8)
        try "#!/bin/sh\necho broken >&2\nexit 3\n".write(toFile: dir + "/20-fails", atomically: true, encoding: .utf8)
        try "#!/bin/sh\n[ \"$VIGIL_EVENT\" = failover-begun ] && exec sleep 60\nexit 0\n".write(toFile: dir + "/30-hangs", atomically: true, encoding: .utf8)
        for f in ["10-log", "20-fails", "30-hangs"] { chmod(dir + "/" + f, 0o755) }
        try startQuorate(lab)
        _ = try lab.apply(1, resources: Scenarios.appResources(preferred: "node2", docroot: docroot))
        try waitServing(lab, on: 2)
        let killAt = Double(Lab.monoNowMs())
        lab.kill(2)
        try lab.setLinks(2, up: false)
        try waitServing(lab, dead: [2])
        let took = Double(Lab.monoNowMs()) - killAt
        XCTAssertLessThan(took, 15_000)
        try lab.waitFor("hooks to catch up", timeout: 10) {
            ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("event=failover-completed")
        }
        let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").map(String.init)
        // Per node, sequence numbers strictly increase: one at a time, in event order.
        var lastSeq: [String: Int] = [:]
        for l in lines {
            let node = try XCTUnwrap(l.split(separator: " ").first { $0.hasPrefix("node=") }).dropFirst(5)
            let seq = try XCTUnwrap(Int(try XCTUnwrap(l.split(separator: " ").first { $0.hasPrefix("seq=") }).dropFirst(4)))
            XCTAssertGreaterThan(seq, lastSeq[String(node)] ?? 0, l)
            lastSeq[String(node)] = seq
        }
        let n2 = lines.filter { $0.contains("node=node2") }
        let order = ["event=resource-starting resource=web-ip", "event=resource-started resource=web-ip", "event=resource-starting resource=web ", "event=resource-started resource=web "]
        let idx = order.map { o in n2.firstIndex { $0.contains(o) } ?? -1 }
        XCTAssertFalse(idx.contains(-1), "\(n2)")
        XCTAssertEqual(idx, idx.sorted(), "resource hooks in start order")
        let begun = try XCTUnwrap(lines.first { $0.contains("event=failover-begun resource=web-ip") })
        XCTAssertTrue(begun.contains("from=node2") && begun.contains("reason=\"node node2 lost\""), begun)
        let done = try XCTUnwrap(lines.first { $0.contains("event=failover-completed resource=web-ip") })
        XCTAssertTrue(done.contains("from=node2 to=node"), done)
        XCTAssertTrue(lines.contains { $0.contains("event=node-lost") })
        XCTAssertTrue(lines.contains { $0.contains("event=quorum-gained") })
        let all = lab.allEvents()
        XCTAssertTrue(all.contains { $0.text.contains("hook \(dir)/20-fails") && $0.text.contains("failed") })
        XCTAssertTrue(all.contains { $0.text.contains("hook \(dir)/30-hangs") && $0.text.contains("killed") })
    }

    func testHangingAgentAndGarbageAgentLeaveTheClusterWorking() throws {
        let (lab, _) = try makeAppLab()
        let hang = lab.workDir + "/hang-agent"
        let garbage = lab.workDir + "/garbage-agent"
        try "#!/bin/sh\ncase \"$1\" in start) exec sleep 600 ;; stop) exit 0 ;; status) exit 3 ;; esac\n".write(toFile: hang, atomically: true, encoding: .utf8)
        try "#!/bin/sh\nhead -c 40000 /dev/urandom\ncase \"$1\" in status) exit 3 ;; *) exit 42 ;; esac\n".write(toFile: garbage, atomically: true, encoding: .utf8)
        chmod(hang, 0o755)
        chmod(garbage, 0o755)
        try startQuorate(lab)
        _ = try lab.apply(1, resources: Scenarios.resources(preferred: "node2") + """

            [[resource]]
            name = "hangs"
            agent = "script:\(hang)"
            start_timeout_ms = 1500

            [[resource]]
            name = "garbage"
            agent = "script:\(garbage)"
            """)
        try lab.waitFor("the hanging start to time out on every node", timeout: 30) {
            (1...3).allSatisfy { i in lab.events(i).contains { $0.text.contains("start of hangs") && $0.text.contains("timed out") } }
        }
        // The garbage agent fails its start, then its stop: it is blocked where it ran, and
        // never started anywhere else.
        try lab.waitFor("the garbage agent to be blocked", timeout: 30) {
            (try? self.status(lab, 1).resources.first { $0.name == "garbage" }?.state) == "blocked"
        }
        XCTAssertEqual(lab.allEvents().filter { $0.text.hasPrefix("resource-starting resource=garbage") }.count, 1)
        XCTAssertTrue(lab.allEvents().contains { $0.text.contains("start failed with exit code 42") })
        let logs = (1...3).map { (try? String(contentsOfFile: lab.logFile($0), encoding: .utf8)) ?? "" }.joined()
        XCTAssertFalse(logs.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" }, "agent garbage reached the log unescaped")
        XCTAssertEqual(lab.pids(in: 2, matching: "sleep 600"), [], "the hung agent's process group was killed")
        let st = try status(lab, 1)
        XCTAssertEqual(st.resources.first { $0.name == "hangs" }?.state, "failed", "failed on every node, running nowhere")
        XCTAssertEqual(st.resources.first { $0.name == "web-ip" }?.state, "started")
        XCTAssertTrue(st.nodes.allSatisfy { $0.state == "local" || $0.state == "online" })
        XCTAssertFalse(lab.allEvents().contains { $0.text.hasPrefix("member-lost") }, "nothing stalled the heartbeats")
        XCTAssertTrue(ping(lab, Scenarios.vip))
    }

    func testStandbyMovesTheGroupAwayAndPersists() throws {
        let (lab, docroot) = try makeAppLab()
        try startQuorate(lab)
        _ = try lab.apply(1, resources: Scenarios.appResources(preferred: "node2", docroot: docroot))
        try waitServing(lab, on: 2)
        let r = lab.hactl(3, ["standby", "node2"])
        XCTAssertEqual(r.code, 0, r.err)
        try lab.waitFor("the group to leave node2", timeout: 20) { (self.owner(lab) ?? 2) != 2 }
        try waitServing(lab)
        XCTAssertTrue(lab.hactl(2, ["config", "show"]).out.contains("# standby: node2"))
        XCTAssertTrue(lab.hactl(1, ["status"]).out.contains("(standby)"))
        XCTAssertNotEqual(lab.hactl(1, ["standby", "nodeX"]).code, 0)
        XCTAssertEqual(lab.hactl(1, ["unstandby", "node2"]).code, 0)
        Thread.sleep(forTimeInterval: 1)
        let o = try XCTUnwrap(owner(lab))
        XCTAssertNotEqual(o, 2, "stickiness: nothing moves back on its own")
        // A resource removed from the configuration is stopped by its own agent where it ran.
        let without = Scenarios.appResources(preferred: "node2", docroot: docroot)
            .replacingOccurrences(of: "[[resource]]\nname = \"cache\"\nagent = \"ocf:heartbeat:Dummy\"\nmonitor_interval_ms = 1000\n", with: "")
            .replacingOccurrences(of: "members = [\"web-ip\", \"web\", \"cache\"]", with: "members = [\"web-ip\", \"web\"]")
        XCTAssertFalse(without.contains("cache"))
        _ = try lab.apply(1, resources: without)
        try lab.waitFor("cache stopped by its agent", timeout: 10) {
            lab.events(o).contains { $0.text.hasPrefix("agent stop resource=cache agent=ocf:heartbeat:Dummy result=\"ok\"") }
        }
        XCTAssertEqual(try status(lab, 1).resources.map(\.name), ["web-ip", "web"])
    }

    func testApplyRefusesUnknownOrMissingAgentParameters() throws {
        let (lab, _) = try makeAppLab()
        try startQuorate(lab)
        let bad = """
            [[resource]]
            name = "web"
            agent = "ocf:vigil:httpd"
            params = { port = "8080", colour = "blue" }
            """
        let r = lab.hactl(1, ["apply", "-f", "-"], stdin: bad)
        XCTAssertNotEqual(r.code, 0)
        XCTAssertTrue(r.err.contains("unknown parameter(s) colour"), r.err)
        XCTAssertTrue(r.err.contains("missing required parameter(s) address, docroot"), r.err)
        XCTAssertTrue(r.err.contains("httpd takes: address (required), port, docroot (required)"), r.err)
        XCTAssertEqual(try status(lab, 1).configVersion, 0)
        let info = lab.run("/usr/sbin/ip", ["netns", "exec", lab.ns(1), Self.binDir + "/hactl", "agent", "info", "ocf:heartbeat:Dummy"])
        XCTAssertEqual(info.code, 0)
        XCTAssertTrue(info.out.contains("state") && info.out.contains("fake"), info.out)
    }

    /// Issue 9, finding 5: a parameter the agent's meta-data marks `private="1"` (Pacemaker's
    /// convention, whatever its name) is masked in the output clusterd logs and in `hactl
    /// config show`, for root too; other parameters are not.
    func testPrivateParametersAreMaskedInLogsAndConfigShow() throws {
        guard geteuid() == 0 else { throw XCTSkip("needs root") }
        let dir = "/usr/lib/ocf/resource.d/vigil-test"
        let agent = dir + "/secretive"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let script = """
            #!/bin/sh
            case "$1" in
            meta-data) cat <<'XML'
            <?xml version="1.0"?>
            <resource-agent name="secretive" version="1">
              <version>1.0</version>
              <shortdesc lang="en">Prints its parameters and fails to start</shortdesc>
              <parameters>
                <parameter name="token" private="1" required="1"><shortdesc lang="en">API token</shortdesc><content type="string"/></parameter>
                <parameter name="colour"><shortdesc lang="en">A colour</shortdesc><content type="string"/></parameter>
              </parameters>
              <actions><action name="start" timeout="5s"/><action name="stop" timeout="5s"/><action name="monitor" timeout="5s"/><action name="meta-data" timeout="5s"/></actions>
            </resource-agent>
            XML
                exit 0 ;;
            start) echo "starting with token=$OCF_RESKEY_token colour=$OCF_RESKEY_colour"; exit 1 ;;
            stop) exit 0 ;;
            monitor) exit 7 ;;
            *) exit 3 ;;
            esac

            """
        XCTAssertTrue(FileManager.default.createFile(atPath: agent, contents: Data(script.utf8), attributes: [.posixPermissions: 0o755]))
        let (lab, _) = try makeAppLab()
        try startQuorate(lab)
        let token = "tok-3141592653"
        let leaky = """
            [[resource]]
            name = "leaky"
            agent = "ocf:vigil-test:secretive"
            preferred = ["node2"]
            params = { token = "\(token)", colour = "bright-blue" }

            """
        _ = try lab.apply(1, resources: leaky)
        try lab.waitFor("the start of leaky to fail and be logged", timeout: 30) {
            (1...3).contains { i in lab.events(i).contains { $0.text.contains("agent start resource=leaky") && $0.text.contains("output:") } }
        }
        let logs = (1...3).map { (try? String(contentsOfFile: lab.logFile($0), encoding: .utf8)) ?? "" }.joined()
        XCTAssertFalse(logs.contains(token), "the private token reached the log")
        XCTAssertTrue(logs.contains("token=********"), "the masked token is not in the log")
        XCTAssertTrue(logs.contains("colour=bright-blue"), "a parameter that is not private was masked")
        let show = lab.hactl(1, ["config", "show"])
        XCTAssertEqual(show.code, 0, show.err)
        XCTAssertFalse(show.out.contains(token), show.out)
        XCTAssertTrue(show.out.contains("bright-blue"), show.out)
        // An agent whose meta-data clusterd cannot read (it answers hactl's check only): any of
        // its parameters may be private, so config show masks every parameter, and says why.
        let mute = script.replacingOccurrences(of: "meta-data) cat <<'XML'", with: "meta-data) [ \"$OCF_RESOURCE_INSTANCE\" = hactl-meta-data ] || exit 1; cat <<'XML'")
            .replacingOccurrences(of: "name=\"token\" private=\"1\" required=\"1\"", with: "name=\"flavour\"")
        XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/mute", contents: Data(mute.utf8), attributes: [.posixPermissions: 0o755]))
        _ = try lab.apply(1, resources: leaky + """
            [[resource]]
            name = "quiet"
            agent = "ocf:vigil-test:mute"
            params = { flavour = "vanilla-bean" }
            """)
        try lab.waitFor("clusterd to fail reading the mute agent's meta-data", timeout: 20) {
            lab.events(1).contains { $0.text.contains("meta-data of ocf:vigil-test:mute could not be read") }
        }
        let masked = lab.hactl(1, ["config", "show"])
        XCTAssertEqual(masked.code, 0, masked.err)
        XCTAssertTrue(masked.out.contains("# parameters masked: meta-data not known yet for ocf:vigil-test:mute"), masked.out)
        XCTAssertFalse(masked.out.contains("vanilla-bean") || masked.out.contains("bright-blue") || masked.out.contains(token), masked.out)
    }
}
