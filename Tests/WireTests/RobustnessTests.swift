import Testing
import Wire

/// Hostile and odd binary bodies: truncation, misalignment, mutation, overflowing headers.
@Suite struct RobustnessTests {
    /// Every prefix of a valid body fails cleanly with a 400 (never a crash), and so does every
    /// extension by a few bytes.
    @Test(arguments: requestVectors)
    func truncatedOrExtendedRequestsFail(name: String) throws {
        let bytes = try goldenBytes(name + ".bin")
        for length in 0..<bytes.count {
            let error = decodeError(Array(bytes[..<length]))
            #expect(error?.status == 400 && error?.slug == "malformed-request", "length \(length): \(String(describing: error))")
            let expected = length < 32 ? "body is \(length) bytes, shorter than the 32-byte header"
                                       : "body is \(length) bytes, header implies \(bytes.count)"
            #expect(error?.detail == expected)
        }
        for extra in 1...9 {
            #expect(decodeError(bytes + [UInt8](repeating: 0, count: extra))?.detail
                    == "body is \(bytes.count + extra) bytes, header implies \(bytes.count)")
        }
    }

    @Test(arguments: responseVectors)
    func truncatedResponsesFail(name: String) throws {
        let bytes = try goldenBytes(name + ".bin")
        for length in 0..<bytes.count {
            let result = Array(bytes[..<length]).withUnsafeBytes { raw in
                Result { () throws(WireError) in try WireCodec.decodeBinaryResponse(raw) }
            }
            guard case .failure(let error) = result else {
                Issue.record("a \(length)-byte prefix decoded")
                continue
            }
            #expect(error.status == 400)
        }
    }

    /// A body at any alignment decodes to the same values (loads are unaligned).
    @Test(arguments: requestVectors + responseVectors)
    func misalignedBodiesDecodeTheSame(name: String) throws {
        let bytes = try goldenBytes(name + ".bin")
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count + 16, alignment: 16)
        defer { storage.deallocate() }
        for shift in 0...7 {
            let body = UnsafeMutableRawBufferPointer(rebasing: storage[shift..<shift + bytes.count])
            body.copyBytes(from: bytes)
            let raw = UnsafeRawBufferPointer(body)
            if name.hasPrefix("request") {
                let request = try WireCodec.decodeBinaryRequest(raw, limits: WireLimits())
                #expect(RequestValues(request, body: raw) == (try RequestValues(golden: name)), "shift \(shift)")
            } else {
                let aligned = try bytes.withUnsafeBytes { try WireCodec.decodeBinaryResponse($0) }
                #expect(try WireCodec.decodeBinaryResponse(raw) == aligned, "shift \(shift)")
            }
        }
    }

    /// Random byte changes never crash; whatever still decodes is canonical (re-encodes to the
    /// same bytes).
    @Test(arguments: requestVectors)
    func mutatedRequestsFailCleanlyOrStayCanonical(name: String) throws {
        let original = try goldenBytes(name + ".bin")
        var generator = SeededGenerator(state: UInt64(name.utf8.count) * 7919)
        var accepted = 0
        for _ in 0..<3000 {
            var bytes = original
            for _ in 0..<Int.random(in: 1...3, using: &generator) {
                let i = Int.random(in: 0..<bytes.count, using: &generator)
                bytes[i] = Bool.random(using: &generator) ? UInt8.random(in: 0...255, using: &generator) : bytes[i] ^ 1
            }
            switch decode(bytes, limits: WireLimits(maxCandidates: Int(UInt32.max))) {
            case .success(let values):
                accepted += 1
                #expect(values.encodeBinary() == bytes)
            case .failure(let error):
                #expect([400, 413].contains(error.status), "\(error)")
            }
        }
        #expect(accepted > 0)
    }

    /// Counts that imply a huge body are a length mismatch, computed without overflow (§8).
    @Test func hugeHeaderCountsAreALengthMismatch() throws {
        var header = Array(try goldenBytes("request-1cand.bin")[..<32])
        func set16(_ offset: Int, _ v: UInt16) { header[offset] = UInt8(v & 0xFF); header[offset + 1] = UInt8(v >> 8) }
        header.replaceSubrange(16..<20, with: [0xFF, 0xFF, 0xFF, 0xFF])  // n_candidates 2^32 − 1
        for offset in [20, 22, 24, 26] { set16(offset, .max) }
        set16(28, 64)
        let n: UInt64 = 0xFFFF_FFFF, m: UInt64 = 0xFFFF
        func pad8(_ x: UInt64) -> UInt64 { (x + 7) & ~7 }
        let implied = 32 + pad8(64) + 2 * pad8(4 * m) + 2 * pad8(4 * n * m)
        let unlimited = WireLimits(maxCandidates: Int(UInt32.max))
        #expect(decodeError(header + [UInt8](repeating: 0, count: 100), limits: unlimited)?.detail
                == "body is 132 bytes, header implies \(implied)")
        // With the default limit the count is refused before any arithmetic.
        let error = decodeError(header)
        #expect(error?.status == 413 && error?.slug == "too-many-candidates")
        #expect(error?.detail == "n_candidates 4294967295 exceeds the limit of 1024")
    }

    @Test func candidateLimitIsConfigurable() throws {
        let bytes = try goldenBytes("request-4cand.bin")
        #expect(decodeError(bytes, limits: WireLimits(maxCandidates: 3))?.detail == "n_candidates 4 exceeds the limit of 3")
        #expect(try decode(bytes, limits: WireLimits(maxCandidates: 4)).get().candidates == 4)
    }

    /// Non-finite values name the section and index; padding errors name the section and offset,
    /// for every section (§5 step 16).
    @Test func sectionErrorsNameTheSectionAndPlace() throws {
        let base = RequestValues(scene: "abc", requestID: 1, candidates: 2, contextIDs: [1], contextDense: [1, 2, 3],
                                 itemIDs: [1, 2, 3, 4, 5, 6], itemDense: [1, 2, 3, 4, 5, 6])
        var values = base
        values.contextDense[2] = (-Float.infinity).bitPattern
        #expect(decodeError(values.encodeBinary())?.detail == "non-finite value -Inf in context dense at index 2")
        values = base
        values.itemDense[4] = Float.nan.bitPattern
        values.contextDense[0] = Float.nan.bitPattern  // the earlier section is reported first
        #expect(decodeError(values.encodeBinary())?.detail == "non-finite value NaN in context dense at index 0")
        values.contextDense[0] = 0
        #expect(decodeError(values.encodeBinary())?.detail == "non-finite value NaN in item dense at index 4 (candidate 1, value 1)")
        values.itemDense[4] = Float.signalingNaN.bitPattern
        #expect(decodeError(values.encodeBinary())?.detail == "non-finite value NaN in item dense at index 4 (candidate 1, value 1)")

        // Layout: scene 32..35 pad ..40, ctx ids 40..44 pad ..48, ctx dense 48..60 pad ..64,
        // item ids 64..88 (no padding), item dense 88..112.
        let bytes = base.encodeBinary()
        #expect(bytes.count == 112)
        for (offset, section) in [(35, "scene name"), (39, "scene name"), (44, "context ids"), (60, "context dense")] {
            var bad = bytes
            bad[offset] = 0xFE
            #expect(decodeError(bad)?.detail == "non-zero padding byte 0xfe at offset \(offset) (after \(section))")
        }
        var bad = base
        bad.candidates = 1
        bad.itemIDs = [1, 2, 3]
        bad.itemDense = [1, 2, 3]
        var odd = bad.encodeBinary()  // item ids 64..76 pad ..80, item dense 80..92 pad ..96
        odd[76] = 1
        #expect(decodeError(odd)?.detail == "non-zero padding byte 0x01 at offset 76 (after item ids)")
    }

    @Test func sceneNamesAreQuotedSafely() throws {
        for (scene, shown) in [("a\"b", #""a\"b""#), ("a\\b", #""a\\b""#), ("a b", #""a b""#),
                               ("tab\t", #""tab\x09""#), ("é", #""\xc3\xa9""#)] {
            let bytes = RequestValues(scene: scene, requestID: 0, candidates: 1, contextIDs: [], contextDense: [],
                                      itemIDs: [], itemDense: []).encodeBinary()
            #expect(decodeError(bytes)?.detail
                    == "bad scene name \(shown): only lowercase a-z, 0-9, '_' and '-' are allowed")
        }
        let ok = RequestValues(scene: "a-z_0-9", requestID: 0, candidates: 1, contextIDs: [], contextDense: [],
                               itemIDs: [], itemDense: [])
        #expect(try decode(ok.encodeBinary()).get() == ok)
    }

    /// Step order of §5: a body with several faults gets the first one.
    @Test func checksRunInSpecOrder() throws {
        var bytes = try goldenBytes("request-1cand.bin")
        bytes[6] = 1          // flags
        bytes[30] = 1         // reserved
        bytes[16] = 0         // n_candidates 0
        bytes.removeLast()    // length
        #expect(decodeError(bytes)?.detail == "flags must be 0 in version 1, got 0x0001")
        bytes[6] = 0
        #expect(decodeError(bytes)?.detail == "reserved header field must be 0, got 0x0001")
        bytes[30] = 0
        #expect(decodeError(bytes)?.detail == "n_candidates must be at least 1")
        bytes[16] = 1
        bytes[28] = 65        // scene_len before the length check
        #expect(decodeError(bytes)?.detail == "scene_len must be between 1 and 64, got 65")
        bytes[28] = 7
        #expect(decodeError(bytes)?.detail == "body is 151 bytes, header implies 152")
    }

    @Test func responseDecoderIsStrict() throws {
        let good = try goldenBytes("response-1cand.bin")
        func detail(_ edit: (inout [UInt8]) -> Void) -> String? {
            var bytes = good
            edit(&bytes)
            let result = bytes.withUnsafeBytes { raw in Result { () throws(WireError) in try WireCodec.decodeBinaryResponse(raw) } }
            guard case .failure(let error) = result else { return nil }
            return error.detail
        }
        #expect(detail { $0[2] = 0x51 } == #"bad magic: expected 53 53 52 31 ("SSR1"), got 53 53 51 31"#)
        #expect(detail { $0[31] = 1 } == "reserved header field must be 0, got 0x01000000")
        #expect(detail { $0[20] = 0 } == "n_outputs must be at least 1")
        #expect(detail { $0[24] = 0 } == "head_version_len must be at least 1")
        #expect(detail { $0[0x38] = 6 } == "output names block ends inside output 1")
        #expect(detail { $0[0x38] = 0 } == "output 0 has an empty name")
        #expect(detail { $0[0x3e] = 5; $0.replaceSubrange(0x3f..<0x44, with: Array("click".utf8)) }
                == #"duplicate output name "click""#)
        #expect(detail { $0[0x47] = 1 } == "non-zero padding byte 0x01 at offset 71 (after output names)")
        #expect(detail { $0[0x29] = 0xFF } == #"head version "a\xffparel-1" is not valid UTF-8"#)
        #expect(detail { $0.replaceSubrange(0x48..<0x4C, with: [0, 0, 0xC0, 0x7F]) }
                == "non-finite value NaN in scores at index 0 (candidate 0, output 0)")
        #expect(detail { $0.replaceSubrange(0x4C..<0x50, with: [0, 0, 0xC0, 0x3F]) }
                == "score 1.5 at index 1 (candidate 0, output 1) is outside [0, 1]")
    }
}
