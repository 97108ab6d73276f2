import XCTest
import VigilCore

final class TOMLTests: XCTestCase {
    func testParsesTablesArraysAndInlineTables() throws {
        let t = try TOML.parse("""
            # comment
            [cluster]
            name = "web" # trailing
            port = 5_405
            on = true
            ratio = 0.5
            [[node]]
            name = 'a'
            addrs = ["1.2.3.4",
                     "5.6.7.8",]
            [[node]]
            name = "b\\u00e9"
            map = { x = "1", y = "2" }
            [a.b]
            c = 1
            """)
        guard case .table(let cluster)? = t["cluster"]?.value else { return XCTFail("no cluster") }
        XCTAssertEqual(cluster["name"]?.value, .string("web"))
        XCTAssertEqual(cluster["port"]?.value, .integer(5405))
        XCTAssertEqual(cluster["on"]?.value, .bool(true))
        XCTAssertEqual(cluster["port"]?.line, 4)
        guard case .array(let nodes)? = t["node"]?.value else { return XCTFail("no nodes") }
        XCTAssertEqual(nodes.count, 2)
        guard case .table(let b) = nodes[1].value else { return XCTFail() }
        XCTAssertEqual(b["name"]?.value, .string("bé"))
        guard case .table(let ab)? = t["a"]?.value, case .table(let bb)? = ab["b"]?.value else { return XCTFail() }
        XCTAssertEqual(bb["c"]?.value, .integer(1))
    }

    func testErrorsCarryLineNumbers() {
        let cases: [(String, Int, String)] = [
            ("a = 1\na = 2", 2, "defined twice"),
            ("[x]\n[x]", 2, "defined twice"),
            ("a = \"unterminated", 1, "unterminated"),
            ("a = hello", 1, "strings need quotes"),
            ("\n\na = 1 b = 2", 3, "unexpected"),
            ("a = [1, 2", 1, "expected"),
            ("d = 1979-05-27", 1, "dates"),
            ("a = \"\"\"x\"\"\"", 1, "multi-line"),
        ]
        for (text, line, fragment) in cases {
            XCTAssertThrowsError(try TOML.parse(text), text) { e in
                guard let e = e as? TOMLError else { return XCTFail("\(e)") }
                XCTAssertEqual(e.line, line, text)
                XCTAssertTrue(e.message.contains(fragment), "\(text): \(e.message)")
            }
        }
    }
}

final class ClusterConfigTests: XCTestCase {
    let good = """
        [cluster]
        name = "web"
        key_file = "/etc/vigil/authkey"

        [[link]]
        port = 5405
        [[link]]
        port = 5406

        [[node]]
        name = "a"
        id = 1
        addresses = ["192.0.2.1", "198.51.100.1"]
        [[node]]
        name = "b"
        id = 2
        addresses = ["192.0.2.2", "198.51.100.2"]
        [[node]]
        name = "c"
        id = 3
        addresses = ["192.0.2.3", "198.51.100.3"]
        """

    func testGoodConfigAndDefaults() throws {
        let c = try ClusterConfig.parse(good, file: "cluster.toml")
        XCTAssertEqual(c.nodes.map(\.name), ["a", "b", "c"])
        XCTAssertEqual(c.majority, 2)
        XCTAssertEqual(c.timing.interval, 100)
        XCTAssertEqual(c.timing.timeout, 350)
        XCTAssertEqual(c.timing.lease, 350)
        XCTAssertEqual(c.noQuorumPolicy, .stop)
        XCTAssertEqual(c.links.map(\.name), ["link0", "link1"])
        XCTAssertEqual(c.stateDir(for: c.nodes[0]), "/var/lib/vigil")
        XCTAssertLessThan(c.timing.worstCaseTakeover, 500, "defaults must allow sub-second failover")
    }

    func testPerNodeStateDirAndIPCName() throws {
        let c = try ClusterConfig.parse(good.replacingOccurrences(of: "key_file = \"/etc/vigil/authkey\"", with: "key_file = \"/k\"\nstate_dir = \"/srv/{node}/state\"\nipc_name = \"vigil-{node}\""), file: "f")
        XCTAssertEqual(c.stateDir(for: c.nodes[1]), "/srv/b/state")
        XCTAssertEqual(c.ipcName(for: c.nodes[2]), "vigil-c")
    }

    func expectError(_ text: String, key: String?, _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try ClusterConfig.parse(text, file: "cluster.toml"), file: file, line: line) { e in
            guard let e = e as? ConfigError else { return XCTFail("\(e)", file: file, line: line) }
            XCTAssertEqual(e.file, "cluster.toml", file: file, line: line)
            if let key { XCTAssertEqual(e.key, key, "\(e)", file: file, line: line) }
            XCTAssertTrue(e.description.contains(fragment), "\(e)", file: file, line: line)
        }
    }

    func testEveryMistakeIsNamed() {
        expectError(good + "\n[cluster2]\n", key: "cluster2", "unknown key")
        expectError(good.replacingOccurrences(of: "name = \"web\"", with: "name = \"web\"\nnmae = \"x\""), key: "cluster.nmae", "unknown key")
        expectError(good.replacingOccurrences(of: "id = 3", with: "id = 2"), key: "node[2].id", "duplicate node id 2")
        expectError(good.replacingOccurrences(of: "192.0.2.3", with: "192.0.2.2"), key: "node[2].addresses", "also used by node 'b'")
        expectError(good.replacingOccurrences(of: "192.0.2.3", with: "192.0.2.300"), key: "node[2].addresses", "not a valid")
        expectError(good.replacingOccurrences(of: "[\"192.0.2.3\", \"198.51.100.3\"]", with: "[\"192.0.2.3\"]"), key: "node[2].addresses", "one per link")
        expectError(good + "\n[timing]\nheartbeat_interval_ms = 500\nfailure_timeout_ms = 500\n", key: "timing.failure_timeout_ms", "must be larger than heartbeat_interval_ms")
        expectError(good + "\n[timing]\nheartbeat_interval_ms = 200\nfailure_timeout_ms = 400\n", key: "timing.failure_timeout_ms", "3 x heartbeat_interval_ms")
        expectError(good + "\n[timing]\nlease_ms = 900\n", key: "timing.lease_ms", "must not exceed")
        expectError(good.replacingOccurrences(of: "key_file = \"/etc/vigil/authkey\"", with: "key_file = \"authkey\""), key: "cluster.key_file", "absolute")
        expectError(good.replacingOccurrences(of: "port = 5406", with: "port = 70000"), key: "link[1].port", "out of range")
        expectError(good.replacingOccurrences(of: "key_file = \"/etc/vigil/authkey\"", with: "key_file = \"/k\"\nno_quorum_policy = \"ignore\""), key: "cluster.no_quorum_policy", "stop, freeze")
        expectError(good.replacingOccurrences(of: "port = 5405", with: "port = \"5405\""), key: "link[0].port", "expected an integer")
    }

    /// `membership = "corosync"`: no [[link]] and no node addresses (Corosync's nodelist has
    /// them), one virtual link, no Vigil witness, timing derived at start unless given.
    func testCorosyncMembership() throws {
        let corosync = """
            [cluster]
            name = "web"
            key_file = "/etc/vigil/authkey"
            membership = "corosync"
            [[node]]
            name = "a"
            id = 1
            [[node]]
            name = "b"
            id = 2
            [[node]]
            name = "c"
            id = 3
            """
        let c = try ClusterConfig.parse(corosync, file: "cluster.toml")
        XCTAssertEqual(c.membership, .corosync)
        XCTAssertEqual(c.links, [ClusterConfig.corosyncLink])
        XCTAssertEqual(c.nodes.map(\.addresses), [[], [], []])
        XCTAssertFalse(c.timingGiven)
        XCTAssertEqual(try ClusterConfig.parse(good, file: "f").membership, .builtin)
        expectError(corosync + "\n[[link]]\nport = 5405\n", key: "link", "remove the [[link]] tables")
        expectError(corosync + "\naddresses = [\"192.0.2.3\"]\n", key: "node[2].addresses", "Corosync's nodelist")
        expectError(corosync + "\nrole = \"witness\"\n", key: "node[2].role", "votequorum")
        expectError(corosync.replacingOccurrences(of: "\"corosync\"", with: "\"pacemaker\""), key: "cluster.membership", "builtin, corosync")
        let two = corosync.components(separatedBy: "[[node]]").prefix(3).joined(separator: "[[node]]")
        // Two nodes under Corosync are a pair (votequorum + qdevice decide, fencing moves).
        let pair = try ClusterConfig.parse(two, file: "f")
        XCTAssertTrue(pair.isCorosyncPair)
        XCTAssertEqual(pair.majority, 2)
        XCTAssertFalse(c.isCorosyncPair)
    }

    func testTwoNodeClusterIsRefusedPointingAtTheWitness() {
        let two = good.components(separatedBy: "[[node]]").prefix(3).joined(separator: "[[node]]")
        expectError(two, key: "node", "role = \"witness\"")
    }

    /// Two data nodes and a witness form a three-vote cluster; a witness runs nothing, so the
    /// resources file cannot name it, and a cluster of witnesses only is refused.
    func testTwoDataNodesAndAWitness() throws {
        let c = try ClusterConfig.parse(good + "\nrole = \"witness\"\n", file: "cluster.toml")
        XCTAssertEqual(c.majority, 2)
        XCTAssertEqual(c.dataNodes.map(\.name), ["a", "b"])
        XCTAssertEqual(c.witnesses, [3])
        expectError(good + "\nrole = \"arbiter\"\n", key: "node[2].role", "'arbiter' is not a role")
        let allWitnesses = good.replacingOccurrences(of: "addresses = [\"192.0.2.1\", \"198.51.100.1\"]", with: "addresses = [\"192.0.2.1\", \"198.51.100.1\"]\nrole = \"witness\"")
            .replacingOccurrences(of: "addresses = [\"192.0.2.2\", \"198.51.100.2\"]", with: "addresses = [\"192.0.2.2\", \"198.51.100.2\"]\nrole = \"witness\"") + "\nrole = \"witness\"\n"
        expectError(allWitnesses, key: "node", "at least one needs role = \"data\"")
        for (text, key) in [
            ("[[ip]]\nname = \"v\"\naddress = \"192.0.2.80/24\"\ninterface = \"eth0\"\npreferred = [\"c\"]\n", "ip[0].preferred"),
            ("[[ip]]\nname = \"v\"\naddress = \"192.0.2.80/24\"\ninterfaces = { a = \"eth0\", b = \"eth0\", c = \"eth0\" }\n", "ip[0].interfaces"),
            ("[[ip]]\nname = \"v\"\naddress = \"192.0.2.80/24\"\ninterface = \"eth0\"\n[[location]]\nresource = \"v\"\nnode = \"c\"\nscore = 10\n", "location[0].node"),
        ] {
            XCTAssertThrowsError(try ResourceSet.parse(text, file: "r.toml", cluster: c), text) { e in
                guard let e = e as? ConfigError else { return XCTFail("\(e)") }
                XCTAssertEqual(e.key, key, "\(e)")
                XCTAssertTrue(e.description.contains("'c' is a witness"), "\(e)")
            }
        }
        // Addresses need an interface on the data nodes only.
        XCTAssertNoThrow(try ResourceSet.parse("[[ip]]\nname = \"v\"\naddress = \"192.0.2.80/24\"\ninterfaces = { a = \"eth0\", b = \"eth1\" }\n", file: "r.toml", cluster: c))
    }

    func testErrorLineNumberPointsAtTheKey() throws {
        do {
            _ = try ClusterConfig.parse(good.replacingOccurrences(of: "id = 3", with: "id = 2"), file: "cluster.toml")
            XCTFail("accepted")
        } catch {
            XCTAssertEqual(error.line, 20, "the line of the duplicate id")
        }
    }
}

final class ResourceConfigTests: XCTestCase {
    func cluster() throws -> ClusterConfig {
        try ClusterConfig.parse("""
            [cluster]
            name = "c"
            key_file = "/k"
            [[link]]
            port = 1
            [[node]]
            name = "a"
            id = 1
            addresses = ["192.0.2.1"]
            [[node]]
            name = "b"
            id = 2
            addresses = ["192.0.2.2"]
            [[node]]
            name = "c"
            id = 3
            addresses = ["192.0.2.3"]
            """, file: "c")
    }

    func testParsesIPv4AndIPv6WithPerNodeInterfaces() throws {
        let set = try ResourceSet.parse("""
            [[ip]]
            name = "v4"
            address = "192.0.2.50/24"
            interface = "eth0"
            interfaces = { c = "bond0" }
            preferred = ["b", "a"]
            announce_count = 5
            announce_refresh_ms = 60000
            [[ip]]
            name = "v6"
            address = "2001:db8::50/64"
            interfaces = { a = "eth1", b = "eth1", c = "ens4" }
            """, file: "r.toml", cluster: try cluster())
        XCTAssertEqual(set.ips.count, 2)
        XCTAssertEqual(set.ips[0].interface(on: "a"), "eth0")
        XCTAssertEqual(set.ips[0].interface(on: "c"), "bond0")
        XCTAssertEqual(set.ips[0].announceCount, 5)
        XCTAssertEqual(set.ips[1].prefix.address.family, .v6)
        XCTAssertEqual(set.ips[1].prefix.length, 64)
        XCTAssertEqual(set.ips[1].interface(on: "c"), "ens4")
        XCTAssertFalse(set.ips[0].failback)
    }

    func testRefusesBadDefinitions() throws {
        let c = try cluster()
        let cases: [(String, String)] = [
            ("[[ip]]\nname = \"x\"\naddress = \"192.0.2.50\"\ninterface = \"eth0\"", "ADDRESS/PREFIX"),
            ("[[ip]]\nname = \"x\"\naddress = \"192.0.2.500/24\"\ninterface = \"eth0\"", "not a valid"),
            ("[[ip]]\nname = \"x\"\naddress = \"192.0.2.50/33\"\ninterface = \"eth0\"", "prefix length"),
            ("[[ip]]\nname = \"x\"\naddress = \"192.0.2.50/24\"", "no interface for node(s) a, b, c"),
            ("[[ip]]\nname = \"x\"\naddress = \"192.0.2.50/24\"\ninterface = \"eth0\"\npreferred = [\"z\"]", "'z' is not a node"),
            ("[[ip]]\nname = \"x\"\naddress = \"192.0.2.50/24\"\ninterface = \"eth0\"\n[[ip]]\nname = \"x\"\naddress = \"192.0.2.51/24\"\ninterface = \"eth0\"", "duplicate resource or group name"),
            ("[[ip]]\nname = \"x\"\naddress = \"192.0.2.50/24\"\ninterface = \"eth0\"\n[[ip]]\nname = \"y\"\naddress = \"192.0.2.50/24\"\ninterface = \"eth0\"", "already used by 'x'"),
            ("[[ip]]\nname = \"x\"\naddress = \"192.0.2.1/24\"\ninterface = \"eth0\"", "heartbeat address"),
            ("[[ip]]\nname = \"x\"\naddress = \"192.0.2.50/24\"\ninterface = \"this-name-is-too-long\"", "not a valid interface name"),
            ("[[ip]]\nname = \"x\"\naddress = \"192.0.2.50/24\"\ninterface = \"eth0\"\nprefered = [\"a\"]", "unknown key"),
            ("[[ip]]\nname = \"x\"\naddress = \"224.0.0.1/24\"\ninterface = \"eth0\"", "multicast"),
        ]
        for (text, fragment) in cases {
            XCTAssertThrowsError(try ResourceSet.parse(text, file: "r.toml", cluster: c), text) { e in
                XCTAssertTrue("\(e)".contains(fragment), "\(text)\n→ \(e)")
                XCTAssertTrue("\(e)".hasPrefix("r.toml:"), "\(e)")
            }
        }
    }
}

final class MessageCodecTests: XCTestCase {
    func testRoundTripsEveryMessage() throws {
        let h = Heartbeat(sentAt: 123, echoIncarnation: 9, echo: 77, vote: 2, isCoordinator: true, leaseMs: 375, leaving: false,
                          configVersion: 4, configDigest: 0xDEAD, held: ["a", "b"], failed: ["c"], assignments: ["a": 1, "b": 3], members: [1, 3])
        let msgs: [Message] = [
            .heartbeat(h), .configRequest(version: 3, offset: 7), .configData(version: 5, digest: 77, offset: 0, total: 6, chunk: Array("x = 1\n".utf8), standby: ["b", "a"]), .standbyProposal(requestId: 3, node: "n1", on: true), .cleanup(resource: "web"),
            .configProposal(requestId: 9, offset: 0, total: 2, chunk: Array("é".utf8)), .configResult(requestId: 9, ok: false, version: 2, message: "no"),
        ]
        for m in msgs {
            XCTAssertEqual(try Message.decode(kind: m.kind, payload: m.encodePayload()), m)
        }
    }

    /// Facts travel once per name with flags; facts and assignments can be left out (the
    /// recipient acknowledged their revision), and then nothing of them is on the wire.
    func testFactsAndAcknowledgedRevisions() throws {
        var h = Heartbeat(sentAt: 9, held: ["b", "a", "c"], failed: ["z"], assignments: ["a": 2])
        h.started = ["a"]
        h.blocked = ["c"]
        h.fatal = ["y"]
        h.probingResources = ["p"]
        h.factsRev = 7
        h.factsAck = 3
        h.assignmentsRev = 11
        h.assignmentsAck = 4
        guard case .heartbeat(let back) = try Message.decode(kind: 1, payload: Message.heartbeat(h).encodePayload()) else { return XCTFail() }
        XCTAssertEqual(back.held, ["a", "b", "c"])
        XCTAssertEqual(back.started, ["a"])
        XCTAssertEqual(back.blocked, ["c"])
        XCTAssertEqual(back.failed, ["z"])
        XCTAssertEqual(back.fatal, ["y"])
        XCTAssertEqual(back.probingResources, ["p"])
        XCTAssertEqual(back.assignments, ["a": 2])
        XCTAssertEqual([back.factsRev, back.factsAck, back.assignmentsRev, back.assignmentsAck], [7, 3, 11, 4])
        var bare = h
        bare.factsIncluded = false
        bare.assignmentsIncluded = false
        let small = Message.heartbeat(bare).encodePayload()
        XCTAssertLessThan(small.count, Message.heartbeat(h).encodePayload().count - 20)
        guard case .heartbeat(let b2) = try Message.decode(kind: 1, payload: small) else { return XCTFail() }
        XCTAssertFalse(b2.factsIncluded)
        XCTAssertFalse(b2.assignmentsIncluded)
        XCTAssertEqual(b2.held, [])
        XCTAssertEqual(b2.assignments, [:])
        XCTAssertEqual(b2.factsRev, 7)
    }

    func testTruncatedOrPaddedPayloadsAreRejectedNotTrapped() {
        let m = Message.heartbeat(Heartbeat(sentAt: 1, held: ["abc"]))
        let p = m.encodePayload()
        for n in 0..<p.count {
            XCTAssertThrowsError(try Message.decode(kind: 1, payload: Array(p.prefix(n))))
        }
        XCTAssertThrowsError(try Message.decode(kind: 1, payload: p + [0]))
        XCTAssertThrowsError(try Message.decode(kind: 99, payload: p))
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let junk = (0..<Int.random(in: 0...200, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            _ = try? Message.decode(kind: UInt8.random(in: 0...6, using: &rng), payload: junk)
        }
    }
}

final class AgentConfigTests: XCTestCase {
    func cluster() throws -> ClusterConfig {
        var t = "[cluster]\nname = \"c\"\nkey_file = \"/k\"\n[[link]]\nport = 1\n"
        for i in 1...3 { t += "[[node]]\nname = \"n\(i)\"\nid = \(i)\naddresses = [\"192.0.2.\(i)\"]\n" }
        return try ClusterConfig.parse(t, file: "c")
    }

    func testAgentResourcesGroupsAndConstraints() throws {
        let set = try ResourceSet.parse("""
            [[ip]]
            name = "ip"
            address = "192.0.2.50/24"
            interface = "eth0"
            [[resource]]
            name = "web"
            agent = "ocf:heartbeat:Dummy"
            params = { state = "/run/web.state", fake = "x" }
            monitor_interval_ms = 2000
            migration_threshold = 2
            failure_timeout_ms = 60000
            [[resource]]
            name = "legacy"
            agent = "lsb:apache2"
            [[resource]]
            name = "mine"
            agent = "script:/usr/local/bin/app"
            target_role = "stopped"
            [[group]]
            name = "svc"
            members = ["ip", "web"]
            [[order]]
            first = "svc"
            then = "legacy"
            [[colocation]]
            resource = "legacy"
            with = "svc"
            score = "inf"
            [[location]]
            resource = "svc"
            node = "n3"
            score = "-inf"
            """, file: "r.toml", cluster: try cluster())
        XCTAssertEqual(set.names, ["ip", "web", "legacy", "mine"])
        XCTAssertEqual(set.agent(named: "web")?.agent.executable, "/usr/lib/ocf/resource.d/heartbeat/Dummy")
        XCTAssertEqual(set.agent(named: "web")?.params.map(\.name), ["state", "fake"])
        XCTAssertEqual(set.agent(named: "legacy")?.agent.executable, "/etc/init.d/apache2")
        XCTAssertEqual(set.options("web").migrationThreshold, 2)
        XCTAssertEqual(set.options("web").monitorIntervalMs, 2000)
        XCTAssertFalse(set.options("mine").started)
        XCTAssertEqual(set.options("ip").locations["n3"], -Score.infinity)
        XCTAssertEqual(set.predecessors(of: "web"), ["ip"])
        XCTAssertEqual(set.predecessors(of: "legacy"), ["web"], "after the group's last member")
        XCTAssertEqual(set.dependents(of: "ip"), ["web"])
    }

    func testRefusesBadAgentDefinitions() throws {
        let c = try cluster()
        let base = "[[resource]]\nname = \"a\"\nagent = \"ocf:heartbeat:Dummy\"\n"
        let cases: [(String, String)] = [
            ("[[resource]]\nname = \"a\"\nagent = \"ocf:Dummy\"\n", "ocf:PROVIDER:TYPE"),
            ("[[resource]]\nname = \"a\"\nagent = \"upstart:x\"\n", "unknown agent class"),
            ("[[resource]]\nname = \"a\"\nagent = \"systemd:x\"\n", "only systemd services"),
            ("[[resource]]\nname = \"a\"\nagent = \"script:relative\"\n", "ABSOLUTE"),
            ("[[resource]]\nname = \"a\"\nagent = \"ocf:../x:y\"\n", "ocf:PROVIDER:TYPE"),
            (base + "params = { \"bad-name\" = \"x\" }\n", "may contain only letters"),
            (base + "[[group]]\nname = \"g\"\nmembers = [\"a\", \"b\"]\n", "'b' is not a resource"),
            (base + "[[group]]\nname = \"a\"\nmembers = [\"a\"]\n", "duplicate resource or group name"),
            (base + "[[resource]]\nname = \"b\"\nagent = \"lsb:x\"\n[[order]]\nfirst = \"a\"\nthen = \"b\"\n[[order]]\nfirst = \"b\"\nthen = \"a\"\n", "cycle"),
            (base + "[[location]]\nresource = \"a\"\nnode = \"n9\"\nscore = 5\n", "'n9' is not a node"),
            (base + "[[location]]\nresource = \"a\"\nnode = \"n1\"\nscore = \"lots\"\n", "is not a score"),
            (base + "target_role = \"maybe\"\n", "started, stopped"),
        ]
        for (text, fragment) in cases {
            XCTAssertThrowsError(try ResourceSet.parse(text, file: "r.toml", cluster: c), text) { e in
                XCTAssertTrue("\(e)".contains(fragment), "\(text)\n→ \(e)")
            }
        }
    }

    func testMetadataParsingAndParameterCheck() throws {
        let xml = """
            <?xml version="1.0"?>
            <!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">
            <resource-agent name="Dummy" version="1.0">
            <version>1.0</version>
            <shortdesc lang="en">Example stateless resource agent</shortdesc>
            <parameters>
            <parameter name="state" unique="1">
            <shortdesc lang="en">State file</shortdesc>
            <content type="string" default="/run/x &amp; y" />
            </parameter>
            <parameter name="ip" required="1"><shortdesc>IP</shortdesc><content type="string"/></parameter>
            </parameters>
            <actions>
            <action name="start" timeout="20s" />
            <action name="monitor" timeout="20s" interval="10s" depth="0"/>
            </actions>
            </resource-agent>
            """
        guard case .success(let md) = AgentMetadata.parse(xml) else { return XCTFail() }
        XCTAssertEqual(md.name, "Dummy")
        XCTAssertEqual(md.parameters.map(\.name), ["state", "ip"])
        XCTAssertEqual(md.parameters[0].defaultValue, "/run/x & y")
        XCTAssertTrue(md.parameters[1].required)
        XCTAssertEqual(md.actions.map(\.name), ["start", "monitor"])
        XCTAssertNil(md.check(["ip"]))
        let err = try XCTUnwrap(md.check(["state", "bogus"]))
        XCTAssertTrue(err.contains("unknown parameter(s) bogus"), err)
        XCTAssertTrue(err.contains("missing required parameter(s) ip"), err)
        XCTAssertTrue(err.contains("Dummy takes: state, ip (required)"), err)
        if case .success = AgentMetadata.parse("garbage <<< not xml") { XCTFail("garbage accepted") }
    }

    func testExitCodeSemantics() throws {
        guard case .success(let ocf) = AgentSpec.parse("ocf:heartbeat:Dummy"), case .success(let lsb) = AgentSpec.parse("lsb:x") else { return XCTFail() }
        XCTAssertEqual(ocf.outcome(of: .exited(0), op: .monitor), .success)
        XCTAssertEqual(ocf.outcome(of: .exited(7), op: .monitor), .notRunning)
        XCTAssertEqual(ocf.outcome(of: .exited(7), op: .stop), .success)
        guard case .softError = ocf.outcome(of: .exited(1), op: .monitor) else { return XCTFail() }
        guard case .hardError = ocf.outcome(of: .exited(5), op: .start) else { return XCTFail() }
        guard case .fatalError = ocf.outcome(of: .exited(6), op: .start) else { return XCTFail() }
        guard case .softError(let m) = ocf.outcome(of: .exited(42), op: .monitor) else { return XCTFail() }
        XCTAssertTrue(m.contains("unknown exit code 42"))
        guard case .softError = ocf.outcome(of: .timedOut, op: .start) else { return XCTFail() }
        XCTAssertEqual(lsb.outcome(of: .exited(3), op: .monitor), .notRunning)
        XCTAssertEqual(lsb.argument(for: .monitor), "status")
        XCTAssertEqual(ocf.argument(for: .monitor), "monitor")
        let env = ocf.environment(resource: "web", params: [("state", "/x")], op: .monitor, timeoutMs: 20000, intervalMs: 5000)
        XCTAssertEqual(env["OCF_RESKEY_state"], "/x")
        XCTAssertEqual(env["OCF_RESOURCE_INSTANCE"], "web")
        XCTAssertEqual(env["OCF_ROOT"], "/usr/lib/ocf")
        XCTAssertEqual(env["OCF_RESKEY_CRM_meta_interval"], "5000")
    }
}
