import Foundation
import XCTest
import VigilLab

/// What the install step ships, generated from the argument definitions: shell completions
/// that know every command; help that lists `--output` values; exit code 64 for bad arguments.
final class HactlPackagingTests: XCTestCase {
    func hactl(_ args: [String]) -> (code: Int32, out: String, err: String) {
        Lab.run(NamespaceTestCase.binDir + "/hactl", args)
    }

    func testCompletionsKnowEveryCommand() {
        for shell in ["bash", "zsh"] {
            let r = hactl(["--generate-completion-script", shell])
            XCTAssertEqual(r.code, 0, r.err)
            for cmd in ["status", "apply", "move", "ban", "clear", "maintenance", "unmanage", "manage", "refresh", "snapshot", "standby", "fence", "agent"] {
                XCTAssertTrue(r.out.contains(cmd), "\(shell) completion lacks \(cmd)")
            }
        }
        let c = Lab.run(NamespaceTestCase.binDir + "/clusterd", ["--generate-completion-script", "bash"])
        XCTAssertEqual(c.code, 0)
        XCTAssertTrue(c.out.contains("--check-config"))
    }

    func testHelpAndExitCodes() {
        XCTAssertTrue(hactl(["status", "--help"]).out.contains("(values: table, json; default: table)"))
        XCTAssertTrue(hactl(["maintenance", "--help"]).out.contains("values: on, off"))
        XCTAssertEqual(hactl(["agent", "info", "ocf:../x"]).code, 64, "a malformed agent name is a bad argument")
        XCTAssertEqual(hactl(["move"]).code, 64)
        XCTAssertEqual(hactl(["maintenance", "sideways"]).code, 64)
        XCTAssertEqual(hactl(["ban", "web", "node1", "--lifetime", "5 minutes"]).code, 64)
    }

    func testTheInstallStepShipsManPagesAndCompletions() throws {
        let script = NamespaceTestCase.root + "/Resources/install.sh"
        let text = try String(contentsOfFile: script, encoding: .utf8)
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: script))
        for needle in ["generate-manual", "--generate-completion-script bash", "--generate-completion-script zsh", "man1/hactl.1", "man8/clusterd.8"] {
            XCTAssertTrue(text.contains(needle), "install.sh lacks \(needle)")
        }
    }
}
