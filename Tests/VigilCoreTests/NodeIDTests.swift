import Foundation
import XCTest
import VigilCore
import VigilTestKit

/// "No node" is nil in the types and 0 only on the wire.
final class NodeIDTests: XCTestCase {
    func testZeroIsNoNode() {
        XCTAssertNil(NodeID(rawValue: 0))
        XCTAssertEqual(NodeID(rawValue: 7)?.rawValue, 7)
        XCTAssertEqual(NodeID.n(3).description, "3")
        XCTAssertLessThan(NodeID.n(2), NodeID.n(10))
    }

    func testHeartbeatWithoutVoteRoundTripsAndZeroMemberIsRejected() throws {
        var h = Heartbeat(sentAt: 5, vote: nil, members: [1, 3])
        h.withdrawals = [2: 4]
        let bytes = Message.heartbeat(h).encodePayload()
        XCTAssertEqual(try Message.decode(kind: 1, payload: bytes), .heartbeat(h))
        // The same heartbeat voting for node 2: the vote is the four bytes after the two clocks
        // and the echo incarnation (offset 24).
        h.vote = 2
        var voted = Message.heartbeat(h).encodePayload()
        XCTAssertEqual(Array(voted[24..<28]), [0, 0, 0, 2])
        // A member list naming node 0 is malformed: 0 names no node.
        h.vote = nil
        let good = Message.heartbeat(h).encodePayload()
        let members = try XCTUnwrap(findMembers(in: good))
        voted = good
        voted[members + 2 + 3] = 0  // first member's last byte: 1 -> 0
        XCTAssertThrowsError(try Message.decode(kind: 1, payload: voted))
    }

    /// Offset of the member count (u16) followed by members 1 and 3.
    private func findMembers(in b: [UInt8]) -> Int? {
        let needle: [UInt8] = [0, 2, 0, 0, 0, 1, 0, 0, 0, 3]
        guard b.count >= needle.count else { return nil }
        return (0...(b.count - needle.count)).first { Array(b[$0..<$0 + needle.count]) == needle }
    }

    func testJSONRefusesZero() throws {
        XCTAssertEqual(try JSONDecoder().decode([NodeID].self, from: Data("[1,2]".utf8)), [1, 2])
        XCTAssertThrowsError(try JSONDecoder().decode([NodeID].self, from: Data("[0]".utf8)))
        XCTAssertEqual(String(decoding: try JSONEncoder().encode([NodeID.n(4)]), as: UTF8.self), "[4]")
    }
}
