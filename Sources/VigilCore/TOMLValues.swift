/// Values, strings and lexing of Vigil's TOML reader (see TOML.swift).
extension TOMLParser {
    // MARK: values

    mutating func parseValue() throws(TOMLError) -> TOMLNode {
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

    mutating func parseNumber() throws(TOMLError) -> TOMLValue {
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
        // All digits (after a sign or a base prefix) but too large for 64 bits.
        var digits = Substring(clean)
        if digits.first == "+" || digits.first == "-" { digits = digits.dropFirst() }
        var radix = 10
        for (prefix, r) in [("0x", 16), ("0o", 8), ("0b", 2)] where digits.hasPrefix(prefix) {
            digits = digits.dropFirst(2)
            radix = r
        }
        if !digits.isEmpty && digits.allSatisfy({ $0.hexDigitValue.map { $0 < radix } ?? false }) {
            throw TOMLError(line: line, message: "'\(s)' is out of range (integers are 64-bit: -9223372036854775808...9223372036854775807)")
        }
        throw TOMLError(line: line, message: "'\(s)' is not a valid value (strings need quotes)")
    }

    mutating func parseArray() throws(TOMLError) -> [TOMLNode] {
        try enterNesting()
        defer { depth -= 1 }
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

    mutating func parseInlineTable() throws(TOMLError) -> TOMLTable {
        let startLine = line
        try enterNesting()
        defer { depth -= 1 }
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

    mutating func parseBasicString() throws(TOMLError) -> String {
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

    mutating func parseLiteralString() throws(TOMLError) -> String {
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

    func peek() -> Character? { pos < chars.count ? chars[pos] : nil }

    func lookingAt(_ s: String) -> Bool {
        var i = pos
        for c in s {
            guard i < chars.count, chars[i] == c else { return false }
            i += 1
        }
        return true
    }

    mutating func advance() {
        if pos < chars.count {
            if chars[pos] == "\n" { line += 1 }
            pos += 1
        }
    }

    mutating func skipInlineSpace() {
        while let c = peek(), c == " " || c == "\t" { advance() }
    }

    mutating func skipWhitespaceAndComments(newlines: Bool) {
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

    mutating func expectEndOfLine() throws(TOMLError) {
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
