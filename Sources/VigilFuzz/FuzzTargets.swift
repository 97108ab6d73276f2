import VigilCore
import VigilSystem
import VigilWire

/// The parsers that face hostile input, as libFuzzer targets (`Examples/bench/fuzz.sh` builds one
/// executable per target around `run`) and as regression tests over the checked-in corpus
/// (`Tests/Fuzz/Corpus/<target>`). A target must never trap: a Swift runtime error is a crash.
/// Properties are checked where the fuzzer can reach them (decode(encode(m)) == m, a state file
/// read back is the one written), and break with `fatalError` so the fuzzer reports them.
public enum FuzzTargets {
    public static let all = ["envelope", "message", "config", "netlink", "statefile", "metadata", "engine"]

    /// The largest input worth trying per target (libFuzzer's -max_len).
    public static func maxLength(_ target: String) -> Int {
        switch target {
        case "config": return 65_536
        case "envelope", "message": return Envelope.maxPacket + 64
        default: return 16_384
        }
    }

    public static func run(_ target: String, _ data: [UInt8]) {
        switch target {
        case "envelope": envelope(data)
        case "message": message(data)
        case "config": config(data)
        case "netlink":
            // A dump's reply, and the same bytes read as address notifications.
            _ = AddressManager.parseDump(data[...], seq: 7)
            _ = AddressManager.parseRemovals(data[...])
        case "statefile": statefile(data)
        case "metadata": _ = AgentMetadata.parse(String(decoding: data, as: UTF8.self))
        case "engine": engine(data)
        default: fatalError("unknown fuzz target \(target)")
        }
    }

    static let authenticator = PacketAuthenticator(key: makeKey(Array(repeating: 0x5a, count: 32)))
    static let policy = Envelope.Policy(clusterKey: makeKey(Array(repeating: 0x5a, count: 32)))
    static let clusterId = Envelope.clusterId("fuzz")
    static let here = Envelope.Destination(node: 1, incarnation: 100, link: 0)

    /// Raw datagrams, as anyone can send them.
    static func envelope(_ d: [UInt8]) {
        if case .success(let (_, m)) = Envelope.open(d, authenticator: authenticator, policy: policy, clusterId: clusterId, at: here) { roundTrip(m) }
    }

    /// The decoder behind the MAC (and the encryption, for configuration kinds): the first byte
    /// is the kind, the rest the payload, sealed with the right keys so that only the message
    /// decoder judges it.
    static func message(_ d: [UInt8]) {
        guard let kind = d.first else { return }
        let header = Envelope.Header(kind: kind, link: 0, clusterId: clusterId, sender: 2, incarnation: 5, seq: 1, recipient: 1, recipientIncarnation: 100)
        let sealed = Envelope.seal(payload: Array(d.dropFirst()), header: header, authenticator: authenticator,
                                   cipher: policy.mustEncrypt(kind & ~Envelope.encryptedFlag) ? policy.cipher : nil)
        if case .success(let (_, m)) = Envelope.open(sealed, authenticator: authenticator, policy: policy, clusterId: clusterId, at: here) { roundTrip(m) }
    }

    static func roundTrip(_ m: Message) {
        let bytes = m.encodePayload()
        guard let back = try? Message.decode(kind: m.kind, payload: bytes), back == m else {
            fatalError("message kind \(m.kind) does not survive encode and decode")
        }
    }

    /// Whether the fixed cluster and resources the targets use parse (a target that returns
    /// early on every input fuzzes nothing; the tests check this).
    public static var ready: Bool { cluster != nil && engineResources != nil }

    static let cluster: ClusterConfig? = try? ClusterConfig.parse("""
        [cluster]
        name = "fuzz"
        key_file = "/nonexistent"
        [[link]]
        name = "ring0"
        port = 5405
        [[node]]
        name = "n1"
        id = 1
        addresses = ["10.0.0.1"]
        [[node]]
        name = "n2"
        id = 2
        addresses = ["10.0.0.2"]
        [[node]]
        name = "n3"
        id = 3
        addresses = ["10.0.0.3"]
        """, file: "fuzz")

    /// A cluster file, or a resources file for a fixed three-node cluster.
    static func config(_ d: [UInt8]) {
        let text = String(decoding: d, as: UTF8.self)
        _ = try? ClusterConfig.parse(text, file: "fuzz")
        if let cluster { _ = try? ResourceSet.parse(text, file: "fuzz", cluster: cluster) }
    }

    static func statefile(_ d: [UInt8]) {
        let text = String(decoding: d, as: UTF8.self)
        guard let r = try? VersionedResources.parseStateFile(text) else { return }
        guard let again = try? VersionedResources.parseStateFile(r.stateFileText), again == r else {
            fatalError("a state file read back differs from the one written")
        }
    }

    static let engineResources: ResourceSet? = cluster.flatMap { c in
        try? ResourceSet.parse("""
            [[ip]]
            name = "vip"
            address = "10.0.9.1/24"
            interface = "eth0"
            """, file: "fuzz", cluster: c)
    }

    /// Authenticated messages from peers, in any order and content, into node 1's engine:
    /// each record is [sender 2 or 3][kind][length u16][payload], with time advancing.
    static func engine(_ d: [UInt8]) {
        guard let cluster, let me = NodeID(rawValue: 1), let set = engineResources else { return }
        var engine = Engine(cluster: cluster, selfId: me, incarnation: 100, resources: VersionedResources(version: 1, text: ""), resourceSet: set, now: 1000)
        var now: UInt64 = 1000
        var i = 0
        var seq: UInt64 = 0
        while i + 4 <= d.count {
            let sender = NodeID(rawValue: UInt32(2 + d[i] % 2))
            let kind = d[i + 1]
            let n = Int(d[i + 2]) << 8 | Int(d[i + 3])
            i += 4
            let payload = Array(d[i..<min(d.count, i + n)])
            i += n
            now += UInt64(kind % 16) * 10
            seq += 1
            guard let sender, let m = try? Message.decode(kind: kind, payload: payload) else { continue }
            _ = engine.receive(from: sender, link: 0, incarnation: 5, seq: seq, message: m, now: now)
            _ = engine.tick(now: now)
        }
    }
}
