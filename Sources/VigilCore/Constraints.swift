/// Planned moves (`hactl move`, `ban`, `clear`), as Pacemaker's `crm_resource --move/--ban/--clear`:
/// `[[location]]` tables in the resources file, marked `origin = "hactl move"` or `"hactl ban"`,
/// optionally with `expires` (UTC, `YYYY-MM-DDTHH:MM:SSZ`). They are ordinary configuration: replicated and committed
/// like any change, shown by `hactl config show`, and listed by `hactl status`. Pure text edits:
/// the result is proposed like `hactl apply`, so a refused edit changes nothing.
public struct OperatorConstraint: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Codable { case move, ban }
    public var kind: Kind
    public var resource: String
    public var node: String
    /// Wall-clock milliseconds since 1970 when it ends (nil: until `hactl clear`).
    public var expiresMs: UInt64?

    public init(kind: Kind, resource: String, node: String, expiresMs: UInt64?) {
        self.kind = kind
        self.resource = resource
        self.node = node
        self.expiresMs = expiresMs
    }

    public var origin: String { "hactl \(kind.rawValue)" }

    /// One line for `hactl status`.
    public var summary: String {
        let what = kind == .move ? "prefers \(node)" : "banned from \(node)"
        return "\(resource) \(what) (\(origin), \(expiresMs.map { "until \(WallTime.format($0))" } ?? "until hactl clear \(resource)"))"
    }

    /// The table appended to the resources file.
    func table() -> String {
        var t = "# \(origin) \(resource)\(kind == .move ? " to" : " from") \(node); hactl clear \(resource) removes it\n"
        t += "[[location]]\nresource = \"\(resource)\"\nnode = \"\(node)\"\nscore = \"\(kind == .move ? "inf" : "-inf")\"\norigin = \"\(origin)\"\n"
        if let e = expiresMs { t += "expires = \"\(WallTime.format(e))\"\n" }
        return t
    }
}

public enum ConstraintEdit {
    /// What an operator asked for.
    public enum Request: Sendable, Equatable {
        /// To `node`, or away from where it runs (nil).
        case move(resource: String, node: String?, lifetimeMs: UInt64?)
        case ban(resource: String, node: String, lifetimeMs: UInt64?)
        case clear(resource: String)
    }

    public struct Result: Sendable, Equatable {
        public var text: String
        /// What the operator is told once the change is committed.
        public var message: String
    }

    public struct Refusal: Error, Sendable, Equatable, CustomStringConvertible {
        public var description: String
        public init(_ d: String) { description = d }
    }

    /// The resources text with the request applied. `runningOn`: where the resource (or its
    /// group) runs now, for a move without a node. A group member's constraint goes on its group.
    public static func apply(_ req: Request, to text: String, set: ResourceSet, cluster: ClusterConfig,
                             runningOn: [String], wallNowMs: UInt64) throws(Refusal) -> Result {
        func target(_ r: String) throws(Refusal) -> (name: String, note: String) {
            if let g = set.groups.first(where: { $0.members.contains(r) }) {
                return (g.name, " (a member of group \(g.name): the group moves as one)")
            }
            if let c = set.cloneInstance(r) { return (c.clone, " (an instance of clone \(c.clone): the constraint is the clone's)") }
            guard set.nameSet.contains(r) || set.group(named: r) != nil || set.clone(named: r) != nil else {
                throw Refusal("'\(r)' is not a resource or group of the current configuration")
            }
            return (r, "")
        }
        func node(_ n: String) throws(Refusal) -> String {
            guard let x = cluster.node(named: n) else { throw Refusal("'\(n)' is not a node of cluster '\(cluster.name)'") }
            guard x.role == .data else { throw Refusal("'\(n)' is a witness: it runs nothing") }
            return n
        }
        func until(_ lifetime: UInt64?) -> (UInt64?, String) {
            guard let l = lifetime else { return (nil, "it stays until hactl clear") }
            let e = wallNowMs + l
            return (e, "it ends at \(WallTime.format(e)), or with hactl clear")
        }
        switch req {
        case .clear(let r):
            let (name, note) = try target(r)
            let (out, removed) = removing(resource: name, from: text)
            guard removed > 0 else { throw Refusal("\(name) has no constraint from hactl move or ban\(note)") }
            return Result(text: out, message: "cleared \(removed) constraint\(removed == 1 ? "" : "s") of \(name) from hactl move/ban\(note)")
        case .move(let r, let n, let lifetime):
            let (name, note) = try target(r)
            let (e, how) = until(lifetime)
            let base = removing(resource: name, from: text).text
            if let n {
                let c = OperatorConstraint(kind: .move, resource: name, node: try node(n), expiresMs: e)
                return Result(text: appending(c, to: base), message: "\(name) moves to \(n)\(note); \(how) \(name)")
            }
            if set.clone(named: name) != nil { throw Refusal("\(name) is a clone: it runs on every node it may; ban it from a node (hactl ban \(name) NODE), or name a node to prefer") }
            guard let here = runningOn.first else { throw Refusal("\(name) runs nowhere now: name the node to move it to") }
            guard runningOn.count == 1 else { throw Refusal("\(name) runs on \(runningOn.joined(separator: ", ")) right now: name the node to move it to") }
            let c = OperatorConstraint(kind: .ban, resource: name, node: here, expiresMs: e)
            return Result(text: appending(c, to: base), message: "\(name) moves away from \(here) (banned there)\(note); \(how) \(name)")
        case .ban(let r, let n, let lifetime):
            let (name, note) = try target(r)
            let (e, how) = until(lifetime)
            let c = OperatorConstraint(kind: .ban, resource: name, node: try node(n), expiresMs: e)
            let existing = constraints(in: set).filter { $0.resource == name && $0.node == n }
            let base = existing.isEmpty ? text : removing(resource: name, node: n, from: text).text
            return Result(text: appending(c, to: base), message: "\(name) is banned from \(n)\(note); \(how) \(name)")
        }
    }

    /// The constraints hactl added, from a parsed resource set.
    public static func constraints(in set: ResourceSet) -> [OperatorConstraint] { set.operatorConstraints }

    /// The text without the constraints that ended by `wallNowMs` (nil: none ended).
    public static func expiring(_ text: String, set: ResourceSet, wallNowMs: UInt64) -> (text: String, ended: [OperatorConstraint])? {
        let ended = set.operatorConstraints.filter { ($0.expiresMs ?? UInt64.max) <= wallNowMs }
        guard !ended.isEmpty else { return nil }
        var out = text
        for c in ended { out = removing(resource: c.resource, node: c.node, from: out).text }
        return (out, ended)
    }

    static func appending(_ c: OperatorConstraint, to text: String) -> String { appendingBlock(c.table(), to: text) }

    /// Removes the `[[location]]` tables hactl added for `resource` (on `node`, if given), with
    /// the comment line above each. Returns the text and how many tables went.
    static func removing(resource: String, node: String? = nil, from text: String) -> (text: String, removed: Int) {
        removingTables(header: "[[location]]", from: text) { body in
            (body["origin"] ?? "").hasPrefix("hactl ") && body["resource"] == resource && (node == nil || body["node"] == node)
        }
    }

    static func appendingBlock(_ block: String, to text: String) -> String {
        var t = text
        if !t.isEmpty && !t.hasSuffix("\n") { t += "\n" }
        if !t.isEmpty && !t.hasSuffix("\n\n") { t += "\n" }
        return t + block
    }

    /// Removes every table `header` whose string keys satisfy `matches`, with a `# hactl ...`
    /// comment line right above it. Returns the text and how many tables went.
    static func removingTables(header: String, from text: String, matches: ([String: String]) -> Bool) -> (text: String, removed: Int) {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var keep = [Bool](repeating: true, count: lines.count)
        var removed = 0
        func trim<S: StringProtocol>(_ s: S) -> Substring {
            var t = Substring(s)
            while let f = t.first, f == " " || f == "\t" { t.removeFirst() }
            while let l = t.last, l == " " || l == "\t" || l == "\r" { t.removeLast() }
            return t
        }
        /// `key = "value"` lines of a table body.
        func strings(_ body: ArraySlice<String>) -> [String: String] {
            var out: [String: String] = [:]
            for line in body {
                let t = trim(line)
                guard let eq = t.firstIndex(of: "=") else { continue }
                let k = trim(t[..<eq]), v = trim(t[t.index(after: eq)...])
                guard v.count >= 2, v.hasPrefix("\""), v.hasSuffix("\"") else { continue }
                out[String(k)] = String(v.dropFirst().dropLast())
            }
            return out
        }
        var i = 0
        while i < lines.count {
            guard trim(lines[i]) == header else { i += 1; continue }
            var end = i + 1
            while end < lines.count && !trim(lines[end]).hasPrefix("[") { end += 1 }
            if matches(strings(lines[(i + 1)..<end])) {
                for k in i..<end { keep[k] = false }
                if i > 0 && lines[i - 1].hasPrefix("# hactl ") { keep[i - 1] = false }
                removed += 1
            }
            i = end
        }
        var out = zip(lines, keep).filter(\.1).map(\.0).joined(separator: "\n")
        while out.hasSuffix("\n\n\n") { out.removeLast() }
        return (out, removed)
    }
}

/// UTC wall time as `YYYY-MM-DDTHH:MM:SSZ`, both ways (no Foundation in the core).
public enum WallTime {
    public static func format(_ ms: UInt64) -> String {
        let s = Int64(ms / 1000)
        let days = s / 86_400, rem = s % 86_400
        let (y, m, d) = civil(fromDays: days)
        func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(y)-\(two(m))-\(two(d))T\(two(rem / 3600)):\(two(rem % 3600 / 60)):\(two(rem % 60))Z"
    }

    /// Parses exactly `YYYY-MM-DDTHH:MM:SSZ`; nil otherwise.
    public static func parse(_ text: String) -> UInt64? {
        let b = Array(text.utf8)
        guard b.count == 20, b[4] == 45, b[7] == 45, b[10] == 84, b[13] == 58, b[16] == 58, b[19] == 90 else { return nil }
        func num(_ r: Range<Int>) -> Int64? {
            var v: Int64 = 0
            for i in r { guard (48...57).contains(b[i]) else { return nil }; v = v * 10 + Int64(b[i] - 48) }
            return v
        }
        guard let y = num(0..<4), let mo = num(5..<7), let d = num(8..<10), let h = num(11..<13), let mi = num(14..<16), let s = num(17..<19),
              y >= 1970, (1...12).contains(mo), (1...31).contains(d), h < 24, mi < 60, s < 60 else { return nil }
        let days = daysFromCivil(y, mo, d)
        guard civil(fromDays: days) == (y, mo, d) else { return nil }
        return UInt64(days * 86_400 + h * 3600 + mi * 60 + s) * 1000
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    static func daysFromCivil(_ y0: Int64, _ m: Int64, _ d: Int64) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }
}
