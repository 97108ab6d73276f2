import XCTest
import VigilCore

/// The election and membership machines on their own.
final class ElectionTests: XCTestCase {
    func testVotesAreBlockedAfterAStartAndCountedOnlyWhileTheirEchoIsFresh() {
        var e = Election(selfId: 1, majority: 2, lease: 400, guardTime: 10, now: 0)
        XCTAssertFalse(e.updateVote(now: 100, candidate: 1, current: nil), "a restarted node votes for nobody at first")
        XCTAssertTrue(e.updateVote(now: 412, candidate: 1, current: nil))
        XCTAssertEqual(e.votedFor, 1)
        XCTAssertEqual(e.updateTerm(now: 500, ballotEchoes: []), .none, "one vote of three is no majority")
        XCTAssertEqual(e.updateTerm(now: 500, ballotEchoes: [450]), .elected)
        XCTAssertEqual(e.termEnd, 450 + 400 - 10)
        XCTAssertEqual(e.updateTerm(now: 840, ballotEchoes: [450]), .resigned, "a vote counts only until echo + lease - guard")
    }

    func testAReleasedVoteStaysBindingUntilTheCandidateCannotCountIt() {
        var e = Election(selfId: 3, majority: 2, lease: 400, guardTime: 10, now: 0)
        let alive = Election.Current(member: true, coordinates: true, leaving: false, lastReceived: 1000)
        XCTAssertTrue(e.updateVote(now: 1000, candidate: 1, current: nil))
        XCTAssertEqual(e.votedFor, 1)
        XCTAssertFalse(e.updateVote(now: 1100, candidate: 2, current: alive), "stick to a living coordinator")
        let dead = Election.Current(member: false, coordinates: true, leaving: false, lastReceived: 1000)
        XCTAssertTrue(e.updateVote(now: 1300, candidate: 2, current: dead))
        XCTAssertNil(e.votedFor, "the released vote binds no one")
        XCTAssertFalse(e.updateVote(now: 1409, candidate: 2, current: nil))
        XCTAssertTrue(e.updateVote(now: 1410, candidate: 2, current: nil))
        XCTAssertEqual(e.votedFor, 2)
    }
}

final class MembershipTests: XCTestCase {
    func membership() -> Membership {
        Membership(selfId: 1, incarnation: 7, nodes: [(1, "a"), (2, "b"), (3, "c")], links: 2, timeout: 400)
    }

    func testMembershipNeedsBothDirections() {
        var m = membership()
        XCTAssertTrue(m.heard(from: 2, link: 0, incarnation: 5, seq: 1, now: 100))
        m.record(Heartbeat(sentAt: 90, echoIncarnation: 7, echo: 0), from: 2, now: 100)
        XCTAssertEqual(m.update(now: 100), [.linkUp(peer: "b", link: 0)], "b has not heard us yet: not a member")
        XCTAssertTrue(m.heard(from: 2, link: 0, incarnation: 5, seq: 2, now: 150))
        m.record(Heartbeat(sentAt: 140, echoIncarnation: 7, echo: 120), from: 2, now: 150)
        XCTAssertEqual(m.update(now: 150), [.joined("b")])
        XCTAssertEqual(m.members, [2])
        XCTAssertEqual(m.update(now: 520), [.lost("b")], "our echo is older than the timeout")
    }

    func testCopiesOnTheOtherLinkAndOlderLivesAreNotApplied() {
        var m = membership()
        XCTAssertTrue(m.heard(from: 2, link: 0, incarnation: 5, seq: 9, now: 100))
        XCTAssertFalse(m.heard(from: 2, link: 1, incarnation: 5, seq: 9, now: 101), "the same packet on link 1")
        XCTAssertEqual(m.peers[2]?.linkLastHeard[1], 101, "but link 1 is alive")
        XCTAssertFalse(m.heard(from: 2, link: 0, incarnation: 4, seq: 50, now: 102), "an older life")
        XCTAssertTrue(m.heard(from: 2, link: 0, incarnation: 6, seq: 1, now: 103), "a restart starts over")
        XCTAssertNil(m.peers[2]?.report)
    }
}
