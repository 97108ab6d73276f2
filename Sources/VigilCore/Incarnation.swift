/// A node's incarnation: a number that grows with every start of its `clusterd`, persisted in
/// its state directory. Peers tell a restart from a replay by it, and a node's first lease
/// epoch derives from it (`SupportLedger.firstEpoch`).
public enum Incarnation {
    public struct Damaged: Error, Equatable, CustomStringConvertible {
        public var description: String
    }

    /// The next incarnation after `stored` (the file's text, nil when there is none): larger than
    /// the stored one and than the wall clock in milliseconds (rounded to the second), and equal
    /// to `nodeIndex` (the node's position in the cluster file, below 32) modulo 32, so two nodes
    /// that start in the same second never share one. A file that does not hold a number, or one
    /// too large to grow, is an error: a reused incarnation would let peers take new packets for
    /// replays. Pure, for the tests.
    public static func next(stored: String?, nowSeconds: UInt64, nodeIndex: Int) throws(Damaged) -> UInt64 {
        let slots: UInt64 = 32
        guard nodeIndex >= 0, UInt64(nodeIndex) < slots else { throw Damaged(description: "node index \(nodeIndex) is not below \(slots)") }
        var last: UInt64 = 0
        if let stored {
            let t = String(String(stored.drop { $0.isWhitespace }.reversed()).drop { $0.isWhitespace }.reversed())
            guard let v = UInt64(t) else {
                throw Damaged(description: "holds '\(t.prefix(40))', not a number")
            }
            last = v
        }
        let ceiling = UInt64.max / 2
        guard last < ceiling, nowSeconds < ceiling / 1000 else { throw Damaged(description: "holds \(last), too large to grow") }
        var n = max(last + 1, nowSeconds * 1000)
        n += (UInt64(nodeIndex) + slots - n % slots) % slots
        return n
    }
}
