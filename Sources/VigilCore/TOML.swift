/// A small, strict TOML reader for Vigil's configuration files.
///
/// It covers what the cluster and resource files use: tables, arrays of tables,
/// bare and quoted keys, dotted keys, basic and literal strings, integers,
/// floats, booleans, arrays and inline tables. Every value remembers the line it
/// came from so configuration errors can say exactly where they are.
/// Dates and multi-line strings are refused with a clear error rather than misread.

public struct TOMLError: Error, Equatable, CustomStringConvertible, Sendable {
    public let line: Int
    public let message: String
    public init(line: Int, message: String) {
        self.line = line
        self.message = message
    }
    public var description: String { "line \(line): \(message)" }
}

public indirect enum TOMLValue: Equatable, Sendable {
    case string(String)
    case integer(Int64)
    case float(Double)
    case bool(Bool)
    case array([TOMLNode])
    case table(TOMLTable)

    public var typeName: String {
        switch self {
        case .string: return "a string"
        case .integer: return "an integer"
        case .float: return "a float"
        case .bool: return "a boolean"
        case .array: return "an array"
        case .table: return "a table"
        }
    }
}

public struct TOMLNode: Equatable, Sendable {
    public var value: TOMLValue
    public var line: Int

    /// Moves the array out (leaving a placeholder), so the caller holds its only reference and
    /// can grow it in place; nil if this is no array.
    mutating func extractArray() -> [TOMLNode]? {
        guard case .array(let a) = value else { return nil }
        value = .bool(false)
        return a
    }

    mutating func extractTable() -> TOMLTable? {
        guard case .table(let t) = value else { return nil }
        value = .bool(false)
        return t
    }
}

/// An ordered table: keys keep the order in which they were written.
public struct TOMLTable: Equatable, Sendable {
    public private(set) var keys: [String] = []
    public private(set) var entries: [String: TOMLNode] = [:]
    public var line: Int
    /// Tables created implicitly by a dotted header may still be defined explicitly once.
    var implicit: Bool = false
    /// Inline tables and tables defined by `[header]` cannot be reopened.
    var sealed: Bool = false

    public init(line: Int) { self.line = line }

    public subscript(key: String) -> TOMLNode? { entries[key] }

    mutating func set(_ key: String, _ node: TOMLNode) {
        if entries[key] == nil && !keys.contains(key) { keys.append(key) }
        entries[key] = node
    }

    /// Removes the entry (keeping its place in `keys`) so that the caller holds the only
    /// reference to its storage and can grow it in place: appending to an array of a thousand
    /// tables must not copy the array each time. Put it back with `set`.
    mutating func take(_ key: String) -> TOMLNode? { entries.removeValue(forKey: key) }
}

public enum TOML {
    public static func parse(_ text: String) throws(TOMLError) -> TOMLTable {
        var parser = TOMLParser(text: text)
        return try parser.parseDocument()
    }
}

struct TOMLParser {
    let chars: [Character]
    var pos = 0
    var line = 1
    var root = TOMLTable(line: 1)
    /// Path of the table that key/value lines currently go to.
    var current: [PathStep] = []

    enum PathStep: Equatable {
        case key(String)
        case lastOf(String)  // last element of an array of tables
    }

    /// Arrays and inline tables nest at most this deep: the reader recurses, and a file of
    /// nothing but brackets must be an error, not a stack overflow.
    static let maxDepth = 32
    var depth = 0

    init(text: String) {
        // Unicode scalars, not Characters: in Swift "\r\n" is one Character (a file with CRLF
        // line ends would never see a "\n"), and a combining mark would merge with a quote. A
        // CR before LF is dropped: CRLF files read like LF files.
        var out: [Character] = []
        out.reserveCapacity(text.unicodeScalars.count)
        var lastCR = false
        for u in text.unicodeScalars {
            if lastCR && u != "\n" { out.append("\r") }
            lastCR = u == "\r"
            if !lastCR { out.append(Character(u)) }
        }
        if lastCR { out.append("\r") }
        self.chars = out
    }

    mutating func enterNesting() throws(TOMLError) {
        depth += 1
        guard depth <= Self.maxDepth else {
            throw TOMLError(line: line, message: "arrays and inline tables nested more than \(Self.maxDepth) deep")
        }
    }

    mutating func parseDocument() throws(TOMLError) -> TOMLTable {
        while true {
            skipWhitespaceAndComments(newlines: true)
            guard let c = peek() else { break }
            if c == "[" {
                try parseHeader()
            } else {
                let (keyPath, keyLine) = try parseKeyPath()
                skipInlineSpace()
                guard peek() == "=" else {
                    throw TOMLError(line: line, message: "expected '=' after key '\(keyPath.joined(separator: "."))'")
                }
                advance()
                skipInlineSpace()
                let value = try parseValue()
                try insert(value: value, keyPath: keyPath, at: keyLine)
            }
            try expectEndOfLine()
        }
        return root
    }

    // MARK: headers

    mutating func parseHeader() throws(TOMLError) {
        let headerLine = line
        advance()  // [
        let isArray = peek() == "["
        if isArray { advance() }
        skipInlineSpace()
        let (path, _) = try parseKeyPath()
        skipInlineSpace()
        guard peek() == "]" else { throw TOMLError(line: line, message: "expected ']' to close table header") }
        advance()
        if isArray {
            guard peek() == "]" else { throw TOMLError(line: line, message: "expected ']]' to close array-of-tables header") }
            advance()
        }
        var steps: [PathStep] = []
        for (i, k) in path.enumerated() {
            let last = i == path.count - 1
            if last && isArray {
                steps.append(.lastOf(k))
            } else {
                steps.append(.key(k))
            }
        }
        try Self.withTable(root: &root, steps: Array(steps.dropLast()), line: headerLine, create: true) { (t: inout TOMLTable) throws(TOMLError) in
            guard let lastKey = path.last else { return }
            if isArray {
                var arr: [TOMLNode] = []
                var arrayLine = headerLine
                if var existing = t.take(lastKey) {
                    // Only headers append here, and only tables: checking the last element suffices.
                    let lineOfExisting = existing.line
                    guard !t.sealed, let a = existing.extractArray(),
                          a.last.map({ if case .table = $0.value { return true } else { return false } }) ?? true else {
                        t.set(lastKey, existing)
                        throw TOMLError(line: headerLine, message: "'\(path.joined(separator: "."))' is already defined at line \(lineOfExisting) and is not an array of tables")
                    }
                    arrayLine = lineOfExisting
                    arr = consume a  // the only reference: appended in place
                }
                var nt = TOMLTable(line: headerLine)
                nt.sealed = false
                arr.append(TOMLNode(value: .table(nt), line: headerLine))
                t.set(lastKey, TOMLNode(value: .array(arr), line: arrayLine))
            } else {
                if let existing = t[lastKey] {
                    guard case .table(var et) = existing.value, et.implicit else {
                        throw TOMLError(line: headerLine, message: "table '\(path.joined(separator: "."))' is defined twice (first at line \(existing.line))")
                    }
                    et.implicit = false
                    et.line = headerLine
                    t.set(lastKey, TOMLNode(value: .table(et), line: headerLine))
                } else {
                    t.set(lastKey, TOMLNode(value: .table(TOMLTable(line: headerLine)), line: headerLine))
                }
            }
        }
        current = steps
    }

    /// Walks (creating implicit tables where allowed) to the table at `steps` and runs `body` on it.
    static func withTable(
        root: inout TOMLTable, steps: [PathStep], line: Int, create: Bool,
        _ body: (inout TOMLTable) throws(TOMLError) -> Void
    ) throws(TOMLError) {
        guard let first = steps.first else {
            try body(&root)
            return
        }
        let rest = Array(steps.dropFirst())
        switch first {
        case .key(let k):
            var sub: TOMLTable
            if let existing = root[k] {
                switch existing.value {
                case .table(let t):
                    if t.sealed { throw TOMLError(line: line, message: "cannot add to inline table '\(k)' defined at line \(existing.line)") }
                    sub = t
                case .array(let a):
                    // Dotted header through an array of tables addresses its last element.
                    guard case .table(var lastT)? = a.last?.value else {
                        throw TOMLError(line: line, message: "'\(k)' is \(existing.value.typeName) (line \(existing.line)), not a table")
                    }
                    try Self.withTable(root: &lastT, steps: rest, line: line, create: create, body)
                    var na = a
                    na[na.count - 1] = TOMLNode(value: .table(lastT), line: a[a.count - 1].line)
                    root.set(k, TOMLNode(value: .array(na), line: existing.line))
                    return
                default:
                    throw TOMLError(line: line, message: "'\(k)' is \(existing.value.typeName) (line \(existing.line)), not a table")
                }
            } else {
                guard create else { throw TOMLError(line: line, message: "no table '\(k)'") }
                sub = TOMLTable(line: line)
                sub.implicit = true
            }
            try Self.withTable(root: &sub, steps: rest, line: line, create: create, body)
            root.set(k, TOMLNode(value: .table(sub), line: root[k]?.line ?? line))
        case .lastOf(let k):
            guard var existing = root.take(k) else { throw TOMLError(line: line, message: "'\(k)' is not an array of tables") }
            let arrayLine = existing.line
            // Moved out, not copied: the last table is updated in place however long the array.
            guard var a = existing.extractArray(), var lastNode = a.popLast(), var lastT = lastNode.extractTable() else {
                root.set(k, existing)
                throw TOMLError(line: line, message: "'\(k)' is not an array of tables")
            }
            try Self.withTable(root: &lastT, steps: rest, line: line, create: create, body)
            lastNode.value = .table(lastT)
            a.append(lastNode)
            root.set(k, TOMLNode(value: .array(a), line: arrayLine))
        }
    }

    mutating func insert(value: TOMLNode, keyPath: [String], at keyLine: Int) throws(TOMLError) {
        var steps = current
        for k in keyPath.dropLast() { steps.append(.key(k)) }
        guard let lastKey = keyPath.last else { return }
        let dotted = keyPath.joined(separator: ".")
        try Self.withTable(root: &root, steps: steps, line: keyLine, create: true) { (t: inout TOMLTable) throws(TOMLError) in
            if let existing = t[lastKey] {
                throw TOMLError(line: keyLine, message: "key '\(dotted)' is defined twice (first at line \(existing.line))")
            }
            t.set(lastKey, value)
        }
    }

    // MARK: keys

    mutating func parseKeyPath() throws(TOMLError) -> ([String], Int) {
        let keyLine = line
        var parts: [String] = []
        while true {
            skipInlineSpace()
            parts.append(try parseSimpleKey())
            skipInlineSpace()
            if peek() == "." {
                advance()
                continue
            }
            break
        }
        return (parts, keyLine)
    }

    mutating func parseSimpleKey() throws(TOMLError) -> String {
        guard let c = peek() else { throw TOMLError(line: line, message: "expected a key, found end of file") }
        if c == "\"" { return try parseBasicString() }
        if c == "'" { return try parseLiteralString() }
        var s = ""
        while let c = peek(), c.isASCII, c.isLetter || c.isNumber || c == "_" || c == "-" {
            s.append(c)
            advance()
        }
        if s.isEmpty { throw TOMLError(line: line, message: "expected a key, found '\(c)'") }
        return s
    }

}

extension String {
    func replacingUnderscores() -> String { String(self.filter { $0 != "_" }) }
}
