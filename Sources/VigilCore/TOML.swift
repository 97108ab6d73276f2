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
    private let chars: [Character]
    private var pos = 0
    private var line = 1
    private var root = TOMLTable(line: 1)
    /// Path of the table that key/value lines currently go to.
    private var current: [PathStep] = []

    enum PathStep: Equatable {
        case key(String)
        case lastOf(String)  // last element of an array of tables
    }

    init(text: String) {
        self.chars = Array(text)
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

    private mutating func parseHeader() throws(TOMLError) {
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
        try withTable(root: &root, steps: Array(steps.dropLast()), line: headerLine, create: true) { (t: inout TOMLTable) throws(TOMLError) in
            guard let lastKey = path.last else { return }
            if isArray {
                var arr: [TOMLNode] = []
                var arrayLine = headerLine
                if var existing = t.take(lastKey) {
                    // Only headers append here, and only tables: checking the last element suffices.
                    guard case .array(let a) = existing.value, a.last.map({ if case .table = $0.value { return true } else { return false } }) ?? true,
                          !t.sealed else {
                        t.set(lastKey, existing)
                        throw TOMLError(line: headerLine, message: "'\(path.joined(separator: "."))' is already defined at line \(existing.line) and is not an array of tables")
                    }
                    arrayLine = existing.line
                    arr = a
                    existing = TOMLNode(value: .bool(false), line: 0)  // drop the other reference: append in place
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
    private func withTable(
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
                    try withTable(root: &lastT, steps: rest, line: line, create: create, body)
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
            try withTable(root: &sub, steps: rest, line: line, create: create, body)
            root.set(k, TOMLNode(value: .table(sub), line: root[k]?.line ?? line))
        case .lastOf(let k):
            guard var existing = root.take(k) else { throw TOMLError(line: line, message: "'\(k)' is not an array of tables") }
            guard case .array(var a) = existing.value, let lastNode = a.last, case .table(var lastT) = lastNode.value else {
                root.set(k, existing)
                throw TOMLError(line: line, message: "'\(k)' is not an array of tables")
            }
            // Only `a` refers to the array now: the last table is updated in place.
            let arrayLine = existing.line
            existing = TOMLNode(value: .bool(false), line: 0)
            a[a.count - 1] = TOMLNode(value: .bool(false), line: 0)
            try withTable(root: &lastT, steps: rest, line: line, create: create, body)
            a[a.count - 1] = TOMLNode(value: .table(lastT), line: lastNode.line)
            root.set(k, TOMLNode(value: .array(a), line: arrayLine))
        }
    }

    private mutating func insert(value: TOMLNode, keyPath: [String], at keyLine: Int) throws(TOMLError) {
        var steps = current
        for k in keyPath.dropLast() { steps.append(.key(k)) }
        guard let lastKey = keyPath.last else { return }
        let dotted = keyPath.joined(separator: ".")
        try withTable(root: &root, steps: steps, line: keyLine, create: true) { (t: inout TOMLTable) throws(TOMLError) in
            if let existing = t[lastKey] {
                throw TOMLError(line: keyLine, message: "key '\(dotted)' is defined twice (first at line \(existing.line))")
            }
            t.set(lastKey, value)
        }
    }

    // MARK: keys

    private mutating func parseKeyPath() throws(TOMLError) -> ([String], Int) {
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

    private mutating func parseSimpleKey() throws(TOMLError) -> String {
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

    // MARK: values

    private mutating func parseValue() throws(TOMLError) -> TOMLNode {
        let valueLine = line
        guard let c = peek() else { throw TOMLError(line: line, message: "expected a value, found end of file") }
        switch c {
        case "\"":
            if lookingAt("\"\"\"") { throw TOMLError(line: line, message: "multi-line strings are not supported here") }
            return TOMLNode(value: .string(try parseBasicString()), line: valueLine)
        case "'":
            if lookingAt("'''") { throw TOMLError(line: line, message: "multi-line strings are not supported here") }
            return TOMLNode(value: .string(try parseLiteralString()), line: valueLine)
        case "[":
            return TOMLNode(value: .array(try parseArray()), line: valueLine)
        case "{":
            return TOMLNode(value: .table(try parseInlineTable()), line: valueLine)
        case "t", "f":
            if lookingAt("true") {
                pos += 4
                return TOMLNode(value: .bool(true), line: valueLine)
            }
            if lookingAt("false") {
                pos += 5
                return TOMLNode(value: .bool(false), line: valueLine)
            }
            throw TOMLError(line: line, message: "unexpected value; strings need quotes")
        default:
            return TOMLNode(value: try parseNumber(), line: valueLine)
        }
    }

    private mutating func parseNumber() throws(TOMLError) -> TOMLValue {
        var s = ""
        while let c = peek(), c.isASCII, c.isLetter || c.isNumber || "+-_.".contains(c) {
            s.append(c)
            advance()
        }
        if s.isEmpty {
            throw TOMLError(line: line, message: "expected a value, found '\(peek().map(String.init) ?? "end of line")'")
        }
        if s.contains(where: { $0 == ":" }) || (s.count >= 10 && s.dropFirst(4).first == "-") {
            throw TOMLError(line: line, message: "dates and times are not supported here: '\(s)'")
        }
        let clean = s.replacingUnderscores()
        if let v = Int64(clean) { return .integer(v) }
        if clean.hasPrefix("0x"), let v = Int64(clean.dropFirst(2), radix: 16) { return .integer(v) }
        if clean.hasPrefix("0o"), let v = Int64(clean.dropFirst(2), radix: 8) { return .integer(v) }
        if clean.hasPrefix("0b"), let v = Int64(clean.dropFirst(2), radix: 2) { return .integer(v) }
        if clean.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }), let d = Double(clean) { return .float(d) }
        throw TOMLError(line: line, message: "'\(s)' is not a valid value (strings need quotes)")
    }

    private mutating func parseArray() throws(TOMLError) -> [TOMLNode] {
        advance()  // [
        var items: [TOMLNode] = []
        while true {
            skipWhitespaceAndComments(newlines: true)
            if peek() == "]" {
                advance()
                return items
            }
            items.append(try parseValue())
            skipWhitespaceAndComments(newlines: true)
            if peek() == "," {
                advance()
                continue
            }
            if peek() == "]" {
                advance()
                return items
            }
            throw TOMLError(line: line, message: "expected ',' or ']' in array")
        }
    }

    private mutating func parseInlineTable() throws(TOMLError) -> TOMLTable {
        let startLine = line
        advance()  // {
        var table = TOMLTable(line: startLine)
        skipInlineSpace()
        if peek() == "}" {
            advance()
            table.sealed = true
            return table
        }
        while true {
            skipInlineSpace()
            let (path, keyLine) = try parseKeyPath()
            skipInlineSpace()
            guard peek() == "=" else { throw TOMLError(line: line, message: "expected '=' in inline table") }
            advance()
            skipInlineSpace()
            let v = try parseValue()
            guard path.count == 1, let k = path.first else {
                throw TOMLError(line: keyLine, message: "dotted keys are not supported inside inline tables")
            }
            if let existing = table[k] {
                throw TOMLError(line: keyLine, message: "key '\(k)' is defined twice (first at line \(existing.line))")
            }
            table.set(k, v)
            skipInlineSpace()
            if peek() == "," {
                advance()
                continue
            }
            if peek() == "}" {
                advance()
                table.sealed = true
                return table
            }
            throw TOMLError(line: line, message: "expected ',' or '}' in inline table")
        }
    }

    private mutating func parseBasicString() throws(TOMLError) -> String {
        advance()  // "
        var s = ""
        while true {
            guard let c = peek() else { throw TOMLError(line: line, message: "unterminated string") }
            if c == "\n" { throw TOMLError(line: line, message: "unterminated string") }
            advance()
            if c == "\"" { return s }
            if c == "\\" {
                guard let e = peek() else { throw TOMLError(line: line, message: "unterminated string") }
                advance()
                switch e {
                case "n": s.append("\n")
                case "t": s.append("\t")
                case "r": s.append("\r")
                case "\\": s.append("\\")
                case "\"": s.append("\"")
                case "b": s.append("\u{08}")
                case "f": s.append("\u{0C}")
                case "u", "U":
                    let n = e == "u" ? 4 : 8
                    var hex = ""
                    for _ in 0..<n {
                        guard let h = peek(), h.isHexDigit else { throw TOMLError(line: line, message: "bad unicode escape") }
                        hex.append(h)
                        advance()
                    }
                    guard let v = UInt32(hex, radix: 16), let scalar = Unicode.Scalar(v) else {
                        throw TOMLError(line: line, message: "bad unicode escape")
                    }
                    s.unicodeScalars.append(scalar)
                default:
                    throw TOMLError(line: line, message: "unknown escape '\\\(e)' in string")
                }
            } else {
                s.append(c)
            }
        }
    }

    private mutating func parseLiteralString() throws(TOMLError) -> String {
        advance()  // '
        var s = ""
        while true {
            guard let c = peek(), c != "\n" else { throw TOMLError(line: line, message: "unterminated string") }
            advance()
            if c == "'" { return s }
            s.append(c)
        }
    }

    // MARK: lexing helpers

    private func peek() -> Character? { pos < chars.count ? chars[pos] : nil }

    private func lookingAt(_ s: String) -> Bool {
        var i = pos
        for c in s {
            guard i < chars.count, chars[i] == c else { return false }
            i += 1
        }
        return true
    }

    private mutating func advance() {
        if pos < chars.count {
            if chars[pos] == "\n" { line += 1 }
            pos += 1
        }
    }

    private mutating func skipInlineSpace() {
        while let c = peek(), c == " " || c == "\t" { advance() }
    }

    private mutating func skipWhitespaceAndComments(newlines: Bool) {
        while let c = peek() {
            if c == " " || c == "\t" || c == "\r" || (newlines && c == "\n") {
                advance()
            } else if c == "#" {
                while let d = peek(), d != "\n" { advance() }
            } else {
                break
            }
        }
    }

    private mutating func expectEndOfLine() throws(TOMLError) {
        skipInlineSpace()
        if peek() == "#" {
            while let d = peek(), d != "\n" { advance() }
        }
        if peek() == "\r" { advance() }
        guard let c = peek() else { return }
        guard c == "\n" else { throw TOMLError(line: line, message: "unexpected '\(c)' after value (one key = value per line)") }
        advance()
    }
}

extension String {
    fileprivate func replacingUnderscores() -> String { String(self.filter { $0 != "_" }) }
}
