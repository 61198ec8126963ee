/// A decoded scoring request.
///
/// For binary bodies it refers to the sections of the body by byte range (zero-copy: nothing is
/// copied at decode time, `withSections` hands out views into the body). For JSON it owns flat
/// arrays. Either way the values were validated by the decoder (finite dense values, in-range ids).
public struct ScoreRequest: Sendable {
    public let requestID: UInt64
    public let scene: String
    public let candidates: Int
    public let encoding: WireEncoding

    let payload: Payload

    enum Payload: Sendable {
        case binary(BinaryLayout)
        case json(JSONPayload)
    }

    /// Section byte offsets of a binary request, all inside a body of `length` bytes.
    struct BinaryLayout: Sendable {
        var length: Int
        var contextIDs: Int, contextDense: Int, itemIDs: Int, itemDense: Int  // counts (per candidate for items)
        var contextIDsOffset: Int, contextDenseOffset: Int, itemIDsOffset: Int, itemDenseOffset: Int
    }

    /// A JSON request's values, flat and candidate-major. Candidates may disagree on their counts
    /// until `check` has compared every one with the scene.
    struct JSONPayload: Sendable {
        var contextIDs: [UInt32]
        var contextDense: [Float]
        var itemIDs: [UInt32]
        var itemDense: [Float]
        var idCounts: [Int]     // per candidate
        var denseCounts: [Int]  // per candidate
    }

    init(requestID: UInt64, scene: String, candidates: Int, encoding: WireEncoding, payload: Payload) {
        self.requestID = requestID
        self.scene = scene
        self.candidates = candidates
        self.encoding = encoding
        self.payload = payload
    }

    /// Checks the counts against the scene's schema (WIRE.md §5 steps 18–21, §6.1 step 8):
    /// context ids, context dense, then item ids and item dense (for JSON: each candidate in
    /// order, ids before dense). The first mismatch throws 422 `schema-mismatch`.
    public func check(against schema: WireSchema) throws(WireError) {
        var expects: String { "scene '\(scene)' expects" }  // built only for a mismatch: requests that pass allocate nothing
        switch payload {
        case .binary(let layout):
            if layout.contextIDs != schema.contextIDs {
                throw .schemaMismatch("context has \(layout.contextIDs) ids, \(expects) \(schema.contextIDs)")
            }
            if layout.contextDense != schema.contextDense {
                throw .schemaMismatch("context has \(layout.contextDense) dense values, \(expects) \(schema.contextDense)")
            }
            if layout.itemIDs != schema.itemIDs {
                throw .schemaMismatch("items have \(layout.itemIDs) ids each, \(expects) \(schema.itemIDs)")
            }
            if layout.itemDense != schema.itemDense {
                throw .schemaMismatch("items have \(layout.itemDense) dense values each, \(expects) \(schema.itemDense)")
            }
        case .json(let values):
            if values.contextIDs.count != schema.contextIDs {
                throw .schemaMismatch("context has \(values.contextIDs.count) ids, \(expects) \(schema.contextIDs)")
            }
            if values.contextDense.count != schema.contextDense {
                throw .schemaMismatch("context has \(values.contextDense.count) dense values, \(expects) \(schema.contextDense)")
            }
            for c in 0..<candidates {
                if values.idCounts[c] != schema.itemIDs {
                    throw .schemaMismatch("candidate \(c): \(values.idCounts[c]) ids, \(expects) \(schema.itemIDs)")
                }
                if values.denseCounts[c] != schema.itemDense {
                    throw .schemaMismatch("candidate \(c): \(values.denseCounts[c]) dense values, \(expects) \(schema.itemDense)")
                }
            }
        }
    }

    /// Calls `body` with the four sections as raw little-endian bytes: context ids (u32 ×
    /// contextIDs), context dense (f32), item ids (u32, candidates × itemIDs, candidate-major) and
    /// item dense (f32, candidates × itemDense). `requestBody` must be the same bytes that were
    /// decoded (ignored for JSON requests). Only meaningful after `check` passed.
    ///
    /// For a binary body the views alias `requestBody` and start at 8-aligned offsets from its
    /// base (WIRE.md §9), so they're naturally aligned when the base address is 8-aligned.
    public func withSections<R>(
        requestBody: UnsafeRawBufferPointer,
        _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer, UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> R
    ) rethrows -> R {
        switch payload {
        case .binary(let l):
            precondition(requestBody.count == l.length, "withSections: not the body that was decoded")
            func section(_ offset: Int, _ words: Int) -> UnsafeRawBufferPointer {
                UnsafeRawBufferPointer(rebasing: requestBody[offset..<offset + 4 * words])
            }
            return try body(section(l.contextIDsOffset, l.contextIDs),
                            section(l.contextDenseOffset, l.contextDense),
                            section(l.itemIDsOffset, candidates * l.itemIDs),
                            section(l.itemDenseOffset, candidates * l.itemDense))
        case .json(let v):
            return try v.contextIDs.withUnsafeBytes { ci in
                try v.contextDense.withUnsafeBytes { cd in
                    try v.itemIDs.withUnsafeBytes { ii in
                        try v.itemDense.withUnsafeBytes { id in try body(ci, cd, ii, id) }
                    }
                }
            }
        }
    }

    /// The request's values as arrays (a copy; for tools and tests, not the hot path).
    /// For JSON requests with non-uniform candidates the item arrays are simply concatenated.
    public func values(requestBody: UnsafeRawBufferPointer)
        -> (contextIDs: [UInt32], contextDense: [Float], itemIDs: [UInt32], itemDense: [Float]) {
        withSections(requestBody: requestBody) { ci, cd, ii, id in
            func words<T>(_ p: UnsafeRawBufferPointer, _: T.Type, _ make: (UInt32) -> T) -> [T] {
                (0..<p.count / 4).map { make(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
            }
            return (words(ci, UInt32.self) { $0 }, words(cd, Float.self) { Float(bitPattern: $0) },
                    words(ii, UInt32.self) { $0 }, words(id, Float.self) { Float(bitPattern: $0) })
        }
    }
}
