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
        /// A group stands for its members.
        func members(_ n: String) -> [String] { group(named: n)?.members ?? [n] }
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
        var state: [String: Int] = [:]
        var stack: [String] = []
        func visit(_ r: String) -> [String]? {
            if state[r] == 1 { return stack + [r] }
            if state[r] == 2 { return nil }
            state[r] = 1
            stack.append(r)
            for p in predecessors(of: r) { if let c = visit(p) { return c } }
            stack.removeLast()
            state[r] = 2
            return nil
        }
        for r in names { if let c = visit(r) { return c } }
        return nil
    }

    func colocationCycle() -> [String]? {
        var edges: [String: [String]] = [:]
        for c in colocations where c.score >= Score.infinity { edges[c.resource, default: []].append(c.with) }
        var state: [String: Int] = [:]
        var stack: [String] = []
        func visit(_ r: String) -> [String]? {
            if state[r] == 1 { return stack + [r] }
            if state[r] == 2 { return nil }
            state[r] = 1
            stack.append(r)
            for w in edges[r] ?? [] { if let c = visit(w) { return c } }
            stack.removeLast()
            state[r] = 2
            return nil
        }
        for r in edges.keys.sorted() { if let c = visit(r) { return c } }
        return nil
    }
}
