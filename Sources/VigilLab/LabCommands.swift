import Foundation
import Glibc

/// The lab's network faults (links down, random frame loss in the switch) and how it runs
/// commands.
extension Lab {
    public func setLinks(_ i: Int, up: Bool) throws {
        for l in 0..<2 { try sh("ip", "-n", switchNS, "link", "set", hostVeth(i, l), up ? "up" : "down") }
    }

    /// Drops `percent` % of the frames between node ports on the given links, at random, in the
    /// switch (nftables `numgen random` in the bridge family); 0 removes the rule. Client
    /// traffic is never dropped.
    public func setLoss(percent: Int, links: [Int] = [0, 1]) throws {
        _ = Lab.run("/usr/sbin/ip", ["netns", "exec", switchNS, "nft", "delete", "table", "bridge", "vigil_loss"])
        guard percent > 0 else { return }
        let ports = links.flatMap { l in (1...options.nodes).map { "\"\(hostVeth($0, l))\"" } }.joined(separator: ", ")
        let rules = """
            table bridge vigil_loss {
                chain forward {
                    type filter hook forward priority 0; policy accept;
                    iifname { \(ports) } oifname { \(ports) } numgen random mod 100 < \(percent) counter drop
                }
            }
            """
        let r = Lab.run("/usr/sbin/ip", ["netns", "exec", switchNS, "nft", "-f", "-"], stdin: rules)
        guard r.code == 0 else { throw LabError("nft in \(switchNS) failed (\(r.code)): \(r.err)") }
    }

    /// Cuts every frame between the nodes of group `a` and those of group `b`, on both links, in
    /// the switch (the client still reaches all of them); nil lifts the cut.
    public func setSplit(_ groups: ([Int], [Int])?) throws {
        _ = Lab.run("/usr/sbin/ip", ["netns", "exec", switchNS, "nft", "delete", "table", "bridge", "vigil_split"])
        guard let (a, b) = groups else { return }
        func ports(_ g: [Int]) -> String { g.flatMap { i in (0..<2).map { "\"\(hostVeth(i, $0))\"" } }.joined(separator: ", ") }
        let rules = """
            table bridge vigil_split {
                chain forward {
                    type filter hook forward priority -10; policy accept;
                    iifname { \(ports(a)) } oifname { \(ports(b)) } counter drop
                    iifname { \(ports(b)) } oifname { \(ports(a)) } counter drop
                }
            }
            """
        let r = Lab.run("/usr/sbin/ip", ["netns", "exec", switchNS, "nft", "-f", "-"], stdin: rules)
        guard r.code == 0 else { throw LabError("nft in \(switchNS) failed (\(r.code)): \(r.err)") }
    }

    /// Frames the loss rule dropped so far.
    public func droppedFrames() -> Int {
        let out = Lab.run("/usr/sbin/ip", ["netns", "exec", switchNS, "nft", "list", "table", "bridge", "vigil_loss"]).out
        guard let r = out.range(of: "packets ") else { return 0 }
        return Int(out[r.upperBound...].prefix { $0.isNumber }) ?? 0
    }

    /// Opens (creating it) a log file for a daemon's output, positioned at its end.
    func appendingHandle(_ path: String) throws -> FileHandle {
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        guard let fh = FileHandle(forWritingAtPath: path) else { throw LabError("cannot open \(path)") }
        fh.seekToEndOfFile()
        return fh
    }

    // MARK: commands

    /// Runs a command found on PATH; throws with its error output when it fails.
    @discardableResult
    public func sh(_ args: String...) throws -> String {
        let r = Lab.run("/usr/bin/env", args)
        guard r.code == 0 else { throw LabError("\(args.joined(separator: " ")) failed (\(r.code)): \(r.err)") }
        return r.out
    }

    public func run(_ path: String, _ args: [String], stdin: String? = nil) -> (code: Int32, out: String, err: String) {
        Lab.run(path, args, stdin: stdin)
    }

    public static func run(_ path: String, _ args: [String], stdin: String? = nil) -> (code: Int32, out: String, err: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        let o = Pipe()
        let e = Pipe()
        p.standardOutput = o
        p.standardError = e
        let i = Pipe()
        p.standardInput = i
        do {
            try p.run()
        } catch {
            return (127, "", "\(error)")
        }
        if let stdin { i.fileHandleForWriting.write(Data(stdin.utf8)) }
        try? i.fileHandleForWriting.close()
        let od = o.fileHandleForReading.readDataToEndOfFile()
        let ed = e.fileHandleForReading.readDataToEndOfFile()
        // Closed now, not when Foundation lets go of the Process: a test that polls through
        // hundreds of commands otherwise runs out of descriptors.
        try? o.fileHandleForReading.close()
        try? e.fileHandleForReading.close()
        try? o.fileHandleForWriting.close()
        try? e.fileHandleForWriting.close()
        try? i.fileHandleForReading.close()
        return (waitExit(p), String(decoding: od, as: UTF8.self), String(decoding: ed, as: UTF8.self))
    }
}

extension Lab {
    /// Installs the example web server agent as ocf:vigil:httpd (what a Vigil package would ship).
    public static func installExampleAgent(from root: String) throws {
        let src = root + "/Examples/web-service/agents/httpd"
        let dir = "/usr/lib/ocf/resource.d/vigil"
        let dst = dir + "/httpd"
        let fm = FileManager.default
        guard let data = fm.contents(atPath: src) else { throw LabError("cannot read \(src)") }
        if fm.contents(atPath: dst) == data { return }
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let tmp = dst + ".tmp"
        guard fm.createFile(atPath: tmp, contents: data, attributes: [.posixPermissions: 0o755]) else { throw LabError("cannot write \(tmp)") }
        guard rename(tmp, dst) == 0 else { throw LabError("cannot install \(dst)") }
    }
}
