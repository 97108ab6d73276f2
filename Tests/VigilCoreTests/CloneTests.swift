import XCTest
@testable import VigilCore
import VigilTestKit

/// Issue 13, clones: a resource on every eligible node (or at most `max`), instances handled
/// each on its own node, and other resources colocated with and ordered after the clone.
final class CloneTests: XCTestCase {
    static let text = """
        [[clone]]
        name = "dns"
        agent = "ocf:heartbeat:Dummy"

        [[ip]]
        name = "vip"
        address = "198.18.0.100/24"
        interface = "eth0"
        preferred = ["n1"]

        [[colocation]]
        resource = "vip"
        with = "dns"

        [[order]]
        first = "dns"
        then = "vip"
        """

    func nodes(_ n: Int = 3, offline: Set<Int> = []) -> [Scheduler.Node] {
        (1...n).map { Scheduler.Node(id: NodeID(rawValue: UInt32($0))!, name: "n\($0)", online: !offline.contains($0)) }
    }
    func id(_ i: Int) -> NodeID { NodeID(rawValue: UInt32(i))! }

    func testOneInstancePerNodeBoundToIt() throws {
        let cluster = try SimCluster.config(nodes: 3, links: 1)
        let set = try ResourceSet.parse(Self.text, file: "r.toml", cluster: cluster)
        XCTAssertEqual(set.clone(named: "dns")?.instances, ["n1": "dns:n1", "n2": "dns:n2", "n3": "dns:n3"])
        XCTAssertEqual(set.cloneInstance("dns:n2")?.node, "n2")
        XCTAssertNil(set.cloneInstance("vip"))
        XCTAssertTrue(set.boundElsewhere("dns:n2", from: "n1"))
        XCTAssertFalse(set.boundElsewhere("dns:n1", from: "n1"))
        XCTAssertFalse(set.boundElsewhere("vip", from: "n1"))
        XCTAssertEqual(ResourceSet.agentInstanceName("dns:n2"), "dns")
        // The address waits for the instance on its own node.
        XCTAssertEqual(Set(set.predecessors(of: "vip")), ["dns:n1", "dns:n2", "dns:n3"])
        let r = Scheduler.schedule(set, nodes: nodes(), state: .init())
        XCTAssertEqual(r.placement, ["dns:n1": id(1), "dns:n2": id(2), "dns:n3": id(3), "vip": id(1)])
        // Instances first, then what depends on them.
        let starts = r.actions.map(\.description)
        XCTAssertLessThan(try XCTUnwrap(starts.firstIndex(of: "start dns:n1 on n1")), try XCTUnwrap(starts.firstIndex(of: "start vip on n1")))
        // A node offline: its instance runs nowhere else.
        let off = Scheduler.schedule(set, nodes: nodes(offline: [2]), state: .init())
        XCTAssertNil(off.placement["dns:n2"])
        XCTAssertEqual(off.placement["dns:n1"], id(1))
    }

    /// The instance on the address's node fails for good (banned there): only that instance
    /// stops, and the address moves to a node where the clone runs.
    func testAnAddressColocatedWithTheCloneMovesWhenItsInstanceCannotRun() throws {
        let cluster = try SimCluster.config(nodes: 3, links: 1)
        let set = try ResourceSet.parse(Self.text, file: "r.toml", cluster: cluster)
        var st = Scheduler.State()
        st.running = ["dns:n1": [id(1)], "dns:n2": [id(2)], "dns:n3": [id(3)], "vip": [id(1)]]
        XCTAssertTrue(Scheduler.schedule(set, nodes: nodes(), state: st).actions.isEmpty, "settled: nothing to do")
        st.banned = ["dns:n1": [id(1)]]
        st.running["dns:n1"] = []
        let r = Scheduler.schedule(set, nodes: nodes(), state: st)
        XCTAssertNil(r.placement["dns:n1"])
        XCTAssertEqual(r.placement["dns:n2"], id(2))
        XCTAssertEqual(r.placement["dns:n3"], id(3))
        XCTAssertNotEqual(r.placement["vip"], id(1))
        XCTAssertNotNil(r.placement["vip"])
        XCTAssertEqual(r.actions.map(\.description).filter { $0.contains("dns") }, [], "the other instances are not touched")
        // No instance anywhere: the address stops, saying why.
        st.banned = ["dns:n1": [id(1)], "dns:n2": [id(2)], "dns:n3": [id(3)]]
        let none = Scheduler.schedule(set, nodes: nodes(), state: st)
        XCTAssertNil(none.placement["vip"])
        XCTAssertEqual(none.reasons["vip"], "it must run with dns, which is stopped")
    }

    func testMaxRunsThatManyPreferringWhereTheyRun() throws {
        let cluster = try SimCluster.config(nodes: 4, links: 1)
        let set = try ResourceSet.parse("[[clone]]\nname = \"mon\"\nagent = \"ocf:heartbeat:Dummy\"\nmax = 2\npreferred = [\"n3\", \"n4\"]\n", file: "r.toml", cluster: cluster)
        let fresh = Scheduler.schedule(set, nodes: nodes(4), state: .init())
        XCTAssertEqual(Set(fresh.placement.keys), ["mon:n3", "mon:n4"])
        XCTAssertEqual(fresh.reasons["mon:n1"], "clone mon runs on at most 2 nodes")
        var st = Scheduler.State()
        st.running = ["mon:n1": [id(1)], "mon:n4": [id(4)]]
        XCTAssertEqual(Set(Scheduler.schedule(set, nodes: nodes(4), state: st).placement.keys), ["mon:n1", "mon:n4"], "what runs stays")
        let lost = Scheduler.schedule(set, nodes: nodes(4, offline: [4]), state: st)
        XCTAssertEqual(Set(lost.placement.keys), ["mon:n1", "mon:n3"], "a lost node's instance is replaced on another node")
        // A failed stop still counts (it may run), and hactl move's preference outranks running.
        var blocked = st
        blocked.blocked = ["mon:n1": [id(1)]]
        blocked.banned = ["mon:n1": [id(1)]]
        let pinned = Scheduler.schedule(set, nodes: nodes(4), state: blocked)
        XCTAssertEqual(pinned.placement["mon:n1"], id(1))
        XCTAssertEqual(Set(pinned.placement.keys), ["mon:n1", "mon:n4"], "no third instance while one may still run")
        let moved = try ResourceSet.parse("[[clone]]\nname = \"mon\"\nagent = \"ocf:heartbeat:Dummy\"\nmax = 2\npreferred = [\"n3\", \"n4\"]\n[[location]]\nresource = \"mon\"\nnode = \"n2\"\nscore = \"inf\"\n", file: "r.toml", cluster: cluster)
        XCTAssertEqual(Set(Scheduler.schedule(moved, nodes: nodes(4), state: st).placement.keys), ["mon:n2", "mon:n4"])
        XCTAssertEqual(Scheduler.schedule(set, nodes: nodes(4, offline: [2]), state: .init()).reasons["mon:n2"],
                       "an instance of clone mon, bound to n2, which cannot run it now (offline, standby, failed there or banned)")
    }

    func testCloneDefinitionsAreChecked() throws {
        let cluster = try SimCluster.config(nodes: 3, links: 1)
        let cases: [(String, String)] = [
            ("[[clone]]\nname = \"c\"\nagent = \"ocf:heartbeat:Dummy\"\nmax = 0\n", "max"),
            ("[[clone]]\nname = \"c\"\nagent = \"ocf:heartbeat:Dummy\"\nallow_migrate = true\n", "nothing to migrate"),
            ("[[clone]]\nname = \"c\"\nagent = \"ocf:heartbeat:Dummy\"\n[[resource]]\nname = \"c\"\nagent = \"ocf:heartbeat:Dummy\"\n", "duplicate"),
            ("[[clone]]\nname = \"c\"\nagent = \"ocf:heartbeat:Dummy\"\n[[resource]]\nname = \"r\"\nagent = \"ocf:heartbeat:Dummy\"\n[[colocation]]\nresource = \"c\"\nwith = \"r\"\n", "colocate the other resource with it"),
            ("[[clone]]\nname = \"c\"\nagent = \"ocf:heartbeat:Dummy\"\n[[resource]]\nname = \"r\"\nagent = \"ocf:heartbeat:Dummy\"\n[[order]]\nfirst = \"r\"\nthen = \"c\"\n", "order other resources after it"),
            ("[[clone]]\nname = \"c\"\nagent = \"ocf:heartbeat:Dummy\"\n[[group]]\nname = \"g\"\nmembers = [\"c:n1\"]\n", "is not a resource"),
            ("[[clone]]\nname = \"c\"\nagent = \"ocf:heartbeat:Dummy\"\nmaxx = 2\n", "maxx"),
            ("[[clone]]\nname = \"c\"\nagent = \"ocf:heartbeat:Dummy\"\n[[resource]]\nname = \"r\"\nagent = \"ocf:heartbeat:Dummy\"\n[[order]]\nfirst = \"c\"\nthen = \"r\"\n", "must also be colocated"),
            ("[[clone]]\nname = \"n2\"\nagent = \"ocf:heartbeat:Dummy\"\n", "a node's name"),
        ]
        for (text, fragment) in cases {
            XCTAssertThrowsError(try ResourceSet.parse(text, file: "r.toml", cluster: cluster), text) { e in
                XCTAssertTrue("\(e)".contains(fragment), "\(text)\n→ \(e)")
            }
        }
        // A location names the clone: only the instance of that node is ranked.
        let ok = try ResourceSet.parse("[[clone]]\nname = \"c\"\nagent = \"ocf:heartbeat:Dummy\"\n[[location]]\nresource = \"c\"\nnode = \"n2\"\nscore = \"-inf\"\n", file: "r.toml", cluster: cluster)
        XCTAssertNil(Scheduler.schedule(ok, nodes: nodes(), state: .init()).placement["c:n2"])
        XCTAssertNotNil(Scheduler.schedule(ok, nodes: nodes(), state: .init()).placement["c:n1"])
    }

    /// Nine nodes, forty clones (360 instances): every instance runs on its node, and every
    /// heartbeat and state page stays within one unfragmented datagram (the simulator checks
    /// each message against the bound as the daemon sends it).
    func testManyClonesOnNineNodesStayWithinTheDatagramBound() throws {
        var text = ""
        for c in 0..<40 { text += "[[clone]]\nname = \"clone-\(c)\"\nagent = \"ocf:heartbeat:Dummy\"\n\n" }
        var sim = try SimCluster(cluster: SimCluster.config(nodes: 9, links: 1), resources: text)
        let placed = sim.run(until: 60_000) { s in
            (0..<40).allSatisfy { c in (1...9).allSatisfy { n in s.holders(of: "clone-\(c):n\(n)") == [NodeID(rawValue: UInt32(n))!] } }
        }
        XCTAssertNotNil(placed, "not every instance placed on its node")
        XCTAssertEqual(sim.violations, [])
    }

    /// hactl ban, move, clear and unmanage name the clone (or an instance, which stands for it).
    func testOperatorsConstrainTheClone() throws {
        let cluster = try SimCluster.config(nodes: 3, links: 1)
        let set = try ResourceSet.parse(Self.text, file: "r.toml", cluster: cluster)
        let ban = try ConstraintEdit.apply(.ban(resource: "dns:n2", node: "n2", lifetimeMs: nil), to: Self.text, set: set, cluster: cluster, runningOn: [], wallNowMs: 0)
        XCTAssertTrue(ban.message.contains("dns is banned from n2"), ban.message)
        let banned = try ResourceSet.parse(ban.text, file: "r.toml", cluster: cluster)
        let r = Scheduler.schedule(banned, nodes: nodes(), state: .init())
        XCTAssertNil(r.placement["dns:n2"])
        XCTAssertEqual(r.placement["dns:n3"], id(3))
        XCTAssertThrowsError(try ConstraintEdit.apply(.move(resource: "dns", node: nil, lifetimeMs: nil), to: Self.text, set: set, cluster: cluster, runningOn: ["n1", "n2"], wallNowMs: 0)) {
            XCTAssertTrue("\($0)".contains("is a clone"), "\($0)")
        }
        let clear = try ConstraintEdit.apply(.clear(resource: "dns"), to: ban.text, set: banned, cluster: cluster, runningOn: [], wallNowMs: 0)
        XCTAssertNotNil(Scheduler.schedule(try ResourceSet.parse(clear.text, file: "r.toml", cluster: cluster), nodes: nodes(), state: .init()).placement["dns:n2"])
        let un = try MaintenanceEdit.apply(.resource("dns:n1", managed: false), to: Self.text, set: set)
        XCTAssertEqual(try ResourceSet.parse(un.text, file: "r.toml", cluster: cluster).unmanaged, ["dns:n1", "dns:n2", "dns:n3"])
    }

    /// What-if names a clone's failure by the clone and the node: its instance there.
    func testSimulatingAFailedInstance() throws {
        let cluster = try SimCluster.config(nodes: 3, links: 1)
        let set = try ResourceSet.parse(Self.text, file: "r.toml", cluster: cluster)
        let nodes = (1...3).map { i in
            WhatIf.NodeInput(name: "n\(i)", online: true, standby: false, held: ["dns:n\(i)"] + (i == 1 ? ["vip"] : []), failed: [])
        }
        let r = try WhatIf.run(cluster: cluster, current: set, nodes: nodes, changes: [.fail(resource: "dns", node: "n1")], newText: nil, file: "r.toml")
        XCTAssertTrue(r.actions.contains("stop dns:n1 on n1"), "\(r.actions)")
        XCTAssertTrue(r.actions.contains { $0.hasPrefix("start vip on n") && !$0.hasSuffix("n1") }, "\(r.actions)")
        XCTAssertFalse(r.actions.contains { $0.contains("dns:n2") || $0.contains("dns:n3") }, "\(r.actions)")
    }
}
