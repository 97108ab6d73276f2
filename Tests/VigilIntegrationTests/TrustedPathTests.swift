import Foundation
import Glibc
import VigilSystem
import XCTest

/// Issue 9, finding 5: clusterd runs agents, hooks and fence agents as root only when nobody
/// else could have written them or the directories above them.
final class TrustedPathTests: XCTestCase {
    func testOnlyFilesNobodyElseCouldWriteMayRun() throws {
        guard geteuid() == 0 else {
            if ProcessInfo.processInfo.environment["CI"] == "true" { return XCTFail("needs root in CI") }
            throw XCTSkip("needs root (chown)")
        }
        let base = "/tmp/vigil-trusted-\(getpid())"
        try FileManager.default.createDirectory(atPath: base + "/user", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: base) }
        chmod(base, 0o755)
        let good = base + "/agent"
        _ = FileManager.default.createFile(atPath: good, contents: Data("#!/bin/sh\nexit 0\n".utf8))
        chmod(good, 0o755)
        XCTAssertNil(TrustedPath.problem(good))
        XCTAssertNil(TrustedPath.problem("/bin/sh"), "a system binary behind Debian's /bin link")

        chmod(good, 0o777)
        XCTAssertEqual(TrustedPath.problem(good), "\(good) is writable by everyone")
        chmod(good, 0o775)
        chown(good, 0, 65534)
        XCTAssertEqual(TrustedPath.problem(good), "\(good) is writable by group 65534")
        chown(good, 0, 0)
        XCTAssertNil(TrustedPath.problem(good), "group write for group 0")
        chmod(good, 0o755)

        // A directory of a user: the file in it is refused even though root owns the file.
        let inUserDir = base + "/user/agent"
        _ = FileManager.default.createFile(atPath: inUserDir, contents: Data("#!/bin/sh\n".utf8))
        chmod(inUserDir, 0o755)
        chown(base + "/user", 65534, 65534)
        XCTAssertEqual(TrustedPath.problem(inUserDir), "\(base)/user is owned by uid 65534, not root")
        // A link in that directory to a good file: it could be pointed elsewhere before the exec.
        let link = base + "/user/link"
        XCTAssertEqual(symlink(good, link), 0)
        XCTAssertEqual(TrustedPath.problem(link), "\(base)/user is owned by uid 65534, not root")
        // A good link to a file in the user's directory.
        let link2 = base + "/link2"
        XCTAssertEqual(symlink(inUserDir, link2), 0)
        XCTAssertEqual(TrustedPath.problem(link2), "\(base)/user (for \(link2)) is owned by uid 65534, not root")

        // A sticky directory writable by everyone (like /tmp) holding a root-owned directory: fine.
        let sticky = base + "/sticky"
        try FileManager.default.createDirectory(atPath: sticky + "/d", withIntermediateDirectories: true)
        chmod(sticky, 0o1777)
        chmod(sticky + "/d", 0o755)
        let inSticky = sticky + "/d/agent"
        _ = FileManager.default.createFile(atPath: inSticky, contents: Data("#!/bin/sh\n".utf8))
        chmod(inSticky, 0o755)
        XCTAssertNil(TrustedPath.problem(inSticky))
        chmod(sticky, 0o777)
        XCTAssertEqual(TrustedPath.problem(inSticky), "\(sticky) is writable by everyone")
        XCTAssertEqual(TrustedPath.problem("relative/agent"), "relative/agent is not an absolute path")
    }
}

/// The holder of a taken IPC name is found from /proc/net/unix, where libqb's abstract names
/// appear padded with '@' (its NUL bytes) to the whole sun_path.
final class SocketHoldersTests: XCTestCase {
    func testAbstractNamesAreMatchedWithTheirPadding() {
        let text = """
            Num       RefCount Protocol Flags    Type St Inode Path
            0000000000000000: 00000002 00000000 00010000 0001 01 338890 @vigil-lab-node1@@@@@@@@@@@@
            0000000000000000: 00000002 00000000 00010000 0001 01 338891 @vigil-lab-node10@@@@@@@@@@@
            0000000000000000: 00000002 00000000 00010000 0001 01 338892 @vigil-lab-node1
            0000000000000000: 00000003 00000000 00000000 0001 03 338893
            0000000000000000: 00000002 00000000 00010000 0001 01 338894 /run/vigil-lab-node1
            """
        XCTAssertEqual(SocketHolders.inodes(abstractName: "vigil-lab-node1", procNetUnix: text), [338890, 338892])
        XCTAssertEqual(SocketHolders.inodes(abstractName: "other", procNetUnix: text), [])
    }
}
