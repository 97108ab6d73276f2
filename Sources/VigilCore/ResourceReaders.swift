/// Readers shared by the tables of the resources file: scores, the options of [[ip]] and
/// [[resource]], interface names.
extension ResourceSet {
    static func readScore(_ t: inout TableReader) throws(ConfigError) -> Int {
        if let i = try? t.int("score") { return max(-Score.infinity, min(Score.infinity, Int(i))) }
        guard let s = try t.string("score") else { return Score.infinity }
        guard let v = Score.parse(s) else { throw t.error("score", "'\(s)' is not a score (an integer, \"inf\" or \"-inf\")") }
        return v
    }

    /// Options shared by [[ip]] and [[resource]]; `preferred` becomes location scores
    /// 50, 40, 30... (below the default stickiness of 100).
    static func readOptions(_ t: inout TableReader, preferred: [String], nodeNames: Set<String>, cluster: ClusterConfig) throws(ConfigError) -> ResourceOptions {
        var o = ResourceOptions()
        if let s = try t.int("stickiness", range: 0...1_000_000) { o.stickiness = Int(s) }
        if let role = try t.string("target_role") {
            switch role {
            case "started": o.started = true
            case "stopped": o.started = false
            default: throw t.error("target_role", "'\(role)' is not one of: started, stopped")
            }
        }
        if let m = try t.int("migration_threshold", range: 1...1_000_000) { o.migrationThreshold = Int(m) }
        if let f = try t.int("failure_timeout_ms", range: 0...31_536_000_000) { o.failureTimeoutMs = UInt64(f) }
        for (i, p) in preferred.enumerated() { o.locations[p] = max(10, 50 - 10 * i) }
        return o
    }

    static func checkInterfaceName(_ s: String, reader: TableReader, key: String) throws(ConfigError) {
        // Linux IFNAMSIZ is 16 including the NUL; '/' and whitespace are never valid.
        if s.isEmpty || s.utf8.count > 15 || s.contains("/") || s.contains(where: { $0.isWhitespace }) || s == "." || s == ".." {
            throw ConfigError(file: reader.file, line: reader.table.line, key: reader.keyPath(key), message: "'\(s)' is not a valid interface name (1-15 characters, no '/' or spaces)")
        }
    }
}
