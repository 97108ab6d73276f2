import Glibc
import XCTest
import VigilCore
import VigilSystem
import CVigilSys

/// The address dump parser (issue 9, finding 7, in part): a late acknowledgement of an earlier
/// request does not end or fail the dump, an interrupted dump is noticed, an error is reported,
/// and a truncated buffer is neither a crash nor a result.
final class NetlinkDumpTests: XCTestCase {
    func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
    func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xFF) } }

    func message(type: Int32, flags: Int32 = 0, seq: UInt32, body: [UInt8]) -> [UInt8] {
        var m = le32(UInt32(16 + body.count)) + le16(UInt16(type)) + le16(UInt16(flags)) + le32(seq) + le32(0) + body
        while m.count % 4 != 0 { m.append(0) }
        return m
    }

    func address(_ a: [UInt8], seq: UInt32, flags: Int32 = 0) -> [UInt8] {
        let ifa: [UInt8] = [UInt8(AF_INET), 24, 0, 0] + le32(2)
        let attr = le16(8) + le16(UInt16(IFA_LOCAL)) + a
        return message(type: Int32(RTM_NEWADDR), flags: flags | Int32(NLM_F_MULTI), seq: seq, body: ifa + attr)
    }

    func error(_ e: Int32, seq: UInt32) -> [UInt8] {
        message(type: Int32(NLMSG_ERROR), seq: seq, body: le32(UInt32(bitPattern: -e)) + [UInt8](repeating: 0, count: 16))
    }

    func testALateAcknowledgementDoesNotEndOrFailTheDump() {
        let buf = error(0, seq: 7) + error(EEXIST, seq: 8) + address([198, 18, 0, 50], seq: 9) + message(type: Int32(NLMSG_DONE), seq: 9, body: le32(0))
        let r = AddressManager.parseDump(buf[...], seq: 9)
        XCTAssertEqual(r.found.map { $0.address }, [IPAddress("198.18.0.50")].compactMap { $0 })
        XCTAssertTrue(r.done)
        XCTAssertNil(r.error)
        XCTAssertFalse(r.interrupted)
    }

    func testAnInterruptedDumpIsNoticedAndAnErrorReported() {
        let intr = AddressManager.parseDump((address([198, 18, 0, 50], seq: 9, flags: Int32(NLM_F_DUMP_INTR)) + message(type: Int32(NLMSG_DONE), seq: 9, body: le32(0)))[...], seq: 9)
        XCTAssertTrue(intr.interrupted)
        let failed = AddressManager.parseDump(error(EPERM, seq: 9)[...], seq: 9)
        XCTAssertEqual(failed.error, EPERM)
        XCTAssertTrue(failed.done)
    }

    func testTruncatedBuffersAreNeitherACrashNorAResult() {
        let full = address([198, 18, 0, 50], seq: 9) + message(type: Int32(NLMSG_DONE), seq: 9, body: le32(0))
        for cut in 0..<full.count {
            let r = AddressManager.parseDump(full[0..<cut], seq: 9)
            XCTAssertFalse(r.done && cut < full.count - 16, "cut at \(cut)")
        }
        var lying = full
        lying[0] = 0xFF  // a length beyond the buffer
        XCTAssertEqual(AddressManager.parseDump(lying[...], seq: 9).found, [])
    }
}
