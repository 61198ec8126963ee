import Testing
import Wire

/// The JSON request (WIRE.md §6.1): strict members, ids, request_id, dense values, JSON paths.
@Suite struct JSONRequestTests {
    static let minimal = #"{"scene": "apparel", "candidates": [{"ids": [1], "dense": [0.5]}]}"#

    @Test func defaultsAndWhitespace() throws {
        let values = try decodeJSON(" \n\t{\"scene\":\"s\",\r\n\"candidates\":[{}]} \n").get()
        #expect(values == RequestValues(scene: "s", requestID: 0, candidates: 1, contextIDs: [], contextDense: [],
                                        itemIDs: [], itemDense: []))
        let full = try decodeJSON(#"{"request_id": 18446744073709551615, "context": {"dense": [-0.0, 1e-3, 3.4028235e38, 1E2, 7]}, "candidates": [{"ids": [0, 4294967295, -0]}, {"ids": [2, 3, 4]}], "scene": "sc\u0065ne"}"#).get()
        #expect(full.requestID == .max)
        #expect(full.scene == "scene")
        #expect(full.contextDenseFloats == [-0.0, 1e-3, .greatestFiniteMagnitude, 100, 7])
        #expect(full.contextDenseFloats[0].sign == .minus)
        #expect(full.itemIDs == [0, .max, 0, 2, 3, 4])
    }

    @Test func denseValuesRoundToNearestFloat32() throws {
        // 0.1 and 16777217 aren't float32 values; 3.4028235e38 rounds to the largest float.
        let values = try decodeJSON(#"{"scene": "s", "context": {"dense": [0.1, 16777217, 3.4028235e38, 1e-50]}, "candidates": [{}]}"#).get()
        #expect(values.contextDenseFloats == [Float(0.1), 16777216, .greatestFiniteMagnitude, 0])
    }

    @Test func syntaxErrorsComeFirst() {
        for text in ["", " ", "{", "[1,]", #"{"scene": "s",}"#, "{\"scene\": 'x'}", "01", "1.", "-", "+1", ".5",
                     "{\"a\" 1}", "{} {}", "nul", "tru", #"{"a": "\x"}"#, "\"\u{01}\"", #""\ud800""#, #""\udc00x""#,
                     "[1e]", "NaNa", "\u{FEFF}{}",
                     #"{"unknown": 1, "scene": 5, "candidates": [}"#] {
            let detail = jsonDetail(text)
            #expect(detail?.hasPrefix("body is not valid JSON: ") == true, "\(text.debugDescription): \(detail ?? "-")")
        }
        // Invalid UTF-8 (a lone continuation byte, an overlong encoding, a surrogate) even inside a string.
        for bytes: [UInt8] in [[0x22, 0x80, 0x22], [0x22, 0xC0, 0xAF, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22], [0xFF]] {
            let error = decodeError(bytes, .json)
            #expect(error?.detail.hasPrefix("body is not valid JSON: ") == true, "\(bytes)")
        }
        #expect(jsonDetail("[1,]") == "body is not valid JSON: expected a value at byte 3")
        #expect(jsonDetail("{} x") == "body is not valid JSON: unexpected data after the JSON value at byte 3")
    }

    /// Deep nesting is refused, not a stack overflow.
    @Test func deepNestingIsRefused() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(jsonDetail(deep)?.contains("nesting deeper than 64 levels") == true)
        let object = String(repeating: #"{"a":"#, count: 100_000)
        #expect(jsonDetail(object)?.contains("nesting deeper than 64 levels") == true)
    }

    @Test func membersAreStrict() {
        #expect(jsonDetail(#"{"scene": "apparel", "candidate": [{}]}"#) == "request: unknown member 'candidate'")
        // Unknown members before missing ones; missing ones in sorted order.
        #expect(jsonDetail(#"{"Scene": "a"}"#) == "request: unknown member 'Scene'")
        #expect(jsonDetail("{}") == "request: missing member 'candidates'")
        #expect(jsonDetail(#"{"candidates": [{}]}"#) == "request: missing member 'scene'")
        #expect(jsonDetail("[]") == "request: expected an object")
        #expect(jsonDetail(#"{"scene": "s", "context": {"id": []}, "candidates": [{}]}"#)
                == "request.context: unknown member 'id'")
        #expect(jsonDetail(#"{"scene": "s", "context": null, "candidates": [{}]}"#) == "request.context: expected an object")
        #expect(jsonDetail(#"{"scene": "s", "candidates": [{}, {"ids": [], "weight": 1}]}"#)
                == "request.candidates[1]: unknown member 'weight'")
        #expect(jsonDetail(#"{"scene": "s", "candidates": [{}, 5]}"#) == "request.candidates[1]: expected an object")
    }

    @Test func sceneRules() {
        #expect(jsonDetail(#"{"scene": 5, "candidates": [{}]}"#) == "request.scene: expected a string")
        #expect(jsonDetail(#"{"scene": "", "candidates": [{}]}"#) == "scene_len must be between 1 and 64, got 0")
        #expect(jsonDetail(#"{"scene": "Apparel", "candidates": [{}]}"#)
                == #"bad scene name "Apparel": only lowercase a-z, 0-9, '_' and '-' are allowed"#)
        #expect(jsonDetail(#"{"scene": "caf\u00e9", "candidates": [{}]}"#)
                == #"bad scene name "caf\xc3\xa9": only lowercase a-z, 0-9, '_' and '-' are allowed"#)
        #expect(jsonDetail("{\"scene\": \"\(String(repeating: "a", count: 65))\", \"candidates\": [{}]}")
                == "scene_len must be between 1 and 64, got 65")
        // The scene is checked before request_id (§6.1 steps 3 and 4).
        #expect(jsonDetail(#"{"request_id": -1, "scene": "A", "candidates": [{}]}"#)?.hasPrefix("bad scene name") == true)
    }

    @Test func requestIDMustBeAnUnsigned64BitInteger() throws {
        for bad in ["-1", "18446744073709551616", "99999999999999999999999", "1.0", "1e3", "true", "\"7\"", "null"] {
            #expect(jsonDetail(#"{"scene": "s", "request_id": \#(bad), "candidates": [{}]}"#)
                    == "request.request_id: expected an integer in 0...18446744073709551615", "\(bad)")
        }
        #expect(try decodeJSON(#"{"scene": "s", "request_id": 9007199254740993, "candidates": [{}]}"#).get().requestID
                == 9_007_199_254_740_993)  // 2^53 + 1: exact, not via a double
    }

    @Test func idsMustBeUnsigned32BitIntegers() {
        for bad in ["1.5", "-1", "\"17\"", "true", "false", "null", "4294967296", "1e2", "1.0", "[1]", "{}", "NaN"] {
            #expect(jsonDetail(#"{"scene": "s", "candidates": [{"ids": [0, 1, \#(bad)]}]}"#)
                    == "request.candidates[0].ids[2]: expected an integer in 0...4294967295", "\(bad)")
        }
        #expect(jsonDetail(#"{"scene": "s", "context": {"ids": [true]}, "candidates": [{}]}"#)
                == "request.context.ids[0]: expected an integer in 0...4294967295")
        #expect(jsonDetail(#"{"scene": "s", "candidates": [{}, {}, {}, {"ids": 5}]}"#)
                == "request.candidates[3].ids: expected an array")
    }

    @Test func denseMustBeFiniteFloat32() {
        for bad in ["1e39", "-1e39", "1e400", "NaN", "Infinity", "-Infinity", "3.4028236e38"] {
            #expect(jsonDetail(#"{"scene": "s", "context": {"dense": [1, \#(bad)]}, "candidates": [{}]}"#)
                    == "request.context.dense[1]: value is not a finite float32", "\(bad)")
        }
        for bad in ["true", "\"1\"", "null", "[]"] {
            #expect(jsonDetail(#"{"scene": "s", "candidates": [{"dense": [1, \#(bad)]}]}"#)
                    == "request.candidates[0].dense[1]: expected a number", "\(bad)")
        }
        // A non-number anywhere in the array beats an earlier non-finite value (as in the reference).
        #expect(jsonDetail(#"{"scene": "s", "context": {"dense": [1e39, "x"]}, "candidates": [{}]}"#)
                == "request.context.dense[1]: expected a number")
        #expect(jsonDetail(#"{"scene": "s", "candidates": [{"dense": {}}]}"#) == "request.candidates[0].dense: expected an array")
        // Context ids before context dense, context before candidates.
        #expect(jsonDetail(#"{"scene": "s", "context": {"dense": [1e39], "ids": [-1]}, "candidates": 3}"#)
                == "request.context.ids[0]: expected an integer in 0...4294967295")
    }

    @Test func candidatesCountAndLimit() throws {
        #expect(jsonDetail(#"{"scene": "s", "candidates": {}}"#) == "request.candidates: expected an array")
        #expect(jsonDetail(#"{"scene": "s", "candidates": []}"#) == "n_candidates must be at least 1")
        let many = "{\"scene\": \"s\", \"candidates\": [" + Array(repeating: "{}", count: 1025).joined(separator: ",") + "]}"
        #expect(jsonDetail(many, status: 413, slug: "too-many-candidates") == "n_candidates 1025 exceeds the limit of 1024")
        // The limit is checked before the candidates themselves.
        let manyBad = "{\"scene\": \"s\", \"candidates\": [" + Array(repeating: "5", count: 3).joined(separator: ",") + "]}"
        let error = decodeError(Array(manyBad.utf8), .json, limits: WireLimits(maxCandidates: 2))
        #expect(error?.status == 413 && error?.detail == "n_candidates 3 exceeds the limit of 2")
        #expect(try decodeJSON(Self.minimal).get().candidates == 1)
    }

    @Test func duplicateMembersTakeTheLastValue() throws {
        let values = try decodeJSON(#"{"scene": "a", "scene": "b", "candidates": [{"ids": [1], "ids": [2, 3]}]}"#).get()
        #expect(values.scene == "b")
        #expect(values.itemIDs == [2, 3])
    }

    /// Candidates with different counts decode; the schema check names the first misfit (§6.1 step 8).
    @Test func nonUniformCandidatesAreReportedPerCandidate() throws {
        var candidates = Array(repeating: #"{"ids": [1, 2, 3], "dense": [\#(Array(repeating: "0.5", count: 16).joined(separator: ", "))]}"#, count: 20)
        candidates[17] = #"{"ids": [1, 2, 3], "dense": [\#(Array(repeating: "1", count: 12).joined(separator: ", "))]}"#
        candidates[18] = #"{"ids": [1, 2], "dense": []}"#
        let body = Array("{\"scene\": \"apparel\", \"candidates\": [\(candidates.joined(separator: ", "))]}".utf8)
        let schema = WireSchema(contextIDs: 0, contextDense: 0, itemIDs: 3, itemDense: 16)
        let error = try #require(try schemaCheck(body, .json, schema))
        #expect(error == WireError(status: 422, slug: "schema-mismatch",
                                   detail: "candidate 17: 12 dense values, scene 'apparel' expects 16"))
        #expect(error.title == "Request does not match the scene's schema")
        candidates[17] = candidates[0]
        let next = Array("{\"scene\": \"apparel\", \"candidates\": [\(candidates.joined(separator: ", "))]}".utf8)
        #expect(try schemaCheck(next, .json, schema)?.detail == "candidate 18: 2 ids, scene 'apparel' expects 3")
        candidates[18] = candidates[0]
        let good = Array("{\"scene\": \"apparel\", \"candidates\": [\(candidates.joined(separator: ", "))]}".utf8)
        #expect(try schemaCheck(good, .json, schema) == nil)
        let values = try decode(good, .json).get()
        #expect(values.itemIDs.count == 60 && values.itemDense.count == 320)
    }
}
