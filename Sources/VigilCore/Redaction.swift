/// Secrets in a resources file (fence devices' and agents' passwords) are never shown: `hactl
/// config show` prints the file with every string value of a secret key (`FenceDevice.isSecret`)
/// replaced, and, for users outside root and the admin group, every value of `params` (agents'
/// parameters often hold credentials under other names). Works on the text, so comments and
/// layout stay as the operator wrote them.
public enum Redaction {
    public static let mask = "********"

    /// Also the values of keys in `privateNames` (parameters some agent's meta-data marks private).
    public static func redactSecrets(_ text: String, privateNames: Set<String> = []) -> String {
        redact(text, allParameters: false, privateNames: privateNames)
    }

    /// `text` (an agent's output, for the log) with the value of every secret-looking parameter,
    /// and of every one in `privateNames`, replaced: agents may echo their command line,
    /// passwords included. `privateNames` nil (the agent's meta-data is not known yet): every
    /// parameter's value. Values shorter than 4 characters are left alone (they would mask
    /// ordinary words).
    public static func maskValues(of params: [AgentParam], in text: String, privateNames: Set<String>? = []) -> String {
        var out = text
        // Longest first: a value inside another (`postgres` in `postgres123`) must not leave part
        // of the longer one in clear.
        let secret = params.filter { p in p.value.count >= 4 && (FenceDevice.isSecret(p.name) || privateNames.map { $0.contains(p.name) } ?? true) }
        for p in secret.sorted(by: { $0.value.count > $1.value.count }) {
            out = out.replacing(p.value, with: mask)
        }
        return out
    }

    /// Also every string value under a `params` key (inline table or dotted keys).
    public static func redactParameters(_ text: String) -> String { redact(text, allParameters: true, privateNames: []) }

    static func redact(_ text: String, allParameters: Bool, privateNames: Set<String>) -> String {
        let s = Array(text.unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        // The dotted key being read (`params.password` is two parts), the key whose value comes
        // next (after `=`), and whether we are inside `params = { ... }`.
        var keyParts: [String] = []
        var afterDot = false
        var expecting: [String]?
        var inParams = false
        func isKeyChar(_ c: Unicode.Scalar) -> Bool {
            (c.value < 128) && (c.properties.isAlphabetic || c.properties.numericType != nil || c == "_" || c == "-")
        }
        func addKey(_ k: String) {
            keyParts = afterDot ? keyParts + [k] : [k]
            afterDot = false
        }
        func masked(_ key: [String]) -> Bool {
            guard let last = key.last else { return false }
            let param = inParams || (key.first == "params" && key.count > 1)
            return FenceDevice.isSecret(last) || (param && (allParameters || privateNames.contains(last)))
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
                if let key = expecting {
                    if masked(key) {
                        for k in 0..<q { out.append(s[i + k]) }
                        out.append(contentsOf: mask.unicodeScalars)
                        for k in max(i + q, j)..<end { out.append(s[k]) }
                    } else {
                        for k in i..<end { out.append(s[k]) }
                    }
                    expecting = nil
                    keyParts = []
                } else {
                    // A quoted key: remember it like a bare one.
                    addKey(String(String.UnicodeScalarView(s[min(s.count, i + q)..<min(s.count, j)])))
                    for k in i..<end { out.append(s[k]) }
                }
                i = end
                continue
            }
            if isKeyChar(c) && expecting == nil {
                var j = i
                while j < s.count && isKeyChar(s[j]) { j += 1 }
                addKey(String(String.UnicodeScalarView(s[i..<j])))
                out.append(contentsOf: s[i..<j])
                i = j
                continue
            }
            switch c {
            case "=":
                expecting = keyParts
                keyParts = []
            case ".":
                afterDot = expecting == nil
            case "{":
                if expecting == ["params"] { inParams = true }
                expecting = nil
                keyParts = []
            case "}":
                inParams = false
                expecting = nil
                keyParts = []
            case "\n", ",", "[", "]":
                expecting = nil
                keyParts = []
                afterDot = false
            case " ", "\t":
                break
            default:
                // A bare value (number, boolean): the assignment is done.
                expecting = nil
                keyParts = []
            }
            out.append(c)
            i += 1
        }
        return String(out)
    }
}
