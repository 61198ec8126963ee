import Foundation
import Testing
import Wire

/// Schema checks (WIRE.md §5 steps 18–21) and the HTTP-level pieces: problems, media types,
/// the head-version header.
@Suite struct SchemaAndHTTPTests {
    static let apparel = WireSchema(contextIDs: 1, contextDense: 4, itemIDs: 3, itemDense: 17)

    /// A binary request with the given counts for scene 'apparel', 2 candidates.
    static func request(_ ci: Int, _ cd: Int, _ ii: Int, _ id: Int) -> [UInt8] {
        RequestValues(scene: "apparel", requestID: 9, candidates: 2,
                      contextIDs: Array(repeating: 1, count: ci), contextDense: Array(repeating: 0.5, count: cd),
                      itemIDs: Array(repeating: 2, count: 2 * ii), itemDense: Array(repeating: 1.5, count: 2 * id))
            .encodeBinary()
    }

    @Test func binarySchemaMismatchesInOrder() throws {
        let cases: [([UInt8], String)] = [
            (Self.request(2, 3, 2, 12), "context has 2 ids, scene 'apparel' expects 1"),
            (Self.request(1, 3, 2, 12), "context has 3 dense values, scene 'apparel' expects 4"),
            (Self.request(1, 4, 2, 12), "items have 2 ids each, scene 'apparel' expects 3"),
            (Self.request(1, 4, 3, 12), "items have 12 dense values each, scene 'apparel' expects 17"),
            (Self.request(0, 4, 3, 17), "context has 0 ids, scene 'apparel' expects 1"),
        ]
        for (body, detail) in cases {
            let error = try #require(try schemaCheck(body, .binary, Self.apparel))
            #expect(error == WireError(status: 422, slug: "schema-mismatch", detail: detail))
        }
        #expect(try schemaCheck(Self.request(1, 4, 3, 17), .binary, Self.apparel) == nil)
    }

    @Test func jsonSchemaMismatchesInOrder() throws {
        func body(_ context: String, _ candidates: [String]) -> [UInt8] {
            Array(#"{"scene": "apparel", "context": \#(context), "candidates": [\#(candidates.joined(separator: ","))]}"#.utf8)
        }
        let fullCandidate = #"{"ids": [1, 2, 3], "dense": [\#(Array(repeating: "1", count: 17).joined(separator: ","))]}"#
        let fullContext = #"{"ids": [1], "dense": [1, 2, 3, 4]}"#
        let cases: [([UInt8], String)] = [
            (body(#"{"ids": [1, 2], "dense": [1]}"#, [#"{}"#]), "context has 2 ids, scene 'apparel' expects 1"),
            (body(#"{"ids": [1], "dense": [1]}"#, [#"{}"#]), "context has 1 dense values, scene 'apparel' expects 4"),
            (body(fullContext, [fullCandidate, #"{"ids": [1, 2], "dense": []}"#]), "candidate 1: 2 ids, scene 'apparel' expects 3"),
            (body(fullContext, [fullCandidate, #"{"ids": [1, 2, 3], "dense": [1]}"#, #"{}"#]),
             "candidate 1: 1 dense values, scene 'apparel' expects 17"),
        ]
        for (body, detail) in cases {
            #expect(try schemaCheck(body, .json, Self.apparel)?.detail == detail)
        }
        #expect(try schemaCheck(body(fullContext, [fullCandidate, fullCandidate]), .json, Self.apparel) == nil)
        // After the check the sections are uniform and candidate-major.
        let ok = body(fullContext, [fullCandidate, fullCandidate])
        try ok.withUnsafeBytes { raw in
            let request = try WireCodec.decodeJSONRequest(raw, limits: WireLimits())
            #expect(request.encoding == .json)
            try request.check(against: Self.apparel)
            request.withSections(requestBody: UnsafeRawBufferPointer(start: nil, count: 0)) { ci, cd, ii, id in
                #expect([ci.count, cd.count, ii.count, id.count] == [Int]([4, 16, 24, 136]))
            }
        }
    }

    @Test func problemDocument() throws {
        let error = WireError(status: 422, slug: "schema-mismatch",
                              detail: "candidate 17: 12 dense values, scene 'apparel' expects 16")
        #expect(String(decoding: error.problemJSON(), as: UTF8.self)
                == #"{"type": "https://scenescore.dev/problems/schema-mismatch", "title": "Request does not match the scene's schema", "status": 422, "detail": "candidate 17: 12 dense values, scene 'apparel' expects 16"}"#)
        // Details with quotes, backslashes and control bytes stay valid JSON.
        let odd = WireError.malformed(#"bad scene name "a\"b\x01": only lowercase"# + "\u{1}\n")
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(odd.problemJSON())) as? [String: Any])
        #expect(parsed["detail"] as? String == odd.detail)
        #expect(parsed["title"] as? String == "Malformed request")
    }

    @Test func titlesAndFactories() {
        let titles: [String: String] = [
            "malformed-request": "Malformed request", "not-found": "Not found", "unknown-scene": "Unknown scene",
            "method-not-allowed": "Method not allowed", "body-too-large": "Request body too large",
            "too-many-candidates": "Too many candidates", "unsupported-media-type": "Unsupported media type",
            "schema-mismatch": "Request does not match the scene's schema", "internal": "Internal error",
            "not-ready": "Not ready",
        ]
        for (slug, title) in titles { #expect(WireError(status: 400, slug: slug, detail: "").title == title) }

        let checks: [(WireError, Int, String, String)] = [
            (.notFound(path: "/v2/score"), 404, "not-found", "no resource at /v2/score"),
            (.methodNotAllowed(method: "GET", path: "/v1/score", allowed: "POST"), 405, "method-not-allowed",
             "method GET is not allowed on /v1/score; use POST"),
            (.unsupportedMediaType("text/plain"), 415, "unsupported-media-type",
             "content type 'text/plain' is not supported; use application/vnd.scenescore.v1 or application/json"),
            (.unsupportedMediaType(nil), 415, "unsupported-media-type",
             "content type is missing; use application/vnd.scenescore.v1 or application/json"),
            (.notReady("models are loading"), 503, "not-ready", "models are loading"),
            (.bodyTooLarge(limit: 8_388_608), 413, "body-too-large", "body exceeds the limit of 8388608 bytes"),
            (.unknownScene("shoes"), 404, "unknown-scene", "unknown scene 'shoes'"),
        ]
        for (error, status, slug, detail) in checks {
            #expect(error.status == status && error.slug == slug && error.detail == detail, "\(error)")
        }
        let serverError = WireError.internalError()
        #expect(serverError.status == 500 && serverError.slug == "internal" && serverError.title == "Internal error")
    }

    @Test func mediaTypes() {
        let cases: [(String, WireEncoding?)] = [
            ("application/vnd.scenescore.v1", .binary), ("Application/VND.SceneScore.V1", .binary),
            ("application/json", .json), ("application/json; charset=utf-8", .json), (" APPLICATION/JSON ;x=y", .json),
            ("text/plain", nil), ("application/jsonx", nil), ("application/problem+json", nil), ("", nil),
            ("application/vnd.scenescore.v2", nil), ("application/ json", nil),
        ]
        for (header, encoding) in cases { #expect(WireEncoding(contentType: header) == encoding, "\(header)") }
        #expect(WireEncoding.binary.contentType == "application/vnd.scenescore.v1")
        #expect(WireEncoding.json.contentType == "application/json")
    }

    @Test func headVersionHeader() {
        #expect(WireCodec.headVersionHeader("apparel-1") == "apparel-1")
        #expect(WireCodec.headVersionHeader("A-Za-z0-9-._~") == "A-Za-z0-9-._~")
        #expect(WireCodec.headVersionHeader("v 1/2+é%") == "v%201%2F2%2B%C3%A9%25")
        #expect(WireCodec.headVersionHeader("\n") == "%0A")
    }
}
