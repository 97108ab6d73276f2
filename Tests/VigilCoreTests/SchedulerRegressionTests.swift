import Foundation
import XCTest
import VigilCore

/// Replays every Tests/VigilCoreTests/Scheduler/*.scenario through the scheduler and compares
/// its transition with the file's `=== expect` section. VIGIL_UPDATE_GOLDEN=1 rewrites the
/// expectations (review the diff before committing).
///
/// Scenario format:
/// ```
/// # what the case shows
/// nodes: n1 n2 n3          (ids 1, 2, 3 in this order)
/// offline: n3              (optional)
/// standby: n2              (optional)
/// running: web-ip@n1 web@n1
/// banned: web@n2           (failed there)
/// blocked: web@n1          (stop failed there)
/// fatal: web               (configuration error reported by the agent)
/// === resources
/// ... a resources file (TOML) ...
/// === expect
/// ... the scheduler's actions, placement and reasons ...
/// ```
final class SchedulerRegressionTests: XCTestCase {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scheduler")

    struct Scenario {
        var header: [String: [String]] = [:]
        var headerText = ""
        var resources = ""
        var expect = ""
    }

    static func parse(_ text: String) -> Scenario {
        var s = Scenario()
        var section = 0
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line == "=== resources" { section = 1; continue }
            if line == "=== expect" { section = 2; continue }
            switch section {
            case 0:
                s.headerText += line + "\n"
                let t = line.trimmingCharacters(in: .whitespaces)
                if t.hasPrefix("#") || t.isEmpty { continue }
                let kv = t.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                if kv.count == 2 { s.header[kv[0]] = kv[1].split(separator: " ").map(String.init) }
            case 1: s.resources += line + "\n"
            default: s.expect += line + "\n"
            }
        }
        return s
    }

    static func run(_ sc: Scenario, file: String) throws -> String {
        let names = sc.header["nodes"] ?? []
        var toml = "[cluster]\nname = \"t\"\nkey_file = \"/k\"\n[[link]]\nport = 1\n"
        for (i, n) in names.enumerated() { toml += "[[node]]\nname = \"\(n)\"\nid = \(i + 1)\naddresses = [\"10.0.0.\(i + 1)\"]\n" }
        let cluster = try ClusterConfig.parse(toml, file: file)
        let set = try ResourceSet.parse(sc.resources, file: file, cluster: cluster)
        func id(_ n: String) throws -> NodeID {
            guard let i = names.firstIndex(of: n) else { throw ConfigError(file: file, message: "unknown node \(n)") }
            return NodeID.n(i + 1)
        }
        let offline = Set(sc.header["offline"] ?? [])
        let standby = Set(sc.header["standby"] ?? [])
        let nodes = names.enumerated().map { Scheduler.Node(id: NodeID.n($0.offset + 1), name: $0.element, online: !offline.contains($0.element), standby: standby.contains($0.element)) }
        var state = Scheduler.State()
        func pairs(_ key: String) throws -> [(String, NodeID)] {
            try (sc.header[key] ?? []).map { p in
                let parts = p.split(separator: "@").map(String.init)
                guard parts.count == 2 else { throw ConfigError(file: file, message: "\(key): '\(p)' must be RESOURCE@NODE") }
                return (parts[0], try id(parts[1]))
            }
        }
        for (r, n) in try pairs("running") { state.running[r, default: []].insert(n) }
        for (r, n) in try pairs("banned") { state.banned[r, default: []].insert(n) }
        for (r, n) in try pairs("blocked") { state.blocked[r, default: []].insert(n) }
        state.fatal = Set(sc.header["fatal"] ?? [])
        let result = Scheduler.schedule(set, nodes: nodes, state: state)
        var out = result.actions.map(\.description)
        if out.isEmpty { out.append("(no actions)") }
        let placement = set.names.map { r in "\(r)=\(result.placement[r].map { names[Int($0.rawValue) - 1] } ?? "stopped")" }
        out.append("placement: " + placement.joined(separator: " "))
        for r in set.names { if let why = result.reasons[r] { out.append("reason \(r): \(why)") } }
        return out.joined(separator: "\n") + "\n"
    }

    func testScenarios() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.dir.path).filter { $0.hasSuffix(".scenario") }.sorted()
        XCTAssertGreaterThanOrEqual(files.count, 30, "the regression suite lost scenarios")
        let update = ProcessInfo.processInfo.environment["VIGIL_UPDATE_GOLDEN"] == "1"
        for f in files {
            let path = Self.dir.appendingPathComponent(f)
            let text = try String(contentsOf: path, encoding: .utf8)
            let sc = Self.parse(text)
            let got: String
            do {
                got = try Self.run(sc, file: f)
            } catch {
                XCTFail("\(f): \(error)")
                continue
            }
            if update {
                try (sc.headerText.trimmingCharacters(in: .newlines) + "\n=== resources\n" + sc.resources.trimmingCharacters(in: .newlines) + "\n=== expect\n" + got)
                    .write(to: path, atomically: true, encoding: .utf8)
            } else {
                XCTAssertEqual(got, sc.expect.trimmingCharacters(in: .newlines) + "\n", "\(f): scheduler output differs (VIGIL_UPDATE_GOLDEN=1 rewrites after review)")
            }
        }
    }

    /// Same input, same output: no dictionary order or randomness leaks into decisions.
    func testDeterministic() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.dir.path).filter { $0.hasSuffix(".scenario") }.sorted()
        for f in files.prefix(10) {
            let sc = Self.parse(try String(contentsOf: Self.dir.appendingPathComponent(f), encoding: .utf8))
            let a = try Self.run(sc, file: f)
            for _ in 0..<5 { XCTAssertEqual(try Self.run(sc, file: f), a, f) }
        }
    }
}
