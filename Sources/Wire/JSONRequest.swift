// The JSON request (WIRE.md §6.1), checked in the order the spec lists, with the reference
// decoder's JSON-path details (`request.candidates[3].ids[2]: expected an integer in 0...4294967295`).

extension WireCodec {
    /// Decodes and strictly validates a JSON request (WIRE.md §6.1 steps 1–6): unknown members are
    /// rejected, ids must be integers in 0…2^32−1, `request_id` an integer in 0…2^64−1, dense values
    /// numbers that are finite after rounding to float32. Candidates may differ in their counts
    /// here: `ScoreRequest.check(against:)` reports the first that doesn't fit the scene (step 8).
    public static func decodeJSONRequest(_ body: UnsafeRawBufferPointer,
                                         limits: WireLimits) throws(WireError) -> ScoreRequest {
        // 1. Syntax of the whole body.
        let root = try JSONReader.validateDocument(body)

        // 2. Top-level members: unknown first, then missing.
        let top = try JSONObject(body, at: root, path: "request",
                                 allowed: ["scene", "request_id", "context", "candidates"],
                                 required: ["candidates", "scene"])

        // 3. scene.
        var reader = JSONReader(body, at: top["scene"]!)
        guard reader.kind() == .string else { throw .malformed("request.scene: expected a string") }
        let sceneBytes = try reader.scanString(collect: true)
        try Format.checkSceneName(sceneBytes)
        let scene = String(decoding: sceneBytes, as: UTF8.self)

        // 4. request_id.
        var requestID: UInt64 = 0
        if let position = top["request_id"] {
            var reader = JSONReader(body, at: position)
            let error = WireError.malformed("request.request_id: expected an integer in 0...\(UInt64.max)")
            guard reader.kind() == .number else { throw error }
            guard let value = reader.unsignedValue(try reader.scanNumber(), limit: .max) else { throw error }
            requestID = value
        }

        // 5. context: ids, then dense.
        var payload = ScoreRequest.JSONPayload(contextIDs: [], contextDense: [], itemIDs: [], itemDense: [],
                                               idCounts: [], denseCounts: [])
        if let position = top["context"] {
            let context = try JSONObject(body, at: position, path: "request.context",
                                         allowed: ["ids", "dense"], required: [])
            if let ids = context["ids"] {
                try readIDs(body, at: ids, path: "request.context.ids", into: &payload.contextIDs)
            }
            if let dense = context["dense"] {
                try readDense(body, at: dense, path: "request.context.dense", into: &payload.contextDense)
            }
        }

        // 6. candidates: an array, 1…limit of them, then each one's ids and dense.
        reader = JSONReader(body, at: top["candidates"]!)
        guard reader.kind() == .array else { throw .malformed("request.candidates: expected an array") }
        let count = try reader.countElements()
        if count < 1 { throw .malformed("n_candidates must be at least 1") }
        if count > limits.maxCandidates { throw .tooManyCandidates(UInt64(count), limit: limits.maxCandidates) }
        payload.idCounts.reserveCapacity(count)
        payload.denseCounts.reserveCapacity(count)
        reader = JSONReader(body, at: top["candidates"]!)
        try reader.forEachElement { index, element throws(WireError) in
            let path = "request.candidates[\(index)]"
            let candidate = try JSONObject(body, at: element.position, path: path, allowed: ["ids", "dense"], required: [])
            let idsBefore = payload.itemIDs.count, denseBefore = payload.itemDense.count
            if let ids = candidate["ids"] {
                try readIDs(body, at: ids, path: path + ".ids", into: &payload.itemIDs)
            }
            if let dense = candidate["dense"] {
                try readDense(body, at: dense, path: path + ".dense", into: &payload.itemDense)
            }
            payload.idCounts.append(payload.itemIDs.count - idsBefore)
            payload.denseCounts.append(payload.itemDense.count - denseBefore)
            try element.skipValue(depth: 1)
        }
        return ScoreRequest(requestID: requestID, scene: scene, candidates: count, encoding: .json,
                            payload: .json(payload))
    }

    /// An array of ids: integers in 0…4294967295.
    private static func readIDs(_ body: UnsafeRawBufferPointer, at position: Int, path: String,
                                into out: inout [UInt32]) throws(WireError) {
        var reader = JSONReader(body, at: position)
        guard reader.kind() == .array else { throw .malformed("\(path): expected an array") }
        try reader.forEachElement { index, element throws(WireError) in
            guard element.kind() == .number,
                  let value = element.unsignedValue(try element.scanNumber(), limit: UInt64(UInt32.max)) else {
                throw .malformed("\(path)[\(index)]: expected an integer in 0...\(UInt32.max)")
            }
            out.append(UInt32(value))
        }
    }

    /// An array of numbers, each rounded to float32 (via float64, like the reference) and then
    /// required to be finite. A non-number anywhere in the array is reported before a non-finite one.
    private static func readDense(_ body: UnsafeRawBufferPointer, at position: Int, path: String,
                                  into out: inout [Float]) throws(WireError) {
        var reader = JSONReader(body, at: position)
        guard reader.kind() == .array else { throw .malformed("\(path): expected an array") }
        var firstNonFinite: Int?
        try reader.forEachElement { index, element throws(WireError) in
            guard element.kind() == .number else { throw .malformed("\(path)[\(index)]: expected a number") }
            let value = Float(element.doubleValue(try element.scanNumber()))
            if !value.isFinite && firstNonFinite == nil { firstNonFinite = index }
            out.append(value)
        }
        if let index = firstNonFinite { throw .malformed("\(path)[\(index)]: value is not a finite float32") }
    }
}

/// The members of a JSON object, checked against the allowed and required names: the first
/// unknown member (in document order) is reported, then the first missing one (in the order of
/// `required`). For a duplicated member the last value wins.
private struct JSONObject {
    private var members: [(name: String, value: Int)]

    init(_ body: UnsafeRawBufferPointer, at position: Int, path: String,
         allowed: [String], required: [String]) throws(WireError) {
        var reader = JSONReader(body, at: position)
        guard reader.kind() == .object else { throw .malformed("\(path): expected an object") }
        members = try reader.members()
        // Names compare by their bytes (as in the reference), not by canonical equivalence.
        func same(_ a: String, _ b: String) -> Bool { a.utf8.elementsEqual(b.utf8) }
        for member in members where !allowed.contains(where: { same($0, member.name) }) {
            throw .malformed("\(path): unknown member '\(member.name)'")
        }
        for name in required where !members.contains(where: { same($0.name, name) }) {
            throw .malformed("\(path): missing member '\(name)'")
        }
    }

    subscript(name: String) -> Int? {
        members.last(where: { $0.name.utf8.elementsEqual(name.utf8) })?.value
    }
}
