/// Just enough XML for agent meta-data: elements, attributes, text; comments, declarations
/// and DOCTYPE skipped; entities &lt; &gt; &amp; &quot; &apos; decoded.
public struct MiniXML: Sendable, Equatable {
    public var name: String
    public var attributes: [String: String]
    public var children: [MiniXML]
    public var text: String

    public func child(_ n: String) -> MiniXML? { children.first { $0.name == n } }

    /// Elements nest at most this deep (the reader recurses: deeper is refused, not a crash).
    public static let maxDepth = 64

    /// The top-level nodes, or nil when elements nest deeper than `maxDepth`.
    public static func parse(_ s: String) -> [MiniXML]? {
        var p = Parser(chars: s.unicodeScalars.map(Character.init))
        let nodes = p.parseNodes(until: nil)
        return p.tooDeep ? nil : nodes
    }

    struct Parser {
        let chars: [Character]
        var i = 0
        var depth = 0
        var tooDeep = false

        mutating func parseNodes(until closing: String?) -> [MiniXML] {
            var out: [MiniXML] = []
            while i < chars.count {
                if chars[i] == "<" {
                    if starts("<!--") { skip(past: "-->"); continue }
                    if starts("<?") { skip(past: "?>"); continue }
                    if starts("<!") { skip(past: ">"); continue }
                    if starts("</") {
                        skip(past: ">")
                        return out
                    }
                    if let e = parseElement() { out.append(e) }
                } else {
                    i += 1
                }
            }
            return out
        }

        mutating func parseElement() -> MiniXML? {
            depth += 1
            defer { depth -= 1 }
            guard depth <= MiniXML.maxDepth else {
                tooDeep = true
                i = chars.count
                return nil
            }
            i += 1
            var name = ""
            while i < chars.count, !chars[i].isWhitespace, chars[i] != ">", chars[i] != "/" { name.append(chars[i]); i += 1 }
            var attrs: [String: String] = [:]
            while i < chars.count {
                while i < chars.count, chars[i].isWhitespace { i += 1 }
                guard i < chars.count else { return nil }
                if chars[i] == "/" {
                    skip(past: ">")
                    return MiniXML(name: name, attributes: attrs, children: [], text: "")
                }
                if chars[i] == ">" { i += 1; break }
                var key = ""
                while i < chars.count, chars[i] != "=", !chars[i].isWhitespace, chars[i] != ">", chars[i] != "/" { key.append(chars[i]); i += 1 }
                while i < chars.count, chars[i].isWhitespace { i += 1 }
                guard i < chars.count, chars[i] == "=" else { continue }
                i += 1
                while i < chars.count, chars[i].isWhitespace { i += 1 }
                guard i < chars.count, chars[i] == "\"" || chars[i] == "'" else { continue }
                let q = chars[i]
                i += 1
                var v = ""
                while i < chars.count, chars[i] != q { v.append(chars[i]); i += 1 }
                i += 1
                attrs[key] = MiniXML.decode(v)
            }
            // Content: text and children until the closing tag.
            var text = ""
            var children: [MiniXML] = []
            while i < chars.count {
                if chars[i] == "<" {
                    if starts("</") {
                        skip(past: ">")
                        break
                    }
                    if starts("<!--") { skip(past: "-->"); continue }
                    if starts("<![CDATA[") {
                        i += 9
                        while i < chars.count, !starts("]]>") { text.append(chars[i]); i += 1 }
                        i += 3
                        continue
                    }
                    if let c = parseElement() { children.append(c) }
                } else {
                    text.append(chars[i])
                    i += 1
                }
            }
            return MiniXML(name: name, attributes: attrs, children: children, text: MiniXML.decode(text).trimmed())
        }

        func starts(_ s: String) -> Bool {
            var j = i
            for c in s {
                guard j < chars.count, chars[j] == c else { return false }
                j += 1
            }
            return true
        }

        mutating func skip(past s: String) {
            while i < chars.count && !starts(s) { i += 1 }
            i = min(chars.count, i + s.count)
        }
    }

    static func decode(_ s: String) -> String {
        guard s.contains("&") else { return s }
        var out = s
        for (e, c) in [("&lt;", "<"), ("&gt;", ">"), ("&quot;", "\""), ("&apos;", "'"), ("&amp;", "&")] {
            out = out.replacingAll(e, with: c)
        }
        return out
    }
}

extension String {
    /// Without leading and trailing whitespace (no Foundation needed).
    public func trimmed() -> String {
        String(self.drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }

    public func replacingAll(_ needle: String, with r: String) -> String {
        var out = ""
        var rest = Substring(self)
        while let range = rest.range(of: needle) {
            out += rest[..<range.lowerBound]
            out += r
            rest = rest[range.upperBound...]
        }
        return out + rest
    }
}
