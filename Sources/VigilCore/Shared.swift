/// A value kept behind one immutable reference. Copying whatever holds it retains one object
/// instead of each of the value's own references; reading a field reads through the reference.
/// For large values that are copied often and replaced seldom (a peer's latest report travels
/// with the peer through every scan of the peers, and is replaced once per heartbeat). A change
/// replaces the box, so copies never share a change (value semantics are kept).
@propertyWrapper
public struct Shared<Value: Sendable>: Sendable {
    final class Box: Sendable {
        let value: Value
        init(_ value: Value) { self.value = value }
    }

    var box: Box

    public init(wrappedValue: Value) { box = Box(wrappedValue) }

    public var wrappedValue: Value {
        // Borrowed, not copied: `peer.report?.echo` reads one field without retaining (and
        // releasing) every list and map of the report.
        _read { yield box.value }
        set { box = Box(newValue) }
    }
}
