// Responses: the binary encoder (WIRE.md §4), the JSON encoder (§6.2), and a strict binary
// decoder for the load tool and tests (same order and length rules as the request decoder, §8).

/// A decoded binary response.
public struct ScoreResponse: Sendable, Equatable {
    public var requestID: UInt64
    public var scene: String
    public var headVersion: String
    public var outputs: [String]
    /// candidates × outputs.count, candidate-major.
    public var scores: [Float]
    public var candidates: Int

    public init(requestID: UInt64, scene: String, headVersion: String, outputs: [String], scores: [Float], candidates: Int) {
        self.requestID = requestID
        self.scene = scene
        self.headVersion = headVersion
        self.outputs = outputs
        self.scores = scores
        self.candidates = candidates
    }
}

extension WireCodec {
    /// Appends the binary response (WIRE.md §4) to `out`. `scores` is candidates × outputs.count,
    /// candidate-major. The arguments come from the server's own models, so a value the format
    /// can't carry (an output name over 255 bytes, a wrong score count) is a bug and traps.
    public static func encodeBinaryResponse(requestID: UInt64, scene: String, headVersion: String, outputs: [String],
                                            scores: UnsafeBufferPointer<Float>, candidates: Int, into out: inout [UInt8]) {
        precondition(candidates >= 1 && candidates <= Int(UInt32.max), "n_candidates out of range")
        precondition(!outputs.isEmpty && outputs.count <= Int(UInt16.max), "n_outputs out of range")
        precondition(scores.count == candidates * outputs.count, "scores is not candidates × outputs")
        var namesLength = 0
        for name in outputs {
            precondition((1...255).contains(name.utf8.count), "output name must be 1...255 bytes")
            namesLength += 1 + name.utf8.count
        }
        let sceneLength = scene.utf8.count, versionLength = headVersion.utf8.count
        precondition(sceneLength <= Int(UInt16.max) && versionLength <= Int(UInt16.max)
                     && namesLength <= Int(UInt16.max), "a length exceeds its u16 header field")
        out.reserveCapacity(out.count + Format.headerSize + Format.pad8(sceneLength) + Format.pad8(versionLength)
                            + Format.pad8(namesLength) + Format.pad8(4 * scores.count))
        out.append(contentsOf: Format.responseMagic)
        Format.append(Format.version, to: &out)
        Format.append(UInt16(0), to: &out)
        Format.append(requestID, to: &out)
        Format.append(UInt32(candidates), to: &out)
        Format.append(UInt16(outputs.count), to: &out)
        Format.append(UInt16(sceneLength), to: &out)
        Format.append(UInt16(versionLength), to: &out)
        Format.append(UInt16(namesLength), to: &out)
        Format.append(UInt32(0), to: &out)
        Format.appendPadded(scene.utf8, to: &out)
        Format.appendPadded(headVersion.utf8, to: &out)
        for name in outputs {
            out.append(UInt8(name.utf8.count))
            out.append(contentsOf: name.utf8)
        }
        Format.appendZeros(Format.pad8(namesLength) - namesLength, to: &out)
        Format.appendPadded(words: UnsafeRawBufferPointer(scores), count: scores.count, to: &out)
    }

    /// Appends the JSON response (WIRE.md §6.2):
    /// `{"request_id": 7, "scene": "apparel", "head_version": "apparel-1", "outputs": ["click", "purchase"], "scores": [[0.28125, 0.734375]]}`.
    /// Scores are written with `Float.description` (the shortest decimal that round-trips).
    public static func encodeJSONResponse(requestID: UInt64, scene: String, headVersion: String, outputs: [String],
                                          scores: UnsafeBufferPointer<Float>, candidates: Int, into out: inout [UInt8]) {
        precondition(scores.count == candidates * outputs.count, "scores is not candidates × outputs")
        out.reserveCapacity(out.count + 96 + scene.utf8.count + headVersion.utf8.count + 12 * scores.count)
        out.append(contentsOf: #"{"request_id": "#.utf8)
        out.append(contentsOf: String(requestID).utf8)
        out.append(contentsOf: #", "scene": "#.utf8)
        JSONText.appendString(scene, to: &out)
        out.append(contentsOf: #", "head_version": "#.utf8)
        JSONText.appendString(headVersion, to: &out)
        out.append(contentsOf: #", "outputs": ["#.utf8)
        for (k, name) in outputs.enumerated() {
            if k > 0 { out.append(contentsOf: ", ".utf8) }
            JSONText.appendString(name, to: &out)
        }
        out.append(contentsOf: #"], "scores": ["#.utf8)
        let width = outputs.count
        for c in 0..<candidates {
            out.append(contentsOf: c > 0 ? ", [".utf8 : "[".utf8)
            for k in 0..<width {
                if k > 0 { out.append(contentsOf: ", ".utf8) }
                JSONText.appendFloat(scores[c * width + k], to: &out)
            }
            out.append(UInt8(ascii: "]"))
        }
        out.append(contentsOf: "]}".utf8)
    }

    /// Decodes and strictly validates a binary response (WIRE.md §4; the checks of §5 and §8
    /// adapted: header, counts, exact length, then each section's values and padding; scores must
    /// be finite and in [0, 1]). Any alignment of `body`.
    public static func decodeBinaryResponse(_ body: UnsafeRawBufferPointer) throws(WireError) -> ScoreResponse {
        try checkPreamble(body, magic: Format.responseMagic)
        let reserved = Format.u32(body, 28)
        if reserved != 0 {
            throw .malformed("reserved header field must be 0, got 0x\(Format.hex(reserved, digits: 8))")
        }
        let requestID = Format.u64(body, 8)
        let nCandidates = Format.u32(body, 16)
        let nOutputs = Format.u16(body, 20)
        let sceneLen = Format.u16(body, 22)
        let versionLen = Format.u16(body, 24)
        let namesLen = Format.u16(body, 26)
        if nCandidates < 1 { throw .malformed("n_candidates must be at least 1") }
        if nOutputs < 1 { throw .malformed("n_outputs must be at least 1") }
        if sceneLen < 1 || Int(sceneLen) > Format.maxSceneLength {
            throw .malformed("scene_len must be between 1 and \(Format.maxSceneLength), got \(sceneLen)")
        }
        if versionLen < 1 { throw .malformed("head_version_len must be at least 1") }
        var implied = CheckedLength()
        implied.addSection(UInt64(sceneLen))
        implied.addSection(UInt64(versionLen))
        implied.addSection(UInt64(namesLen))
        implied.addSection(4, UInt64(nCandidates), UInt64(nOutputs))
        try implied.check(bodyLength: body.count)

        let candidates = Int(nCandidates), width = Int(nOutputs)
        let sceneOffset = Format.headerSize
        let versionOffset = sceneOffset + Format.pad8(Int(sceneLen))
        let namesOffset = versionOffset + Format.pad8(Int(versionLen))
        let scoresOffset = namesOffset + Format.pad8(Int(namesLen))

        let sceneBytes = UnsafeRawBufferPointer(rebasing: body[sceneOffset..<sceneOffset + Int(sceneLen)])
        try Format.checkSceneName(sceneBytes)
        try checkPadding(body, end: sceneOffset + Int(sceneLen), after: "scene name")
        let versionBytes = UnsafeRawBufferPointer(rebasing: body[versionOffset..<versionOffset + Int(versionLen)])
        guard let headVersion = validUTF8(versionBytes) else {
            throw .malformed("head version \(Format.showBytes(versionBytes)) is not valid UTF-8")
        }
        try checkPadding(body, end: versionOffset + Int(versionLen), after: "head version")
        let outputs = try decodeOutputNames(
            UnsafeRawBufferPointer(rebasing: body[namesOffset..<namesOffset + Int(namesLen)]), count: width)
        try checkPadding(body, end: namesOffset + Int(namesLen), after: "output names")

        let count = candidates * width
        let scores = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            for i in 0..<count { buffer[i] = Float(bitPattern: Format.u32(body, scoresOffset + 4 * i)) }
            initialized = count
        }
        if let i = scores.firstIndex(where: { !$0.isFinite }) {
            throw .malformed("non-finite value \(Format.describeNonFinite(scores[i])) in scores at index \(i) "
                             + "(candidate \(i / width), output \(i % width))")
        }
        if let i = scores.firstIndex(where: { $0 < 0 || $0 > 1 }) {
            throw .malformed("score \(Double(scores[i])) at index \(i) (candidate \(i / width), "
                             + "output \(i % width)) is outside [0, 1]")
        }
        try checkPadding(body, end: scoresOffset + 4 * count, after: "scores")
        return ScoreResponse(requestID: requestID, scene: String(decoding: sceneBytes, as: UTF8.self),
                             headVersion: headVersion, outputs: outputs, scores: scores, candidates: candidates)
    }

    /// The output-names block: exactly `count` names, each a u8 length (≥ 1) and that many bytes
    /// of UTF-8, distinct, using the whole block.
    static func decodeOutputNames(_ block: UnsafeRawBufferPointer, count: Int) throws(WireError) -> [String] {
        var names: [String] = []
        var position = 0
        for index in 0..<count {
            if position >= block.count { throw .malformed("output names block ends before output \(index)") }
            let length = Int(block[position])
            position += 1
            if length == 0 { throw .malformed("output \(index) has an empty name") }
            if position + length > block.count { throw .malformed("output names block ends inside output \(index)") }
            let raw = UnsafeRawBufferPointer(rebasing: block[position..<position + length])
            position += length
            guard let name = validUTF8(raw) else {
                throw .malformed("output \(index) name \(Format.showBytes(raw)) is not valid UTF-8")
            }
            // Byte comparison: String's == would equate canonically equivalent but distinct names.
            if names.contains(where: { $0.utf8.elementsEqual(name.utf8) }) { throw .malformed("duplicate output name \(Format.showBytes(raw))") }
            names.append(name)
        }
        if position != block.count {
            throw .malformed("output names block has \(block.count - position) bytes after \(count) names")
        }
        return names
    }

    /// The string if `raw` is valid UTF-8 (decoding repairs invalid input, so compare the bytes).
    static func validUTF8(_ raw: UnsafeRawBufferPointer) -> String? {
        let s = String(decoding: raw, as: UTF8.self)
        return s.utf8.elementsEqual(raw) ? s : nil
    }
}
