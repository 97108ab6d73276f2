@preconcurrency import Crypto
import VigilCore

/// The on-the-wire envelope of every cluster packet.
///
/// ```
/// offset size
///  0     4   magic "VGIL"
///  4     2   protocol version (big endian)
///  6     1   message kind
///  7     1   link index the packet was sent on
///  8     4   cluster id (FNV-1a of the cluster name, truncated)
/// 12     4   sender node id
/// 16     8   sender incarnation (grows with every start of clusterd)
/// 24     8   sequence number (per sender incarnation, grows with every packet)
/// 32     4   recipient node id
/// 36     8   recipient incarnation as the sender last heard it (0: not heard yet)
/// 44     4   payload length
/// 48     n   payload (see Message.encodePayload)
/// 48+n  32   HMAC-SHA256 over bytes 0..<48+n under the cluster key
/// ```
/// The magic and version come first and keep their place in every future version, so a peer
/// speaking another version is recognised and reported instead of misread.
///
/// Every packet is bound to one recipient, one life of it and one link: a packet from A to B
/// is refused at C, a packet for B's previous incarnation is refused by B, and a packet sent on
/// link 0 and resent on link 1 is refused there (it cannot keep a dead link looking alive).
/// Version 4 had no recipient: a heartbeat from A to B was valid at C. Version 6 added the
/// configuration's confirmation to the heartbeat's flags (bit 7, which version 5 refused).
/// Version 7 appends live migration's lines to a heartbeat (which version 6 refused as trailing bytes).
/// Version 8 adds the journal's messages (`historyRequest`, `historyChunk`: kinds 12 and 13).
public enum Envelope {
    public static let magic: [UInt8] = Array("VGIL".utf8)
    public static let protocolVersion: UInt16 = 8
    /// The version before, still accepted for one release so that a cluster upgrades one node at
    /// a time: a node answers a peer in the version the peer last spoke (see README, Upgrades).
    /// Version 7 packets are the same envelope; they never carry the history kinds.
    public static let previousVersion: UInt16 = 7
    /// The first version that knows live migration's heartbeat lines (no older one is accepted
    /// now; the engine still keeps migrations away from any peer below it).
    public static let migrationVersion: UInt16 = 7
    /// Message kinds the previous version does not know (never sent to a peer that speaks it).
    public static func isNew(kind: UInt8) -> Bool { kind >= 12 }
    public static let headerSize = 48
    public static let macSize = 32
    /// The largest packet any node sends (a configuration piece of 16 KiB, the standby list and
    /// the envelope). A longer datagram is dropped before its MAC is computed.
    public static let maxPacket = headerSize + Message.maxPayload + PacketCipher.tagSize + macSize

    public struct Header: Equatable, Sendable {
        public var kind: UInt8
        public var link: UInt8
        public var clusterId: UInt32
        public var sender: UInt32
        public var incarnation: UInt64
        public var seq: UInt64
        public var recipient: UInt32
        public var recipientIncarnation: UInt64
        /// The protocol version sealed into (or read from) the packet.
        public var version: UInt16
        public init(kind: UInt8, link: UInt8, clusterId: UInt32, sender: UInt32, incarnation: UInt64, seq: UInt64,
                    recipient: UInt32, recipientIncarnation: UInt64, version: UInt16 = Envelope.protocolVersion) {
            self.version = version
            self.kind = kind
            self.link = link
            self.clusterId = clusterId
            self.sender = sender
            self.incarnation = incarnation
            self.seq = seq
            self.recipient = recipient
            self.recipientIncarnation = recipientIncarnation
        }
    }

    /// Where a packet arrived: the node that reads it, in which life, on which link.
    public struct Destination: Equatable, Sendable {
        public var node: UInt32
        public var incarnation: UInt64
        public var link: UInt8
        public init(node: UInt32, incarnation: UInt64, link: UInt8) {
            self.node = node
            self.incarnation = incarnation
            self.link = link
        }
    }

    /// What is encrypted: configuration messages always (resource definitions carry agents'
    /// passwords), everything with `[cluster] encryption = "all"`. A message of a kind that must
    /// be encrypted and arrives in clear is refused: no downgrade.
    public struct Policy: Sendable {
        public let cipher: PacketCipher
        public let encryptAll: Bool
        /// configData, configProposal, configResult.
        public static let confidentialKinds: Set<UInt8> = [3, 4, 5]
        public init(clusterKey: SymmetricKey, encryptAll: Bool = false) {
            cipher = PacketCipher(clusterKey: clusterKey)
            self.encryptAll = encryptAll
        }
        public func mustEncrypt(_ kind: UInt8) -> Bool { encryptAll || Self.confidentialKinds.contains(kind) }
    }
    /// The kind byte's flag for an encrypted payload.
    public static let encryptedFlag: UInt8 = 0x80

    public enum OpenError: Error, Equatable, Sendable {
        case tooShort
        case notVigil
        case incompatibleVersion(UInt16)
        case badLength
        case badMAC
        case foreignCluster(UInt32)
        /// Authentic, but sealed for another node (or another life of this one).
        case otherRecipient(UInt32, UInt64)
        /// Authentic, but sent on another link than the one it arrived on.
        case otherLink(UInt8)
        case tooLong
        /// A kind that must be encrypted arrived in clear.
        case notEncrypted(UInt8)
        case undecryptable
        case malformed(String)
    }

    /// The recipient a packet's header names, unauthenticated: only to skip, without a MAC,
    /// what a group transport (Corosync's CPG delivers every message to every member) brings
    /// for another node. The recipient itself still checks everything.
    public static func declaredRecipient(_ bytes: [UInt8]) -> UInt32? {
        guard bytes.count >= 36 else { return nil }
        return UInt32(bytes[32]) << 24 | UInt32(bytes[33]) << 16 | UInt32(bytes[34]) << 8 | UInt32(bytes[35])
    }

    public static func clusterId(_ name: String) -> UInt32 { UInt32(truncatingIfNeeded: fnv1a64(Array(name.utf8))) }

    /// Seals `message` under the cluster key, encrypting it if the default policy says so.
    public static func seal(_ message: Message, header: Header, key: SymmetricKey) -> [UInt8] {
        var h = header
        h.kind = message.kind
        let policy = Policy(clusterKey: key)
        return seal(payload: message.encodePayload(), header: h, authenticator: PacketAuthenticator(key: key),
                    cipher: policy.mustEncrypt(h.kind) ? policy.cipher : nil)
    }

    /// Seals an already encoded payload (the same message goes out on every link); with a
    /// cipher, the payload is encrypted and the kind carries `encryptedFlag`.
    public static func seal(payload: [UInt8], header: Header, authenticator: PacketAuthenticator, cipher: PacketCipher? = nil) -> [UInt8] {
        let bodySize = payload.count + (cipher == nil ? 0 : PacketCipher.tagSize)
        var w = ByteWriter()
        w.reserve(headerSize + bodySize + macSize)
        w.raw(magic)
        w.u16(header.version)
        w.u8(cipher == nil ? header.kind : header.kind | encryptedFlag)
        w.u8(header.link)
        w.u32(header.clusterId)
        w.u32(header.sender)
        w.u64(header.incarnation)
        w.u64(header.seq)
        w.u32(header.recipient)
        w.u64(header.recipientIncarnation)
        w.u32(UInt32(bodySize))
        if let cipher {
            // The header (with the final length) is the associated data.
            w.raw(cipher.seal(payload, header: w.bytes, sender: header.sender, incarnation: header.incarnation, link: header.link, seq: header.seq))
        } else {
            w.raw(payload)
        }
        var bytes = w.bytes
        authenticator.appendMAC(to: &bytes)
        return bytes
    }

    /// Verifies and decodes a packet. Nothing in it is trusted before the MAC checks out.
    /// `at`: the node reading it; a packet sealed for another node, another incarnation of this
    /// one (0 passes: the sender had not heard this life yet) or another link is refused.
    public static func open(_ bytes: [UInt8], key: SymmetricKey, clusterId expected: UInt32, at: Destination) -> Result<(Header, Message), OpenError> {
        open(bytes, authenticator: PacketAuthenticator(key: key), policy: Policy(clusterKey: key), clusterId: expected, at: at)
    }

    public static func open(_ bytes: [UInt8], authenticator: PacketAuthenticator, policy: Policy, clusterId expected: UInt32,
                            at: Destination) -> Result<(Header, Message), OpenError> {
        guard bytes.count >= 6 else { return .failure(.tooShort) }
        guard bytes[0] == magic[0], bytes[1] == magic[1], bytes[2] == magic[2], bytes[3] == magic[3] else { return .failure(.notVigil) }
        let version = UInt16(bytes[4]) << 8 | UInt16(bytes[5])
        guard version == protocolVersion || version == previousVersion else { return .failure(.incompatibleVersion(version)) }
        guard bytes.count >= headerSize + macSize else { return .failure(.tooShort) }
        // Cheap checks first: no MAC is computed over a datagram no node sends.
        guard bytes.count <= maxPacket else { return .failure(.tooLong) }
        let declared = Int(bytes[44]) << 24 | Int(bytes[45]) << 16 | Int(bytes[46]) << 8 | Int(bytes[47])
        guard declared == bytes.count - headerSize - macSize else { return .failure(.badLength) }
        guard authenticator.verify(bytes) else { return .failure(.badMAC) }
        var r = ByteReader(bytes, offset: 6, end: bytes.count - macSize)
        do {
            let wireKind = try r.u8()
            let kind = wireKind & ~encryptedFlag
            let link = try r.u8()
            let cid = try r.u32()
            let sender = try r.u32()
            let inc = try r.u64()
            let seq = try r.u64()
            let recipient = try r.u32()
            let recipientInc = try r.u64()
            let len = Int(try r.u32())
            guard len == r.remaining else { return .failure(.badLength) }
            guard cid == expected else { return .failure(.foreignCluster(cid)) }
            guard recipient == at.node, recipientInc == at.incarnation || recipientInc == 0 else {
                return .failure(.otherRecipient(recipient, recipientInc))
            }
            guard link == at.link else { return .failure(.otherLink(link)) }
            var payload = try r.raw(len)
            if wireKind & encryptedFlag != 0 {
                guard let plain = policy.cipher.open(payload, header: Array(bytes[0..<headerSize]), sender: sender, incarnation: inc, link: link, seq: seq) else {
                    return .failure(.undecryptable)
                }
                payload = plain
            } else if policy.mustEncrypt(kind) {
                return .failure(.notEncrypted(kind))
            }
            let msg = try Message.decode(kind: kind, payload: payload)
            // (Version 7 knows no history messages; a packet claiming 7 that is one is not a version-7 packet.)
            if version == previousVersion, isNew(kind: kind) {
                return .failure(.malformed("message kind \(kind) in a packet of protocol version \(version), which has no such kind"))
            }
            let h = Header(kind: kind, link: link, clusterId: cid, sender: sender, incarnation: inc, seq: seq,
                           recipient: recipient, recipientIncarnation: recipientInc, version: version)
            return .success((h, msg))
        } catch {
            return .failure(.malformed(error.message))
        }
    }
}

/// HMAC-SHA256 (RFC 2104) under the cluster key, keyed once: the inner and outer hashes are
/// kept after absorbing the padded key, and every packet starts from copies of them. Built on
/// swift-crypto's SHA256 through its non-generic `update(bufferPointer:)` (its generic `HMAC`
/// looked up type metadata on every packet: a tenth of an idle node's CPU). Checked against
/// swift-crypto's HMAC and RFC 4231's vectors in the tests.
public struct PacketAuthenticator: @unchecked Sendable {
    private let inner: SHA256
    private let outer: SHA256

    public init(key: SymmetricKey) {
        let block = 64
        var k = key.withUnsafeBytes { Array($0) }
        if k.count > block { k = Array(SHA256.hash(data: k)) }
        k += [UInt8](repeating: 0, count: block - k.count)
        var i = SHA256()
        var o = SHA256()
        let ipad = k.map { $0 ^ 0x36 }
        let opad = k.map { $0 ^ 0x5c }
        ipad.withUnsafeBytes { i.update(bufferPointer: $0) }
        opad.withUnsafeBytes { o.update(bufferPointer: $0) }
        inner = i
        outer = o
    }

    /// The MAC of `bytes`, written to `into` (32 bytes).
    func mac(_ bytes: UnsafeRawBufferPointer, into: UnsafeMutableRawBufferPointer) {
        var i = inner
        i.update(bufferPointer: bytes)
        let d = i.finalize()
        var o = outer
        d.withUnsafeBytes { o.update(bufferPointer: $0) }
        o.finalize().withUnsafeBytes { into.copyMemory(from: $0) }
    }

    func appendMAC(to bytes: inout [UInt8]) {
        let n = bytes.count
        bytes.append(contentsOf: repeatElement(0, count: Envelope.macSize))
        bytes.withUnsafeMutableBytes { raw in
            mac(UnsafeRawBufferPointer(rebasing: raw[0..<n]), into: UnsafeMutableRawBufferPointer(rebasing: raw[n...]))
        }
    }

    /// The MAC of `data` (for the tests).
    public func mac(of data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Envelope.macSize)
        data.withUnsafeBytes { d in out.withUnsafeMutableBytes { mac(d, into: $0) } }
        return out
    }

    /// Whether the last `macSize` bytes are the MAC of the rest (compared in constant time).
    func verify(_ packet: UnsafeRawBufferPointer) -> Bool {
        guard packet.count >= Envelope.macSize else { return false }
        let n = packet.count - Envelope.macSize
        return withUnsafeTemporaryAllocation(byteCount: Envelope.macSize, alignment: 8) { computed in
            mac(UnsafeRawBufferPointer(rebasing: packet[0..<n]), into: computed)
            var diff: UInt8 = 0
            for i in 0..<Envelope.macSize { diff |= computed[i] ^ packet[n + i] }
            return diff == 0
        }
    }

    func verify(_ packet: [UInt8]) -> Bool { packet.withUnsafeBytes { verify($0) } }
}

/// ChaCha20-Poly1305 for payloads, under a key derived with HKDF-SHA256 from the cluster key
/// for each sender life (sender id and incarnation), with the nonce made of the link and the
/// sequence number: a (key, nonce) pair is never used twice, since a sender's sequence numbers
/// grow within its incarnation and each is sent once per link. The packet HMAC stays under the
/// cluster key itself; the encryption keys are derived from it, never used as it is.
public struct PacketCipher: @unchecked Sendable {
    static let tagSize = 16
    private let master: SymmetricKey

    public init(clusterKey: SymmetricKey) {
        master = HKDF<SHA256>.deriveKey(inputKeyMaterial: clusterKey, salt: Array("vigil".utf8),
                                        info: Array("vigil packet encryption (protocol 5)".utf8), outputByteCount: 32)
    }

    private func key(sender: UInt32, incarnation: UInt64) -> SymmetricKey {
        var info = ByteWriter()
        info.raw(Array("sender life".utf8))
        info.u32(sender)
        info.u64(incarnation)
        return HKDF<SHA256>.expand(pseudoRandomKey: master, info: info.bytes, outputByteCount: 32)
    }

    private static func nonce(link: UInt8, seq: UInt64) -> ChaChaPoly.Nonce? {
        var w = ByteWriter()
        w.raw([link, 0, 0, 0])
        w.u64(seq)
        return try? ChaChaPoly.Nonce(data: w.bytes)
    }

    /// Ciphertext followed by the 16-byte tag (empty on a failure that cannot happen with a
    /// 12-byte nonce; the MAC and the length then refuse the packet at the recipient).
    func seal(_ plain: [UInt8], header: [UInt8], sender: UInt32, incarnation: UInt64, link: UInt8, seq: UInt64) -> [UInt8] {
        guard let nonce = Self.nonce(link: link, seq: seq),
              let box = try? ChaChaPoly.seal(plain, using: key(sender: sender, incarnation: incarnation), nonce: nonce, authenticating: header) else { return [] }
        return Array(box.ciphertext) + Array(box.tag)
    }

    func open(_ sealed: [UInt8], header: [UInt8], sender: UInt32, incarnation: UInt64, link: UInt8, seq: UInt64) -> [UInt8]? {
        guard sealed.count >= Self.tagSize, let nonce = Self.nonce(link: link, seq: seq),
              let box = try? ChaChaPoly.SealedBox(nonce: nonce, ciphertext: sealed.dropLast(Self.tagSize), tag: sealed.suffix(Self.tagSize)),
              let plain = try? ChaChaPoly.open(box, using: key(sender: sender, incarnation: incarnation), authenticating: header) else { return nil }
        return Array(plain)
    }
}

/// Rejects replayed packets: per (sender, link), the sender's incarnation may only grow and,
/// within an incarnation, sequence numbers must grow.
public struct ReplayGuard: Sendable {
    private struct Key: Hashable { var sender: UInt32; var link: UInt8 }
    private var latest: [Key: (incarnation: UInt64, seq: UInt64)] = [:]
    private var incarnations: [UInt32: UInt64] = [:]

    public init() {}

    /// Returns true and records the packet if it is new; false for a replay.
    public mutating func accept(sender: UInt32, link: UInt8, incarnation: UInt64, seq: UInt64) -> Bool {
        if let known = incarnations[sender], incarnation < known { return false }
        let k = Key(sender: sender, link: link)
        if let last = latest[k], last.incarnation == incarnation, seq <= last.seq { return false }
        latest[k] = (incarnation, seq)
        incarnations[sender] = max(incarnations[sender] ?? 0, incarnation)
        return true
    }
}

/// Loads the cluster key from bytes already read and checked by the caller.
public func makeKey(_ bytes: [UInt8]) -> SymmetricKey { SymmetricKey(data: bytes) }
