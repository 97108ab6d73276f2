import XCTest
import VigilCore

/// Issue 9, finding 6: what bounds a heartbeat whatever the configuration.
final class WireBoundsTests: XCTestCase {
    /// The part of a heartbeat that does not page (members, withdrawals, epochs seen) fits the
    /// budget with the most nodes a cluster may have and the largest values.
    func testTheLargestUnpagedHeartbeatFitsTheBudget() throws {
        let nodes = (1...32).compactMap { NodeID(rawValue: UInt32($0)) }
        var h = Heartbeat(sentAt: PeerTime(ms: .max), echoIncarnation: .max, echo: .max, vote: nodes.last, isCoordinator: true, leaseMs: .max,
                          leaving: true, configVersion: .max, configDigest: .max, members: nodes)
        h.factsIncluded = false
        h.assignmentsIncluded = false
        h.withdrawals = Dictionary(uniqueKeysWithValues: nodes.map { ($0, UInt64.max) })
        h.epochsSeen = h.withdrawals
        for k in [\Heartbeat.factsRev, \.factsAck, \.assignmentsRev, \.assignmentsAck, \.epoch, \.supportEpoch, \.supportEcho, \.assigneeEpoch, \.refusedEpoch] {
            h[keyPath: k] = .max
        }
        let bytes = Message.heartbeat(h).encodePayload()
        XCTAssertLessThanOrEqual(bytes.count, Message.heartbeatBudget)
        XCTAssertEqual(try Message.decode(kind: 1, payload: bytes), .heartbeat(h))
    }

    /// Pages of any set fit the budget, decode to what was sent, and refuse disorder.
    func testStatePagesFitTheBudgetAndRoundTrip() throws {
        for (part, count, nameLength) in [(StatePage.Part.facts, 4096, 64), (.assignments, 1000, 1), (.facts, 1, 64), (.assignments, 0, 5)] {
            var entries: [StatePage.Entry] = []
            for i in 0..<count {
                let name = String(repeating: "n", count: nameLength) + String(i)
                let value = part == .facts ? UInt32(i % 63 + 1) : UInt32(i % 32 + 1)
                entries.append(StatePage.Entry(name: String(name.suffix(64)), value: value))
            }
            entries.sort { $0.name < $1.name }
            let pages = StatePage.paginate(part, rev: 9, entries: entries)
            XCTAssertFalse(pages.isEmpty)
            var back: [StatePage.Entry] = []
            for p in pages {
                let bytes = Message.statePage(p).encodePayload()
                XCTAssertLessThanOrEqual(bytes.count, Message.heartbeatBudget, "\(part) \(count)")
                guard case .statePage(let q) = try Message.decode(kind: 11, payload: bytes) else { return XCTFail() }
                XCTAssertEqual(q, p)
                XCTAssertEqual(Int(q.count), pages.count)
                back += q.entries
            }
            XCTAssertEqual(back, entries, "\(part) \(count)")
        }
        let disorder = StatePage(part: .facts, rev: 1, index: 0, count: 1, entries: [.init(name: "b", value: 1), .init(name: "a", value: 1)])
        XCTAssertThrowsError(try Message.decode(kind: 11, payload: Message.statePage(disorder).encodePayload()))
        let outOfRange = StatePage(part: .facts, rev: 1, index: 3, count: 2, entries: [])
        XCTAssertThrowsError(try Message.decode(kind: 11, payload: Message.statePage(outOfRange).encodePayload()))
    }

    /// Free text is cut to what the reader accepts, on a character boundary, so a long error
    /// never makes its whole message undecodable.
    func testLongFreeTextIsCutNotRefused() throws {
        let long = String(repeating: "é", count: 5000)
        let m = Message.configResult(requestId: 1, ok: false, version: 2, message: long)
        guard case .configResult(_, _, _, let text) = try Message.decode(kind: 5, payload: m.encodePayload()) else { return XCTFail() }
        XCTAssertEqual(text, String(repeating: "é", count: 2048))
    }
}
