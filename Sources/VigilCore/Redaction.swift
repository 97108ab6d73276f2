/// Secrets in a resources file (fence devices' and agents' passwords) are never shown: `hactl
/// config show` prints the file with every string value of a secret key (`FenceDevice.isSecret`)
/// replaced. Works on the text, so comments and layout stay as the operator wrote them.
public enum Redaction {
    public static let mask = "********"

    public static func redactSecrets(_ text: String) -> String {
        let s = Array(text.unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        var lastKey: String?
        var expectValueOf: String?
        func isKeyChar(_ c: Unicode.Scalar) -> Bool {
            (c.value < 128) && (c.properties.isAlphabetic || c.properties.numericType != nil || c == "_" || c == "-")
        }
        while i < s.count {
            let c = s[i]
            if c == "#" {
                // A comment runs to the end of the line.
                while i < s.count && s[i] != "\n" { out.append(s[i]); i += 1 }
                continue
            }
            if c == "\"" || c == "'" {
                let triple = i + 2 < s.count && s[i + 1] == c && s[i + 2] == c
                let q = triple ? 3 : 1
                var j = i + q
                // Find the closing quote(s); basic strings honour backslash escapes.
                while j < s.count {
                    if c == "\"" && s[j] == "\\" { j += 2; continue }
                    if s[j] == c && (!triple || (j + 2 < s.count && s[j + 1] == c && s[j + 2] == c)) { break }
                    j += 1
                }
                let end = min(s.count, j + q)
                if let key = expectValueOf, FenceDevice.isSecret(key) {
                    for k in 0..<q { out.append(s[i + k]) }
                    out.append(contentsOf: mask.unicodeScalars)
                    for k in max(i + q, j)..<end { out.append(s[k]) }
                } else if expectValueOf == nil {
                    // A quoted key: remember it like a bare one.
                    lastKey = String(String.UnicodeScalarView(s[min(s.count, i + q)..<min(s.count, j)]))
                    for k in i..<end { out.append(s[k]) }
                    i = end
                    continue
                } else {
                    for k in i..<end { out.append(s[k]) }
                }
                expectValueOf = nil
                lastKey = nil
                i = end
                continue
            }
            if isKeyChar(c) && expectValueOf == nil {
                var j = i
                while j < s.count && isKeyChar(s[j]) { j += 1 }
                lastKey = String(String.UnicodeScalarView(s[i..<j]))
                out.append(contentsOf: s[i..<j])
                i = j
                continue
            }
            if c == "=" {
                expectValueOf = lastKey
                lastKey = nil
            } else if c == "\n" || c == "," || c == "{" || c == "}" || c == "[" || c == "]" {
                expectValueOf = nil
                lastKey = nil
            } else if c != " " && c != "\t" && c != "." {
                if expectValueOf != nil { expectValueOf = nil }
            }
            out.append(c)
            i += 1
        }
        return String(out)
    }
}
