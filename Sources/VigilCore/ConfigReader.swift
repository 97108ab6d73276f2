/// A configuration problem: which file, which line, which key, what is wrong.
public struct ConfigError: Error, Equatable, CustomStringConvertible, Sendable {
    public var file: String
    public var line: Int?
    public var key: String?
    public var message: String

    public init(file: String, line: Int? = nil, key: String? = nil, message: String) {
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    public var description: String {
        var s = file
        if let line { s += ":\(line)" }
        s += ": "
        if let key { s += "\(key): " }
        return s + message
    }
}

/// Reads typed values out of a TOML table, remembering which keys were used so
/// that unknown (misspelt) keys are reported instead of silently ignored.
public struct TableReader {
    public let table: TOMLTable
    public let path: String
    public let file: String
    private var used: Set<String> = []

    public init(_ table: TOMLTable, path: String, file: String) {
        self.table = table
        self.path = path
        self.file = file
    }

    public func keyPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    public func error(_ key: String?, _ message: String, line: Int? = nil) -> ConfigError {
        let l = line ?? key.flatMap { table[$0]?.line } ?? table.line
        return ConfigError(file: file, line: l, key: key.map(keyPath) ?? (path.isEmpty ? nil : path), message: message)
    }

    public mutating func has(_ key: String) -> Bool { table[key] != nil }

    public mutating func string(_ key: String) throws(ConfigError) -> String? {
        used.insert(key)
        guard let node = table[key] else { return nil }
        guard case .string(let s) = node.value else { throw error(key, "expected a string, found \(node.value.typeName)") }
        return s
    }

    public mutating func requiredString(_ key: String) throws(ConfigError) -> String {
        guard let s = try string(key) else { throw error(nil, "missing required key '\(key)'") }
        return s
    }

    public mutating func int(_ key: String, range: ClosedRange<Int64>? = nil) throws(ConfigError) -> Int64? {
        used.insert(key)
        guard let node = table[key] else { return nil }
        guard case .integer(let v) = node.value else { throw error(key, "expected an integer, found \(node.value.typeName)") }
        if let range, !range.contains(v) {
            throw error(key, "\(v) is out of range (\(range.lowerBound)...\(range.upperBound))")
        }
        return v
    }

    public mutating func bool(_ key: String) throws(ConfigError) -> Bool? {
        used.insert(key)
        guard let node = table[key] else { return nil }
        guard case .bool(let v) = node.value else { throw error(key, "expected true or false, found \(node.value.typeName)") }
        return v
    }

    public mutating func stringArray(_ key: String) throws(ConfigError) -> [String]? {
        used.insert(key)
        guard let node = table[key] else { return nil }
        guard case .array(let items) = node.value else { throw error(key, "expected an array of strings, found \(node.value.typeName)") }
        var out: [String] = []
        for item in items {
            guard case .string(let s) = item.value else {
                throw error(key, "expected an array of strings, found \(item.value.typeName) inside", line: item.line)
            }
            out.append(s)
        }
        return out
    }

    public mutating func subtable(_ key: String) throws(ConfigError) -> TableReader? {
        used.insert(key)
        guard let node = table[key] else { return nil }
        guard case .table(let t) = node.value else { throw error(key, "expected a table, found \(node.value.typeName)") }
        return TableReader(t, path: keyPath(key), file: file)
    }

    public mutating func tableArray(_ key: String) throws(ConfigError) -> [TableReader] {
        used.insert(key)
        guard let node = table[key] else { return [] }
        guard case .array(let items) = node.value else {
            throw error(key, "expected [[\(keyPath(key))]] entries, found \(node.value.typeName)")
        }
        var out: [TableReader] = []
        for (i, item) in items.enumerated() {
            guard case .table(let t) = item.value else {
                throw error(key, "expected [[\(keyPath(key))]] entries, found \(item.value.typeName)", line: item.line)
            }
            out.append(TableReader(t, path: "\(keyPath(key))[\(i)]", file: file))
        }
        return out
    }

    public mutating func stringMap(_ key: String) throws(ConfigError) -> [(key: String, value: String, line: Int)]? {
        used.insert(key)
        guard let node = table[key] else { return nil }
        guard case .table(let t) = node.value else { throw error(key, "expected a table of strings, found \(node.value.typeName)") }
        var out: [(key: String, value: String, line: Int)] = []
        for k in t.keys {
            guard let n = t[k] else { continue }
            guard case .string(let s) = n.value else {
                throw error(key, "entry '\(k)' must be a string, found \(n.value.typeName)", line: n.line)
            }
            out.append((k, s, n.line))
        }
        return out
    }

    /// Fails on the first key that was never asked for.
    public func finish() throws(ConfigError) {
        for k in table.keys where !used.contains(k) {
            let line = table[k]?.line
            throw ConfigError(file: file, line: line, key: keyPath(k), message: "unknown key")
        }
    }
}

public func parseTOML(_ text: String, file: String) throws(ConfigError) -> TOMLTable {
    do {
        return try TOML.parse(text)
    } catch {
        throw ConfigError(file: file, line: error.line, message: error.message)
    }
}
