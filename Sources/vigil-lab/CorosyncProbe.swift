import ArgumentParser
import Foundation
import Glibc
import VigilCorosync

/// Used by the tests: Vigil's Corosync shell on its own, against a real Corosync. Prints what
/// it learns, one line each: `local ...`, `event ...`, `links ...`, and at the end `summary ...`.
struct CorosyncProbe: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "corosync-probe", abstract: "Join a CPG group through Vigil's Corosync shell and report membership, quorum, messages and links.")
    @Option(help: "CPG group to join.") var group: String = "vigil-probe"
    @Option(help: "Seconds to run.") var seconds: Double = 5
    @Option(help: "Text to send to the group once joined (repeated --count times).") var send: String?
    @Option(help: "How many times to send it.") var count: Int = 1
    @Option(help: "Send only once the group has this many members.") var waitMembers: Int = 1
    @Option(help: "End once this many messages were delivered (0: run for --seconds).") var untilMessages: Int = 0

    func run() throws {
        let c: CorosyncClient
        do {
            c = try CorosyncClient(group: group)
        } catch {
            print("error \(error)")
            throw ExitCode(3)
        }
        let me = try c.localNode()
        let token = (try? c.cmapValue("runtime.config.totem.token")).map(String.init) ?? "-"
        let consensus = (try? c.cmapValue("runtime.config.totem.consensus")).map(String.init) ?? "-"
        print("local node=\(me) name=\((try? c.nodeName(me)) ?? "?") cluster=\((try? c.clusterName()) ?? "?") token=\(token) consensus=\(consensus)")
        let q = try c.quorumInfo()
        print("quorum-info quorate=\(q.quorate ? 1 : 0) expected=\(q.expectedVotes) total=\(q.totalVotes) quorum=\(q.quorum)")
        fflush(nil)
        var members: [UInt32] = []
        var ring: [UInt32] = []
        var quorate = q.quorate
        var messages = 0
        var sent = false
        let end = Date().addingTimeInterval(seconds)
        var failed = false
        loop: while Date() < end {
            var fds = [pollfd(fd: c.cpgFD, events: Int16(POLLIN), revents: 0), pollfd(fd: c.quorumFD, events: Int16(POLLIN), revents: 0)]
            _ = poll(&fds, 2, 50)
            var events: [CorosyncClient.Event] = []
            do {
                if fds[0].revents != 0 { events += try c.dispatchCPG() }
                if fds[1].revents != 0 { events += try c.dispatchQuorum() }
                try c.flush()
            } catch {
                print("error \(error)")
                failed = true
                break loop
            }
            for e in events {
                switch e {
                case let .members(m, joined, left):
                    members = m.map(\.node).sorted()
                    print("event members=\(members.map(String.init).joined(separator: ",")) joined=\(joined.map(String.init).joined(separator: ",")) left=\(left.map { "\($0.node):\($0.reason)" }.joined(separator: ","))")
                    if !sent, let text = send, members.contains(me), members.count >= waitMembers {
                        sent = true
                        for k in 0..<max(1, count) {
                            let body = count > 1 ? "\(text) \(k)" : text
                            do { try c.send(Array(body.utf8)) } catch {
                                print("error \(error)")
                                failed = true
                                break loop
                            }
                        }
                    }
                case let .message(from, _, bytes):
                    messages += 1
                    print("event message from=\(from) text=\(String(decoding: bytes, as: UTF8.self))")
                    if untilMessages > 0 && messages >= untilMessages { fflush(nil); break loop }
                case let .quorum(q, m):
                    quorate = q
                    print("event quorum quorate=\(q ? 1 : 0) members=\(m.sorted().map(String.init).joined(separator: ","))")
                case let .ring(seq, m):
                    ring = m.sorted()
                    print("event ring seq=\(seq) members=\(m.sorted().map(String.init).joined(separator: ","))")
                }
            }
            fflush(nil)
        }
        if !failed {
            for n in ring where n != me {
                if let l = try? c.links(to: n) {
                    print("links node=\(n) reachable=\(l.reachable ? 1 : 0) connected=\(l.connected.map { $0 ? "1" : "0" }.joined(separator: ","))")
                }
            }
        }
        print("summary members=\(members.map(String.init).joined(separator: ",")) ring=\(ring.map(String.init).joined(separator: ",")) quorate=\(quorate ? 1 : 0) messages=\(messages) queued=\(c.queuedSends) failed=\(failed ? 1 : 0)")
        fflush(nil)
        c.close()
        if failed { throw ExitCode(4) }
    }
}
