import VigilCore
import VigilIPC
import VigilSystem
import VigilWire

/// `hactl history`: this node asks every reachable peer for its journal over the cluster's
/// authenticated transport, in pieces of one unfragmented datagram (`HistoryChunk`), merges
/// them with its own on its wall clock (see `History`), and answers hactl.
final class HistoryQuery {
    struct Fetch {
        var records: [JournalRecord] = []
        var cursor: UInt64 = 0
        var done = false
        var note: String?
        var lastProgress: UInt64
        var retries = 0
        var wallMinusMono: Int64?
    }
    let conn: OpaquePointer
    let since: Int64?
    let resource: String?
    let node: String?
    let deadline: UInt64
    var fetches: [NodeID: Fetch] = [:]
    var notes: [NodeID: String] = [:]
    init(conn: OpaquePointer, since: Int64?, resource: String?, node: String?, deadline: UInt64) {
        self.conn = conn
        self.since = since
        self.resource = resource
        self.node = node
        self.deadline = deadline
    }
    var finished: Bool { fetches.values.allSatisfy { $0.done || $0.note != nil } }
}

extension Daemon {
    /// The thread that runs what-if simulations and history merges off the loop (started once).
    func whatIf() throws -> OffLoop {
        if let t = whatIfThread { return t }
        let t = try OffLoop(name: "what-if") { [reactor] fd, f in reactor.add(fd: fd) { _ in f() } }
        whatIfThread = t
        return t
    }

    /// How long a history question waits for its peers, and for one piece before asking again.
    static let historyDeadlineMs: UInt64 = 5000
    static let historyRetryMs: UInt64 = 400
    /// A peer's clock may be this far off and its records still be sent for `--since`.
    static let historySinceMargin: Int64 = 3_600_000

    func historyRequest(_ req: IPCRequest, _ conn: OpaquePointer) -> IPCServer.Reply {
        let now = MonotonicClock.nowMs()
        guard historyQueries.count < 4 else { return .now(IPCResponse(ok: false, message: "too many history questions under way (at most 4); try again")) }
        let since = req.sinceMs.map { Int64(clamping: WallClock.nowMs()) - Int64(clamping: $0) }
        let id = nextRequestId
        nextRequestId += 1
        let q = HistoryQuery(conn: conn, since: since, resource: req.resource, node: req.node, deadline: now + Self.historyDeadlineMs)
        let members = Set(engine.nodeFacts().filter(\.member).map(\.name))
        for n in cluster.nodes where n.id != selfNode.id {
            if ownProtocol < Envelope.protocolVersion {
                q.notes[n.id] = "this node speaks protocol \(ownProtocol), which has no journal exchange: not included"
            } else if !members.contains(n.name) {
                q.notes[n.id] = "not reachable: its journal is not included"
            } else if let v = peerProtocol[n.id], v < Envelope.protocolVersion {
                q.notes[n.id] = "speaks protocol \(v), which has no journal exchange: not included"
            } else {
                q.fetches[n.id] = HistoryQuery.Fetch(lastProgress: now)
                askHistory(n.id, id: id, after: 0, since: since, now: now)
            }
        }
        historyQueries[id] = q
        if q.finished { finishHistory(id) }
        return .later
    }

    func askHistory(_ peer: NodeID, id: UInt64, after: UInt64, since: Int64?, now: UInt64) {
        send(.historyRequest(requestId: id, after: after, sinceWallMs: since.map { $0 - Self.historySinceMargin } ?? Int64.min, sentAt: now), to: peer)
    }

    /// A peer's question: up to `HistoryChunk.perRequest` pieces from memory. The same question
    /// arrives once per link and is answered once; a peer gets at most 64 answers a second.
    func answerHistory(from peer: NodeID, id: UInt64, after: UInt64, since: Int64, sentAt: UInt64, now: UInt64) {
        if let last = lastHistoryAnswer[peer], last.id == id, last.after == after, now < last.at + 100 { return }
        var budget = historyBudget[peer] ?? (count: 0, second: now / 1000)
        if budget.second != now / 1000 { budget = (0, now / 1000) }
        guard budget.count < 64 else { return }
        budget.count += 1
        historyBudget[peer] = budget
        lastHistoryAnswer[peer] = (id, after, now)
        let wallMinusMono = Int64(clamping: WallClock.nowMs()) - Int64(clamping: now)
        for piece in HistoryChunk.pieces(journal.records(after: after, sinceWallMs: since), after: after, requestId: id, echo: sentAt,
                                         monoAt: now, wallMinusMono: wallMinusMono) {
            send(.historyChunk(piece), to: peer)
        }
    }

    func receiveHistoryChunk(_ c: HistoryChunk, from peer: NodeID, now: UInt64) {
        // The answer is one more echo sample, held for no time at all.
        if c.echo > 0 { clockOffsets.record(peer: peer, sentAt: PeerTime(ms: c.monoAt), echo: c.echo, receivedAt: now) }
        guard let q = historyQueries[c.requestId], var f = q.fetches[peer], !f.done, f.note == nil, c.after == f.cursor else { return }
        f.records.append(contentsOf: c.records)
        if f.records.count > JournalStore.ringCapacity + 1024 { f.records.removeFirst(f.records.count - JournalStore.ringCapacity) }
        f.cursor = c.records.last?.seq ?? f.cursor
        f.wallMinusMono = c.wallMinusMono
        f.lastProgress = now
        f.retries = 0
        f.done = c.done
        q.fetches[peer] = f
        if !c.done && c.lastOfBatch { askHistory(peer, id: c.requestId, after: f.cursor, since: q.since, now: now) }
        if q.finished { finishHistory(c.requestId) }
    }

    /// Shell rounds: a piece lost is asked for again; a peer silent past the deadline is left out.
    func historyRound(now: UInt64) {
        for (id, q) in historyQueries {
            for (peer, var f) in q.fetches where !f.done && f.note == nil {
                if now >= q.deadline {
                    f.note = "answered \(f.records.count) records, then nothing within \(Self.historyDeadlineMs / 1000) s: incomplete"
                } else if now >= f.lastProgress + Self.historyRetryMs {
                    f.retries += 1
                    f.lastProgress = now
                    askHistory(peer, id: id, after: f.cursor, since: q.since, now: now)
                }
                q.fetches[peer] = f
            }
            if q.finished { finishHistory(id) }
        }
    }

    func finishHistory(_ id: UInt64) {
        guard let q = historyQueries.removeValue(forKey: id) else { return }
        let now = MonotonicClock.nowMs()
        let wall = Int64(clamping: WallClock.nowMs())
        let ownWallMinusMono = wall - Int64(clamping: now)
        let mine = Array(journal.records(after: 0, sinceWallMs: q.since ?? Int64.min))
        var sources = [History.Source(node: selfNode.name, wallOffsetMs: 0, uncertaintyMs: 0, records: mine)]
        var infos = [History.NodeInfo(name: selfNode.name, wallOffsetMs: 0, uncertaintyMs: 0, offsetSource: "self", records: mine.count, complete: true, note: nil)]
        for n in cluster.nodes where n.id != selfNode.id {
            guard let f = q.fetches[n.id] else {
                infos.append(History.NodeInfo(name: n.name, wallOffsetMs: nil, uncertaintyMs: nil, offsetSource: nil, records: 0, complete: false, note: q.notes[n.id]))
                continue
            }
            var offset: Double?, uncertainty: Double?, how: String?, note = f.note
            if let d = f.wallMinusMono, let e = clockOffsets.estimate(n.id) {
                // Its wall clock minus ours: its monotonic offset, and each side's wall minus monotonic.
                offset = e.offsetMs + (Double(d) - Double(ownWallMinusMono))
                uncertainty = e.uncertaintyMs + 1
                how = "heartbeat-echoes"
            } else if !f.records.isEmpty {
                note = (note.map { $0 + "; " } ?? "") + "clock offset not measured: its own wall clock is used"
            }
            sources.append(History.Source(node: n.name, wallOffsetMs: offset ?? 0, uncertaintyMs: uncertainty ?? 0, records: f.records))
            infos.append(History.NodeInfo(name: n.name, wallOffsetMs: offset, uncertaintyMs: uncertainty, offsetSource: how, records: f.records.count,
                                          complete: f.done, note: note))
        }
        // Merging a few thousand records is work for the what-if thread, not the loop.
        let (asker, timeout, since, resource, node, conn) = (selfNode.name, cluster.timing.timeout, q.since, q.resource, q.node, q.conn)
        let srcs = sources, nodes = infos
        let thread: OffLoop
        do { thread = try whatIf() } catch {
            ipc?.respond(IPCResponse(ok: false, message: "cannot merge the history now: \(error)"), to: conn)
            return
        }
        thread.run({
            History.report(asker: asker, generatedWallMs: wall, sources: srcs, nodes: nodes, timeoutMs: timeout, since: since, resource: resource, node: node)
        }, then: { [unowned self] report in
            var r = IPCResponse(ok: true)
            r.history = report
            self.ipc?.respond(r, to: conn)
        })
    }
}
