import Foundation
import Glibc
import XCTest
import VigilSystem

/// Writing state (issue 9, finding 8, in part): the temporary file is created exclusively and
/// never through a symbolic link; the state directory must be private.
final class StateFilesTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "vigil-files-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        chmod(dir, 0o700)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func testAPlantedLinkAtTheTemporaryNameIsNotFollowed() throws {
        let victim = dir + "/victim"
        try "precious\n".write(toFile: victim, atomically: false, encoding: .utf8)
        let path = dir + "/resources.state"
        XCTAssertEqual(symlink(victim, path + ".tmp.\(getpid())"), 0)
        try Files.writeAtomically(path, Array("new\n".utf8))
        XCTAssertEqual(try String(contentsOfFile: victim, encoding: .utf8), "precious\n", "the write went through the link")
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "new\n")
        var st = stat()
        XCTAssertEqual(stat(path, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o600)
    }

    func testTheStateDirectoryMustBePrivate() throws {
        XCTAssertNil(Files.privateDirectoryProblem(dir))
        chmod(dir, 0o770)
        XCTAssertEqual(Files.privateDirectoryProblem(dir).map { $0.contains("writable by group or others") }, true)
        chmod(dir, 0o700)
        let link = dir + "-link"
        XCTAssertEqual(symlink(dir, link), 0)
        defer { unlink(link) }
        XCTAssertEqual(Files.privateDirectoryProblem(link), "it is a symbolic link")
    }
}
