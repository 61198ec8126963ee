import Foundation
import Testing
import Wire

/// The golden vectors of Proto/golden: valid bodies decode to their .json values and re-encode
/// byte for byte; invalid bodies fail with the status, problem type and detail of invalid.json.
@Suite struct GoldenTests {
    @Test(arguments: requestVectors)
    func binaryRequestDecodesToItsJSONValues(name: String) throws {
        let bytes = try goldenBytes(name + ".bin")
        let expected = try RequestValues(golden: name)
        #expect(try decode(bytes).get() == expected)
        // The counts fit the schema they were made with, and the sections are where §3.2 says.
        try bytes.withUnsafeBytes { raw in
            let request = try WireCodec.decodeBinaryRequest(raw, limits: WireLimits())
            #expect(request.encoding == .binary)
            #expect(throws: Never.self) { try request.check(against: expected.schema) }
            request.withSections(requestBody: raw) { ci, cd, ii, id in
                let base = raw.baseAddress!
                var offset = 32 + (expected.scene.utf8.count + 7) & ~7
                for (section, words) in [(ci, expected.contextIDs.count), (cd, expected.contextDense.count),
                                         (ii, expected.itemIDs.count), (id, expected.itemDense.count)] {
                    #expect(section.count == 4 * words)
                    if words > 0 { #expect(section.baseAddress! - base == offset) }
                    offset += (4 * words + 7) & ~7
                }
                #expect(offset == raw.count)
            }
        }
    }

    @Test(arguments: requestVectors)
    func binaryRequestReEncodesByteExactly(name: String) throws {
        #expect(try RequestValues(golden: name).encodeBinary() == goldenBytes(name + ".bin"))
    }

    /// The golden .json files hold the JSON request shape (§6.1), so they're JSON requests too.
    @Test(arguments: requestVectors)
    func goldenJSONRequestDecodesToTheSameValues(name: String) throws {
        let expected = try RequestValues(golden: name)
        let decoded = try decode(goldenBytes(name + ".json"), .json).get()
        #expect(decoded == expected)
        #expect(decoded.encodeBinary() == (try goldenBytes(name + ".bin")))
        #expect(try schemaCheck(goldenBytes(name + ".json"), .json, expected.schema) == nil)
    }

    @Test func invalidVectorsFailWithTheirProblem() throws {
        let index = try goldenObject("invalid/invalid.json")
        #expect(index.count >= 17)
        for (file, entry) in index.sorted(by: { $0.key < $1.key }) {
            let spec = try #require(entry as? [String: Any])
            let status = try #require(spec["status"] as? Int)
            let type = try #require(spec["type"] as? String)
            let detail = try #require(spec["detail_contains"] as? String)
            let slug = String(type.dropFirst("https://scenescore.dev/problems/".count))
            #expect(type.hasPrefix("https://scenescore.dev/problems/"))
            guard let error = decodeError(try goldenBytes("invalid/" + file)) else { continue }
            #expect(error.status == status, "\(file): \(error)")
            #expect(error.slug == slug, "\(file): \(error)")
            #expect(error.detail.contains(detail), "\(file): '\(error.detail)' lacks '\(detail)'")
            // The problem document carries the same.
            let problem = try #require(try JSONSerialization.jsonObject(with: Data(error.problemJSON())) as? [String: Any])
            #expect(problem["type"] as? String == type)
            #expect(problem["status"] as? Int == status)
            #expect(problem["detail"] as? String == error.detail)
        }
    }

    /// The full texts of WIRE.md §5 where the vectors only pin a substring.
    @Test func invalidVectorDetailsAreExact() throws {
        let cases: [(String, String)] = [
            ("bad-magic.bin", #"bad magic: expected 53 53 51 31 ("SSQ1"), got 53 53 52 31"#),
            ("version-2.bin", "unsupported version 2, expected 1"),
            ("nonzero-flags.bin", "flags must be 0 in version 1, got 0x0001"),
            ("nonzero-reserved.bin", "reserved header field must be 0, got 0x0001"),
            ("uppercase-scene.bin", #"bad scene name "Apparel": only lowercase a-z, 0-9, '_' and '-' are allowed"#),
            ("non-ascii-scene.bin", #"bad scene name "cafe\xcc\x81s": only lowercase a-z, 0-9, '_' and '-' are allowed"#),
        ]
        for (file, detail) in cases {
            #expect(decodeError(try goldenBytes("invalid/" + file))?.detail == detail, "\(file)")
        }
    }

    @Test(arguments: responseVectors)
    func binaryResponseDecodesAndReEncodesByteExactly(name: String) throws {
        let bytes = try goldenBytes(name + ".bin")
        let object = try goldenObject(name + ".json")
        let rows = try #require(object["scores"] as? [[NSNumber]])
        let expected = ScoreResponse(
            requestID: try requestIDInText(goldenText(name + ".json")),
            scene: try #require(object["scene"] as? String),
            headVersion: try #require(object["head_version"] as? String),
            outputs: try #require(object["outputs"] as? [String]),
            scores: rows.flatMap { $0.map { Float($0.doubleValue) } },
            candidates: rows.count)
        let decoded = try bytes.withUnsafeBytes { try WireCodec.decodeBinaryResponse($0) }
        #expect(decoded == expected)

        var out: [UInt8] = [0xAA]  // appends to what's there
        expected.scores.withUnsafeBufferPointer {
            WireCodec.encodeResponse(.binary, requestID: expected.requestID, scene: expected.scene,
                                     headVersion: expected.headVersion, outputs: expected.outputs,
                                     scores: $0, candidates: expected.candidates, into: &out)
        }
        #expect(Array(out.dropFirst()) == bytes)
        #expect(out.first == 0xAA)

        // The JSON response carries the same values.
        var json: [UInt8] = []
        expected.scores.withUnsafeBufferPointer {
            WireCodec.encodeResponse(.json, requestID: expected.requestID, scene: expected.scene,
                                     headVersion: expected.headVersion, outputs: expected.outputs,
                                     scores: $0, candidates: expected.candidates, into: &json)
        }
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(json)) as? [String: Any])
        #expect(parsed["scene"] as? String == expected.scene)
        #expect(parsed["head_version"] as? String == expected.headVersion)
        #expect(parsed["outputs"] as? [String] == expected.outputs)
        #expect(try requestIDInText(String(decoding: json, as: UTF8.self)) == expected.requestID)
        let parsedRows = try #require(parsed["scores"] as? [[NSNumber]])
        #expect(parsedRows.flatMap { $0.map { Float($0.doubleValue) } } == expected.scores)
    }

    /// The JSON response text is exactly the example of WIRE.md §6.2.
    @Test func jsonResponseMatchesTheSpecExample() {
        var out: [UInt8] = []
        let scores: [Float] = [0.28125, 0.734375]
        scores.withUnsafeBufferPointer {
            WireCodec.encodeJSONResponse(requestID: 7, scene: "apparel", headVersion: "apparel-1",
                                         outputs: ["click", "purchase"], scores: $0, candidates: 1, into: &out)
        }
        #expect(String(decoding: out, as: UTF8.self) == #"{"request_id": 7, "scene": "apparel", "head_version": "apparel-1", "outputs": ["click", "purchase"], "scores": [[0.28125, 0.734375]]}"#)
    }

    /// Scores are written as the shortest decimal that rounds back to the same f32.
    @Test func jsonResponseScoresRoundTrip() throws {
        var generator = SeededGenerator(state: 3)
        let scores = (0..<300).map { _ in Float.random(in: 0...1, using: &generator) } + [0, 1, .leastNonzeroMagnitude, 1e-7]
        var out: [UInt8] = []
        scores.withUnsafeBufferPointer {
            WireCodec.encodeJSONResponse(requestID: .max, scene: "s", headVersion: "v\"1\\\n",
                                         outputs: ["p"], scores: $0, candidates: scores.count, into: &out)
        }
        let text = String(decoding: out, as: UTF8.self)
        #expect(text.contains(#""request_id": 18446744073709551615"#))
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(out)) as? [String: Any])
        #expect(parsed["head_version"] as? String == "v\"1\\\n")
        let body = try #require(text.range(of: #""scores": [["#))
        let numbers = text[body.upperBound...].dropLast(3).components(separatedBy: "], [")
        #expect(numbers.map { Float($0) } == scores.map { Optional($0) })
    }
}
