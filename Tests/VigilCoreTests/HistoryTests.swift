import XCTest
@testable import VigilCore

/// Issue 12, history: the journal's records and pieces, the clock offsets heartbeat echoes
/// measure, the merge on one wall clock, and failovers read off the merged timeline.
final class HistoryTests: XCTestCase {
    let peer = NodeID(rawValue: 2)!

    /// Heartbeats at a steady phase only bound the offset by the time the peer held ours; an
    /// echo answered at once (a history piece) pins it within a couple of milliseconds, and the
    /// intersection never excludes the true offset.
    func testHeartbeatEchoesBoundTheOffsetAndAPromptEchoPinsIt() throws {
        let theta: Int64 = 123_456_789  // peer's clock minus ours
        var c = ClockOffsets()
        XCTAssertNil(c.estimate(peer))
        // Ours go out at 100k, arrive 1 ms later; the peer sends at our 37 + 100k, echoing 100k.
        for k in 1...40 {
            let ourSend = UInt64(100 * k), peerSend = Int64(37 + 100 * k)
            c.record(peer: peer, sentAt: PeerTime(ms: UInt64(peerSend + theta)), echo: ourSend, receivedAt: UInt64(peerSend + 1))
        }
        let wide = try XCTUnwrap(c.estimate(peer))
        XCTAssertLessThanOrEqual(abs(wide.offsetMs - Double(theta)), wide.uncertaintyMs)
        XCTAssertGreaterThan(wide.uncertaintyMs, 15, "a steady phase cannot tell hold time from offset")
        // A prompt answer: asked at 5000, answered at the peer's 5000.4, back at 5001.
        c.record(peer: peer, sentAt: PeerTime(ms: UInt64(5000 + theta)), echo: 5000, receivedAt: 5001)
        let tight = try XCTUnwrap(c.estimate(peer))
        XCTAssertLessThanOrEqual(abs(tight.offsetMs - Double(theta)), tight.uncertaintyMs)
        XCTAssertLessThanOrEqual(tight.uncertaintyMs, 2.5)
        // Samples whose phase varies narrow it without any prompt answer.
        var v = ClockOffsets()
        for k in 1...64 {
            let hold = Int64((k * 37) % 100), sent = UInt64(100 * k)
            v.record(peer: peer, sentAt: PeerTime(ms: UInt64(Int64(sent) + 1 + hold + theta)), echo: sent, receivedAt: UInt64(Int64(sent) + 2 + hold))
        }
        let varied = try XCTUnwrap(v.estimate(peer))
        XCTAssertLessThanOrEqual(abs(varied.offsetMs - Double(theta)), varied.uncertaintyMs)
        XCTAssertLessThanOrEqual(varied.uncertaintyMs, 4.5)
        // No echo yet, or one from our future: no sample. A new life forgets.
        var n = ClockOffsets()
        n.record(peer: peer, sentAt: 5, echo: 0, receivedAt: 10)
        n.record(peer: peer, sentAt: 5, echo: 11, receivedAt: 10)
        XCTAssertNil(n.estimate(peer))
        c.forget(peer)
        XCTAssertNil(c.estimate(peer))
    }

    func testJournalLinesRoundTripAndDamageIsRefused() throws {
        let r = JournalRecord(seq: 7, wallMs: 1_796_000_000_123, monoMs: 42, text: "resource-failed resource=db failcount=1 reason=\"exit 1: oh\nno\"")
        XCTAssertFalse(r.text.contains("\n"))
        let back = try XCTUnwrap(JournalRecord.parse(line: Substring(r.line.dropLast())))
        XCTAssertEqual(back, r)
        XCTAssertEqual(back.kind, "resource-failed")
        XCTAssertEqual(back.fields, ["resource": "db", "failcount": "1", "reason": "exit 1: oh no"])
        XCTAssertEqual(JournalRecord(seq: 1, wallMs: 0, monoMs: 0, text: String(repeating: "é", count: 400)).text.utf8.count, 400)
        for bad in ["", "v1 1 2 3", "v2 1 2 3 x", "v1 -1 2 3 x", "v1 1 2 -3 x", "v1 a 2 3 x", "v1 1 2 3 a\u{7}b", "v1 1 2 3 " + String(repeating: "x", count: 401)] {
            XCTAssertNil(JournalRecord.parse(line: Substring(bad)), bad)
        }
        // Readings no clock gives (a planted file, a misbehaving peer) are refused, so no
        // arithmetic on them can overflow.
        for bad in ["v1 18446744073709551615 1 1 x", "v1 0 1 1 x", "v1 1 -5 1 x", "v1 1 9223372036854775807 1 x", "v1 1 1 9223372036854775807 x"] {
            XCTAssertNil(JournalRecord.parse(line: Substring(bad)), bad)
        }
        var w = ByteWriter()
        HistoryChunk(requestId: 1, echo: 1, monoAt: 1, wallMinusMono: Int64.min, after: 0, records: [], done: true, lastOfBatch: true).encode(&w)
        XCTAssertThrowsError(try Message.decode(kind: 13, payload: w.bytes))
        let huge = History.Source(node: "x", wallOffsetMs: 1e300, uncertaintyMs: 0, records: [JournalRecord(seq: 1, wallMs: JournalRecord.maxWall, monoMs: 0, text: "quorum-gained")])
        XCTAssertEqual(History.merge([huge]).count, 1)
        XCTAssertEqual(JournalRecord.fields(of: "member-lost node=n3"), ["node": "n3"])
        XCTAssertEqual(JournalRecord.fields(of: "x a=\"q \\\" r\" b=2 =3 c"), ["a": "q \" r", "b": "2"])
    }

    /// Pieces fit one unfragmented datagram, come at most 16 per question, chain by cursor,
    /// and decode to what was sent; a damaged piece is refused.
    func testPiecesFitADatagramAndResumeByCursor() throws {
        let records = (1...700).map { JournalRecord(seq: UInt64($0) * 3, wallMs: Int64($0), monoMs: UInt64($0), text: "announced resource=ip\($0) address=198.18.0.\($0 % 250) " + String(repeating: "z", count: $0 % 300)) }
        var got: [JournalRecord] = []
        var after: UInt64 = 0
        var questions = 0
        while true {
            questions += 1
            let rest = records.drop { $0.seq <= after }
            let pieces = HistoryChunk.pieces(rest, after: after, requestId: 9, echo: 5, monoAt: 6, wallMinusMono: -7)
            XCTAssertLessThanOrEqual(pieces.count, HistoryChunk.perRequest)
            XCTAssertEqual(pieces.filter(\.lastOfBatch).count, 1)
            var cursor = after
            for p in pieces {
                let payload = Message.historyChunk(p).encodePayload()
                XCTAssertLessThanOrEqual(payload.count, Message.heartbeatBudget)
                guard case .historyChunk(let d) = try Message.decode(kind: 13, payload: payload) else { return XCTFail("not a piece") }
                XCTAssertEqual(d, p)
                XCTAssertEqual(d.after, cursor)
                got += d.records
                cursor = d.records.last?.seq ?? cursor
            }
            after = cursor
            if pieces.last?.done == true { break }
            XCTAssertLessThan(questions, 200)
        }
        XCTAssertEqual(got, records)
        XCTAssertGreaterThan(questions, 1)
        // Out of order records in a piece are refused.
        var w = ByteWriter()
        HistoryChunk(requestId: 1, echo: 0, monoAt: 0, wallMinusMono: 0, after: 5, records: [records[0]], done: true, lastOfBatch: true).encode(&w)
        XCTAssertThrowsError(try Message.decode(kind: 13, payload: w.bytes))
    }

    func record(_ seq: UInt64, _ wall: Int64, _ text: String) -> JournalRecord { JournalRecord(seq: seq, wallMs: wall, monoMs: seq, text: text) }

    /// Node b's wall clock runs 7 s behind; corrected, its events fall where they happened,
    /// and each node's own order holds even where its clock stepped back.
    func testMergeOnTheAskersClockAndTheFailoverTimeline() throws {
        let base: Int64 = 1_796_000_000_000
        let a = History.Source(node: "a", wallOffsetMs: 0, uncertaintyMs: 0, records: [
            record(1, base + 1000, "member-lost node=c"),
            record(2, base + 1001, "failover-begun resource=web-ip from=c reason=\"node c lost\""),
            record(3, base + 1002, "decided resource=web-ip node=b"),
            record(4, base + 1100, "failover-completed resource=web-ip from=c to=b"),
        ])
        let b = History.Source(node: "b", wallOffsetMs: -7000, uncertaintyMs: 1, records: [
            record(10, base - 7000 + 1003, "member-lost node=c"),
            record(11, base - 7000 + 1040, "resource-starting resource=web-ip"),
            record(12, base - 7000 + 1041, "resource-started resource=web-ip"),
            record(13, base - 7000 + 1039, "announced resource=web-ip address=198.18.0.100 interface=eth0 garp 1/3"),  // stepped back
        ])
        let merged = History.merge([a, b])
        XCTAssertEqual(merged.map { "\($0.node)\($0.seq)" }, ["a1", "a2", "a3", "b10", "b11", "b12", "b13", "a4"])
        XCTAssertEqual(merged[3].wallMs, base + 1003)
        XCTAssertEqual(merged[3].localWallMs, base - 7000 + 1003)
        let f = try XCTUnwrap(History.failovers(merged, timeoutMs: 350).first)
        XCTAssertEqual(f.resource, "web-ip")
        XCTAssertEqual(f.from, "c")
        XCTAssertEqual(f.to, "b")
        XCTAssertEqual(f.lost, base + 1000)
        XCTAssertEqual(f.detected, base + 1001)
        XCTAssertEqual(f.decided, base + 1002)
        XCTAssertEqual(f.started, base + 1041)
        XCTAssertEqual(f.announced, base + 1039)
        XCTAssertEqual(f.completed, base + 1100)
        XCTAssertNil(f.stopped)
        XCTAssertEqual(f.clientOutageMs, 1039 - (1000 - 350))
        // Filters: by resource, by node, by time.
        let r = History.report(asker: "a", generatedWallMs: base + 2000, sources: [a, b], nodes: [], timeoutMs: 350, since: nil, resource: "web-ip", node: nil)
        XCTAssertTrue(r.events.allSatisfy { $0.fields["resource"] == "web-ip" })
        XCTAssertEqual(r.failovers.count, 1)
        let byNode = History.report(asker: "a", generatedWallMs: base + 2000, sources: [a, b], nodes: [], timeoutMs: 350, since: nil, resource: nil, node: "c")
        XCTAssertEqual(byNode.events.map(\.seq), [1, 2, 10, 4])
        let late = History.report(asker: "a", generatedWallMs: base + 2000, sources: [a, b], nodes: [], timeoutMs: 350, since: base + 1050, resource: nil, node: nil)
        XCTAssertEqual(late.events.map(\.seq), [4])
        XCTAssertTrue(late.failovers.isEmpty)
    }

    /// A failure (not a lost node): the old holder's failure and stop are in the timeline.
    func testAFailuresTimelineStartsAtTheFailure() throws {
        let base: Int64 = 5_000_000
        let a = History.Source(node: "a", wallOffsetMs: 0, uncertaintyMs: 0, records: [
            record(1, base + 10, "failover-begun resource=db from=b reason=\"failed on b\""),
            record(2, base + 30, "decided resource=db node=a"),
            record(3, base + 60, "resource-started resource=db"),
        ])
        let b = History.Source(node: "b", wallOffsetMs: 0, uncertaintyMs: 0, records: [
            record(1, base, "resource-failed resource=db failcount=1 reason=\"monitor: not running\""),
            record(2, base + 20, "resource-stopped resource=db"),
        ])
        let f = try XCTUnwrap(History.failovers(History.merge([a, b]), timeoutMs: 350).first)
        XCTAssertEqual(f.lost, base)
        XCTAssertEqual(f.stopped, base + 20)
        XCTAssertEqual(f.started, base + 60)
        XCTAssertEqual(f.clientOutageMs, 60)
    }

    func testDurations() {
        XCTAssertEqual(History.duration("30s"), 30_000)
        XCTAssertEqual(History.duration("15m"), 900_000)
        XCTAssertEqual(History.duration("1h"), 3_600_000)
        XCTAssertEqual(History.duration("2d"), 172_800_000)
        XCTAssertEqual(History.duration("90"), 90_000)
        for bad in ["", "h", "-1h", "1.5h", "1w", "１h", "99999999999999h"] { XCTAssertNil(History.duration(bad), bad) }
    }
}
