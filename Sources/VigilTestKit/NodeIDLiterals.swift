import VigilCore

/// Node ids as integer literals, for tests and simulations only (the core has none, so that
/// no `== 0` can stand for "no node" there). 0 is a test's mistake.
extension NodeID: ExpressibleByIntegerLiteral {
    public init(integerLiteral value: UInt32) {
        guard let id = NodeID(rawValue: value) else { preconditionFailure("node id 0 means no node") }
        self = id
    }
}

extension NodeID {
    /// Node `i` (from 1) in tests.
    public static func n(_ i: Int) -> NodeID {
        guard i > 0, let id = NodeID(rawValue: UInt32(i)) else { preconditionFailure("node ids start at 1") }
        return id
    }

    /// A node id drawn from `range` (tests' chaos schedules).
    public static func random<G: RandomNumberGenerator>(in range: ClosedRange<UInt32>, using rng: inout G) -> NodeID {
        n(Int(UInt32.random(in: range, using: &rng)))
    }
}
