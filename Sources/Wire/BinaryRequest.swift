// The binary request (WIRE.md §3), decoded in the order of §5 steps 6–16 with the length rules
// of §8. This is the hot path: no Foundation, no allocation beyond the `ScoreRequest` and the
// scene string, every section read once in place through unaligned loads.

extension WireCodec {
    /// Decodes and strictly validates a binary request (WIRE.md §5 steps 6–16, in that order).
    ///
    /// Steps 6–14 read only the 32-byte header and `body.count`; the length the header implies is
    /// computed in checked 64-bit arithmetic and compared with the body before any section is
    /// touched. `body` may have any alignment.
    public static func decodeBinaryRequest(_ body: UnsafeRawBufferPointer,
                                           limits: WireLimits) throws(WireError) -> ScoreRequest {
        // 6–10: header size, magic, version, flags, reserved.
        try checkPreamble(body, magic: Format.requestMagic)
        let reserved = Format.u16(body, 30)
        if reserved != 0 {
            throw .malformed("reserved header field must be 0, got 0x\(Format.hex(reserved, digits: 4))")
        }
        let requestID = Format.u64(body, 8)
        let nCandidates = Format.u32(body, 16)
        let nContextIDs = Format.u16(body, 20)
        let nContextDense = Format.u16(body, 22)
        let nItemIDs = Format.u16(body, 24)
        let nItemDense = Format.u16(body, 26)
        let sceneLen = Format.u16(body, 28)

        // 11–13: counts, before any size is computed.
        if nCandidates < 1 { throw .malformed("n_candidates must be at least 1") }
        if UInt64(nCandidates) > UInt64(max(0, limits.maxCandidates)) {
            throw .tooManyCandidates(UInt64(nCandidates), limit: limits.maxCandidates)
        }
        if sceneLen < 1 || Int(sceneLen) > Format.maxSceneLength {
            throw .malformed("scene_len must be between 1 and \(Format.maxSceneLength), got \(sceneLen)")
        }

        // 14: exact length (§8: widened, every multiply and add checked).
        var implied = CheckedLength()
        implied.addSection(UInt64(sceneLen))
        implied.addSection(4, UInt64(nContextIDs))
        implied.addSection(4, UInt64(nContextDense))
        implied.addSection(4, UInt64(nCandidates), UInt64(nItemIDs))
        implied.addSection(4, UInt64(nCandidates), UInt64(nItemDense))
        try implied.check(bodyLength: body.count)

        // Every section now lies inside the body; plain Int arithmetic can't overflow.
        let candidates = Int(nCandidates)
        let sceneOffset = Format.headerSize
        let ctxIDsOffset = sceneOffset + Format.pad8(Int(sceneLen))
        let ctxDenseOffset = ctxIDsOffset + Format.pad8(4 * Int(nContextIDs))
        let itemIDsOffset = ctxDenseOffset + Format.pad8(4 * Int(nContextDense))
        let itemDenseOffset = itemIDsOffset + Format.pad8(4 * candidates * Int(nItemIDs))

        // 15: scene name; 16: each section's values, then its padding.
        let sceneBytes = UnsafeRawBufferPointer(rebasing: body[sceneOffset..<sceneOffset + Int(sceneLen)])
        try Format.checkSceneName(sceneBytes)
        try checkPadding(body, end: sceneOffset + Int(sceneLen), after: "scene name")
        try checkPadding(body, end: ctxIDsOffset + 4 * Int(nContextIDs), after: "context ids")
        if let i = firstNonFinite(body, offset: ctxDenseOffset, count: Int(nContextDense)) {
            let v = Float(bitPattern: Format.u32(body, ctxDenseOffset + 4 * i))
            throw .malformed("non-finite value \(Format.describeNonFinite(v)) in context dense at index \(i)")
        }
        try checkPadding(body, end: ctxDenseOffset + 4 * Int(nContextDense), after: "context dense")
        try checkPadding(body, end: itemIDsOffset + 4 * candidates * Int(nItemIDs), after: "item ids")
        let itemDenseCount = candidates * Int(nItemDense)
        if let i = firstNonFinite(body, offset: itemDenseOffset, count: itemDenseCount) {
            let v = Float(bitPattern: Format.u32(body, itemDenseOffset + 4 * i))
            let width = Int(nItemDense)
            throw .malformed("non-finite value \(Format.describeNonFinite(v)) in item dense at index \(i) "
                             + "(candidate \(i / width), value \(i % width))")
        }
        try checkPadding(body, end: itemDenseOffset + 4 * itemDenseCount, after: "item dense")

        let layout = ScoreRequest.BinaryLayout(
            length: body.count,
            contextIDs: Int(nContextIDs), contextDense: Int(nContextDense),
            itemIDs: Int(nItemIDs), itemDense: Int(nItemDense),
            contextIDsOffset: ctxIDsOffset, contextDenseOffset: ctxDenseOffset,
            itemIDsOffset: itemIDsOffset, itemDenseOffset: itemDenseOffset)
        return ScoreRequest(requestID: requestID, scene: String(decoding: sceneBytes, as: UTF8.self),
                            candidates: candidates, encoding: .binary, payload: .binary(layout))
    }

    /// Appends a binary request (WIRE.md §3) to `out`. `itemIDs` and `itemDense` are
    /// candidate-major, `candidates` rows each.
    ///
    /// For tools and tests: it encodes whatever it's given as long as the header can express it
    /// (so it can also build invalid requests: a bad scene name, NaN values). It traps when
    /// the counts can't be encoded (a row count that doesn't divide, a count over its field width).
    public static func encodeBinaryRequest(requestID: UInt64, scene: String, contextIDs: [UInt32],
                                           contextDense: [Float], itemIDs: [UInt32], itemDense: [Float],
                                           candidates: Int, into out: inout [UInt8]) {
        precondition(candidates >= 0 && candidates <= Int(UInt32.max), "candidates out of range")
        precondition(candidates > 0 || (itemIDs.isEmpty && itemDense.isEmpty), "items without candidates")
        let perIDs = candidates == 0 ? 0 : itemIDs.count / candidates
        let perDense = candidates == 0 ? 0 : itemDense.count / candidates
        precondition(perIDs * candidates == itemIDs.count, "itemIDs is not candidates × n_item_ids")
        precondition(perDense * candidates == itemDense.count, "itemDense is not candidates × n_item_dense")
        let sceneBytes = Array(scene.utf8)
        for count in [contextIDs.count, contextDense.count, perIDs, perDense, sceneBytes.count] {
            precondition(count <= Int(UInt16.max), "a count exceeds its u16 header field")
        }
        out.reserveCapacity(out.count + Format.headerSize + Format.pad8(sceneBytes.count)
                            + Format.pad8(4 * contextIDs.count) + Format.pad8(4 * contextDense.count)
                            + Format.pad8(4 * itemIDs.count) + Format.pad8(4 * itemDense.count))
        out.append(contentsOf: Format.requestMagic)
        Format.append(Format.version, to: &out)
        Format.append(UInt16(0), to: &out)
        Format.append(requestID, to: &out)
        Format.append(UInt32(candidates), to: &out)
        Format.append(UInt16(contextIDs.count), to: &out)
        Format.append(UInt16(contextDense.count), to: &out)
        Format.append(UInt16(perIDs), to: &out)
        Format.append(UInt16(perDense), to: &out)
        Format.append(UInt16(sceneBytes.count), to: &out)
        Format.append(UInt16(0), to: &out)
        Format.appendPadded(sceneBytes, to: &out)
        contextIDs.withUnsafeBytes { Format.appendPadded(words: $0, count: contextIDs.count, to: &out) }
        contextDense.withUnsafeBytes { Format.appendPadded(words: $0, count: contextDense.count, to: &out) }
        itemIDs.withUnsafeBytes { Format.appendPadded(words: $0, count: itemIDs.count, to: &out) }
        itemDense.withUnsafeBytes { Format.appendPadded(words: $0, count: itemDense.count, to: &out) }
    }

    // MARK: Shared by the request and response decoders

    /// WIRE.md §5 steps 6–9: header size, magic, version, flags.
    static func checkPreamble(_ body: UnsafeRawBufferPointer, magic: [UInt8]) throws(WireError) {
        if body.count < Format.headerSize {
            throw .malformed("body is \(body.count) bytes, shorter than the \(Format.headerSize)-byte header")
        }
        if body[0] != magic[0] || body[1] != magic[1] || body[2] != magic[2] || body[3] != magic[3] {
            throw .malformed("bad magic: expected \(Format.hexBytes(magic)) (\(Format.showBytes(magic))), "
                             + "got \(Format.hexBytes(body[0..<4]))")
        }
        let version = Format.u16(body, 4)
        if version != Format.version {
            throw .malformed("unsupported version \(version), expected \(Format.version)")
        }
        let flags = Format.u16(body, 6)
        if flags != 0 {
            throw .malformed("flags must be 0 in version \(Format.version), got 0x\(Format.hex(flags, digits: 4))")
        }
    }

    /// WIRE.md §5 step 16b: the bytes from a section's end up to the next multiple of 8 are zero.
    /// Section offsets are multiples of 8, so the padding ends at `pad8(end)`.
    @inline(__always)
    static func checkPadding(_ body: UnsafeRawBufferPointer, end: Int, after section: StaticString) throws(WireError) {
        var offset = end
        while offset < Format.pad8(end) {
            let byte = body[offset]
            if byte != 0 {
                throw .malformed("non-zero padding byte 0x\(Format.hex(byte, digits: 2)) at offset \(offset) (after \(section))")
            }
            offset += 1
        }
    }

    /// The index of the first NaN or ±Inf among `count` f32 at `offset`, or nil. Scans blocks with
    /// a branch-free reduction (vectorizable), and only looks for the index in a block that has one.
    @inline(__always)
    static func firstNonFinite(_ body: UnsafeRawBufferPointer, offset: Int, count: Int) -> Int? {
        let exponent: UInt32 = 0x7F80_0000
        var start = 0
        while start < count {
            let end = min(start + 256, count)
            var smallest = UInt32.max
            for i in start..<end {
                let bits = UInt32(littleEndian: body.loadUnaligned(fromByteOffset: offset + 4 * i, as: UInt32.self))
                smallest = min(smallest, (bits & exponent) ^ exponent)  // 0 iff the exponent is all ones
            }
            if smallest == 0 {
                for i in start..<end
                where Format.u32(body, offset + 4 * i) & exponent == exponent { return i }
            }
            start = end
        }
        return nil
    }
}

/// `32 + Σ pad8(section sizes)` in 64-bit unsigned arithmetic, each field widened first and every
/// multiply and add checked (WIRE.md §8). Overflow counts as a length mismatch.
struct CheckedLength {
    private(set) var value = UInt64(Format.headerSize)
    private(set) var overflowed = false

    /// Adds `pad8(a · b · c)`.
    @inline(__always) mutating func addSection(_ a: UInt64, _ b: UInt64 = 1, _ c: UInt64 = 1) {
        let (ab, o1) = a.multipliedReportingOverflow(by: b)
        let (abc, o2) = ab.multipliedReportingOverflow(by: c)
        let (rounded, o3) = abc.addingReportingOverflow(7)
        let (sum, o4) = value.addingReportingOverflow(rounded & ~7)
        overflowed = overflowed || o1 || o2 || o3 || o4
        value = sum
    }

    /// WIRE.md §5 step 14: `body is 151 bytes, header implies 152`.
    func check(bodyLength: Int) throws(WireError) {
        if overflowed {
            throw .malformed("body is \(bodyLength) bytes, header implies more than \(UInt64.max)")
        }
        if value != UInt64(bodyLength) {
            throw .malformed("body is \(bodyLength) bytes, header implies \(value)")
        }
    }
}
