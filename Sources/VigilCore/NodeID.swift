/// A node's identity: the `id` of its `[[node]]` entry in the cluster file, from 1 up.
///
/// Never zero: "no node" (no vote, no coordinator, no phase reference) is `nil` in the types,
/// and 0 only on the wire, where `ByteWriter.node` and `ByteReader.node` translate it. (No
/// integer literals here, so that no `== 0` can slip back in; the test kit adds them.)
public struct NodeID: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    public let rawValue: UInt32

    /// nil for 0, which is no node.
    public init?(rawValue: UInt32) {
        guard rawValue != 0 else { return nil }
        self.rawValue = rawValue
    }

    public static func < (a: NodeID, b: NodeID) -> Bool { a.rawValue < b.rawValue }
    public var description: String { String(rawValue) }

    public init(from decoder: any Decoder) throws {
        let v = try decoder.singleValueContainer().decode(UInt32.self)
        guard v != 0 else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "node id 0 means no node"))
        }
        rawValue = v
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
}

extension ByteWriter {
    /// A node id on the wire; 0 for none.
    public mutating func node(_ id: NodeID?) { u32(id?.rawValue ?? 0) }

    /// A map from node ids to numbers: a count, then the pairs in id order.
    public mutating func nodeMap(_ map: [NodeID: UInt64]) {
        u16(UInt16(map.count))
        for (k, v) in map.sorted(by: { $0.key < $1.key }) {
            node(k)
            u64(v)
        }
    }
}

extension ByteReader {
    /// A node id that may be none (0 on the wire).
    public mutating func optionalNode() throws(DecodeError) -> NodeID? { NodeID(rawValue: try u32()) }

    /// A node id that must name a node.
    public mutating func node() throws(DecodeError) -> NodeID {
        guard let id = NodeID(rawValue: try u32()) else { throw DecodeError("node id 0 where a node is required") }
        return id
    }
}
