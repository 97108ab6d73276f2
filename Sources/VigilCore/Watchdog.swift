/// Watchdog self-fencing, as diskless SBD does it: each data node's guardian holds a hardware
/// (or softdog) watchdog open and pets it only while the node may keep what it runs. A node that
/// runs (or may be starting, stopping or failing to stop) a `requires = "fencing"` resource stops
/// petting when its lease ends, so a node cut off or hung is reset within the watchdog's timeout
/// after its lease ended; the coordinator counts a lost node as fenced at the majority's
/// withdrawal of its lease + timeout·(1+ρ) + margin. A node whose stop of such a resource failed
/// stops petting at once (it resets itself). Without such a resource the guardian pets freely.
public struct Watchdog: Sendable, Equatable {
    /// The device; `{node}` stands for the node's name (a per-node path, e.g. in a lab).
    public var device: String
    /// Whole seconds, as the kernel's WDIOC_SETTIMEOUT takes them.
    public var timeoutS: Int

    public init(device: String, timeoutS: Int) {
        self.device = device
        self.timeoutS = timeoutS
    }

    public func device(for node: String) -> String { device.replacingPlaceholder(node) }

    /// Added to the wait after a withdrawal: the guardian's own wake-up delay and a reset's
    /// last moments (the machine stops within the timeout; its NICs a little later).
    public static let marginMs: UInt64 = 1000
    /// How long after a majority withdrew its lease (or after its stop failed) a node with a
    /// watchdog has certainly been reset: the timeout stretched by the clock bound (1/1000), plus the margin.
    public var fenceDelayMs: UInt64 { UInt64(timeoutS) * 1000 + UInt64(timeoutS) + Self.marginMs }

    /// Pet-until value meaning "no deadline: pet while the guardian lives".
    public static let petFreely = UInt64.max

    /// The guardian's decision at `now`: pet while `now` is before `petUntil`.
    public static func shouldPet(now: UInt64, petUntil: UInt64) -> Bool { now < petUntil }

    /// How often the guardian pets: a quarter of the timeout, at most once a second... at least
    /// every 250 ms for a one-second timeout.
    public var petIntervalMs: UInt64 { max(250, min(1000, UInt64(timeoutS) * 1000 / 4)) }
}

extension Engine {
    /// Until when this node's guardian may pet its watchdog (`Watchdog.petFreely`: no limit).
    /// Whenever a `fencing` resource is placed here (running, starting, stopping, assigned) the
    /// lease end; at once (0) if a stop of one failed here.
    public func watchdogPetUntil(now: UInt64) -> UInt64 {
        guard cluster.watchdog != nil, !isWitness else { return Watchdog.petFreely }
        // fence_reaction = "panic": fenced while running, the node resets itself.
        if fencedOut && cluster.fenceReaction == .panic { return 0 }
        var placedHere = false
        for (r, st) in local where resourceSet.options(r).requiresFencing {
            if st == .blocked { return 0 }
            placedHere = true
        }
        if !placedHere {
            let assignments = isCoordinator ? placement : authorityAssignments
            placedHere = assignments.contains { $0.value == selfId && resourceSet.options($0.key).requiresFencing }
        }
        // Until the probes said what runs here, a fencing resource may (left over by a clusterd
        // that crashed): pet only within the lease.
        // (Called after every batch of inputs: only probes still pending are looked at, and every
        // agent only before the first pass issued them; a new configuration's probes are issued
        // and pending within the evaluation that adopts it.)
        if !placedHere {
            placedHere = probePending.contains { resourceSet.options($0).requiresFencing }
                || (probeIssued.isEmpty && resourceSet.agents.contains { resourceSet.options($0.name).requiresFencing })
        }
        return placedHere ? leaseUntil : Watchdog.petFreely
    }
}
