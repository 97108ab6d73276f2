import XCTest
@testable import VigilCore
import VigilTestKit

/// Issue 13, `systemd:UNIT` resources: which units may be resources, and what systemd's
/// answers mean for recovery.
final class SystemdUnitTests: XCTestCase {
    func testOnlyServiceUnitsWithSaneNames() throws {
        let ok = try AgentSpec.parse("systemd:nginx.service").get()
        XCTAssertEqual(ok.cls, .systemd)
        XCTAssertEqual(ok.type, "nginx.service")
        XCTAssertEqual("\(ok)", "systemd:nginx.service")
        XCTAssertNoThrow(try AgentSpec.parse("systemd:getty@tty1.service").get())
        XCTAssertNoThrow(try AgentSpec.parse("systemd:a-b_c.d\\x2d.service").get())
        for bad in ["systemd:poweroff.target", "systemd:nginx", "systemd:.service", "systemd:../x.service", "systemd:a b.service",
                    "systemd:getty@.service", "systemd:-x.service", "systemd:" + String(repeating: "a", count: 250) + ".service", "systemd:"] {
            XCTAssertThrowsError(try AgentSpec.parse(bad).get(), bad)
        }
        XCTAssertTrue(SystemdUnit.problem("poweroff.target")?.contains("only systemd services") ?? false)
    }

    func testSystemdResourcesTakeNoParametersAndDoNotMigrate() throws {
        let cluster = try SimCluster.config(nodes: 3, links: 1)
        XCTAssertNoThrow(try ResourceSet.parse("[[resource]]\nname = \"web\"\nagent = \"systemd:nginx.service\"\n", file: "r.toml", cluster: cluster))
        XCTAssertThrowsError(try ResourceSet.parse("[[resource]]\nname = \"web\"\nagent = \"systemd:nginx.service\"\nparams = { port = \"80\" }\n", file: "r.toml", cluster: cluster)) {
            XCTAssertTrue("\($0)".contains("systemd units take no parameters"), "\($0)")
        }
        XCTAssertThrowsError(try ResourceSet.parse("[[resource]]\nname = \"web\"\nagent = \"systemd:nginx.service\"\nallow_migrate = true\n", file: "r.toml", cluster: cluster))
        XCTAssertThrowsError(try ResourceSet.parse("[[resource]]\nname = \"off\"\nagent = \"systemd:poweroff.target\"\n", file: "r.toml", cluster: cluster)) {
            XCTAssertTrue("\($0)".contains("r.toml"), "\($0)")
        }
    }

    func state(_ load: String, _ active: String, _ file: String = "disabled") -> SystemdUnit.State { .init(load: load, active: active, fileState: file) }

    func testStartIsRefusedForUnitsTheClusterCannotOwn() {
        XCTAssertNil(SystemdUnit.refusal("x.service", state("loaded", "inactive")))
        XCTAssertNil(SystemdUnit.refusal("x.service", state("loaded", "inactive", "static")))
        for f in ["enabled", "enabled-runtime"] {
            guard case .hardError(let why)? = SystemdUnit.refusal("x.service", state("loaded", "inactive", f)) else { return XCTFail(f) }
            XCTAssertTrue(why.contains("enabled to start at boot") && why.contains("systemctl disable x.service"), why)
        }
        guard case .hardError(let nf)? = SystemdUnit.refusal("x.service", state("not-found", "inactive", "")) else { return XCTFail() }
        XCTAssertTrue(nf.contains("not installed on this node"))
        XCTAssertNotNil(SystemdUnit.refusal("x.service", state("masked", "inactive", "masked")))
    }

    func testMonitorsAndJobsMapToRecovery() {
        XCTAssertEqual(SystemdUnit.monitor(state("loaded", "active")), .success)
        XCTAssertEqual(SystemdUnit.monitor(state("loaded", "reloading")), .success)
        XCTAssertEqual(SystemdUnit.monitor(state("loaded", "failed")), .notRunning)
        XCTAssertEqual(SystemdUnit.monitor(state("loaded", "inactive")), .notRunning)
        XCTAssertEqual(SystemdUnit.monitor(state("not-found", "inactive", "")), .notRunning)
        XCTAssertEqual(SystemdUnit.monitor(state("loaded", "activating")), .softError("unit is activating"))
        XCTAssertEqual(SystemdUnit.jobEnded(.start, "x.service", result: "done", then: state("loaded", "active")), .success)
        XCTAssertTrue(SystemdUnit.jobEnded(.start, "x.service", result: "done", then: state("loaded", "failed")).isFailure)
        XCTAssertTrue(SystemdUnit.jobEnded(.start, "x.service", result: "failed", then: nil).isFailure)
        XCTAssertTrue(SystemdUnit.jobEnded(.start, "x.service", result: "dependency", then: nil).isFailure)
        XCTAssertEqual(SystemdUnit.jobEnded(.stop, "x.service", result: "done", then: nil), .success)
        XCTAssertTrue(SystemdUnit.jobEnded(.stop, "x.service", result: "timeout", then: nil).isFailure)
        XCTAssertTrue(SystemdUnit.dropIn.contains("Before=vigil-clusterd.service"))
        XCTAssertTrue(SystemdUnit.dropIn.contains("Restart=no"))
        XCTAssertEqual(SystemdUnit.dropInPath("x.service"), "/run/systemd/system/x.service.d/50-vigil.conf")
        guard case .success(let md) = AgentMetadata.parse(SystemdUnit.metadata("x.service")) else { return XCTFail("meta-data") }
        XCTAssertTrue(md.parameters.isEmpty)
    }
}
