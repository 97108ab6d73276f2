/// The recipient's side of `StatePage`: pages are assembled per (sender, part) for one
/// (incarnation, revision); a complete set waits for the heartbeat that names its revision.
struct PageKey: Hashable, Sendable {
    var sender: NodeID
    var part: StatePage.Part
}

struct PagedSet<Value: Sendable>: Sendable {
    var incarnation: UInt64
    var rev: UInt64
    var value: Value
}

extension Engine {
    /// Any copy of a page of the sender's current life counts, even one `Membership.heard`
    /// calls old: it may be the copy on a second link of a page lost on the first, after the
    /// heartbeat that follows it was taken. Pages are idempotent, and cause no directive.
    mutating func receivePage(_ p: StatePage, from sender: NodeID, incarnation inc: UInt64) {
        guard inc == peers[sender]?.incarnation else { return }
        let key = PageKey(sender: sender, part: p.part)
        var a = pageAssemblies[key] ?? PageAssembly(incarnation: inc, rev: p.rev, count: p.count)
        if a.incarnation != inc || a.rev != p.rev || a.count != p.count {
            a = PageAssembly(incarnation: inc, rev: p.rev, count: p.count)
        }
        a.pages[p.index] = p.entries
        // An authenticated peer that sends more names than any set holds starts over.
        guard a.pages.values.reduce(0, { $0 + $1.count }) <= Message.maxNames else {
            pageAssemblies[key] = nil
            return
        }
        guard let all = a.complete else {
            pageAssemblies[key] = a
            return
        }
        pageAssemblies[key] = nil
        switch p.part {
        case .facts:
            var h = Heartbeat(sentAt: 0)
            h.setFacts(all)
            h.factsRev = p.rev
            pagedFacts[sender] = PagedSet(incarnation: inc, rev: p.rev, value: h)
        case .assignments:
            var m: [String: NodeID] = [:]
            for e in all { if let n = NodeID(rawValue: e.value) { m[e.name] = n } }
            pagedAssignments[sender] = PagedSet(incarnation: inc, rev: p.rev, value: m)
        }
    }
}
