// Interface contract for the Wire module (Proto/WIRE.md). The lead engineer's Server module
// codes against exactly these declarations; the implementation fills them in.

/// Limits the decoder enforces (WIRE.md §5 step 12; JSON §6.1 step 6).
public struct WireLimits: Sendable {
    public var maxCandidates: Int
    public init(maxCandidates: Int = 1024) { self.maxCandidates = maxCandidates }
}

/// The counts a scene's backbone expects (WIRE.md §5 steps 18–21).
public struct WireSchema: Sendable, Equatable {
    public var contextIDs: Int, contextDense: Int, itemIDs: Int, itemDense: Int
    public init(contextIDs: Int, contextDense: Int, itemIDs: Int, itemDense: Int) {
        self.contextIDs = contextIDs; self.contextDense = contextDense
        self.itemIDs = itemIDs; self.itemDense = itemDense
    }
}
