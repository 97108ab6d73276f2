/// Components of the resource graph (see `ResourceSet.componentIndex`).
extension ResourceSet {
    public func component(of r: String) -> Int { componentIndex[r] ?? -1 }

    mutating func buildComponents() {
        var parent: [String: String] = [:]
        func find(_ x: String) -> String {
            var x = x
            while let p = parent[x], p != x { x = p }
            return x
        }
        func union(_ a: String, _ b: String) {
            let ra = find(a), rb = find(b)
            if ra != rb { parent[ra] = rb }
        }
        /// A group stands for its members, a clone for its instances.
        func members(_ n: String) -> [String] { expand(n) }
        for r in names { parent[r] = r }
        for g in groups { for m in g.members.dropFirst() { union(g.members[0], m) } }
        for o in orderings { for a in members(o.first) { for b in members(o.then) { union(a, b) } } }
        for c in colocations { for a in members(c.resource) { for b in members(c.with) { union(a, b) } } }
        var numbers: [String: Int] = [:]
        componentIndex = [:]
        for r in names {
            let root = find(r)
            if numbers[root] == nil { numbers[root] = numbers.count }
            componentIndex[r] = numbers[root]
        }
    }
}

/// Cycles the configuration reader refuses.
extension ResourceSet {
    /// A cycle in start order (groups and [[order]]), if any.
    func dependencyCycle() -> [String]? {
        Self.firstCycle(from: names) { predecessors(of: $0) }
    }

    /// A cycle of mandatory colocations, if any.
    func colocationCycle() -> [String]? {
        var edges: [String: [String]] = [:]
        for c in colocations where c.score >= Score.infinity { edges[c.resource, default: []].append(c.with) }
        return Self.firstCycle(from: edges.keys.sorted()) { edges[$0] ?? [] }
    }

    /// Depth-first search from each of `starts` in turn: the first path that comes back to a
    /// node on it, ending with that node.
    static func firstCycle(from starts: [String], next: (String) -> [String]) -> [String]? {
        var state: [String: Int] = [:]  // 1: on the path, 2: done
        var stack: [String] = []
        func visit(_ r: String) -> [String]? {
            if state[r] == 1 { return stack + [r] }
            if state[r] == 2 { return nil }
            state[r] = 1
            stack.append(r)
            for n in next(r) { if let c = visit(n) { return c } }
            stack.removeLast()
            state[r] = 2
            return nil
        }
        for r in starts { if let c = visit(r) { return c } }
        return nil
    }
}
