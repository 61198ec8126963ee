import Foundation
import H2
import Logging
import Model
import Scenes
import Testing
import Wire
@testable import Server

/// The routes in-process, without sockets: early checks, and batched scoring answering exactly
/// what one-by-one scoring answers.
@Suite struct ScoringAppTests {
    static let spec = BackboneSpec(contextFields: [FieldSpec(name: "user", vocab: 97, dim: 4)], contextDense: 2,
                                   itemFields: [FieldSpec(name: "item", vocab: 101, dim: 4), FieldSpec(name: "brand", vocab: 13, dim: 2)],
                                   itemDense: 3, hidden: [24, 16])

    static func makeApp() throws -> (ScoringApp, String) {
        let dir = NSTemporaryDirectory() + "scenescore-app-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir + "/heads", withIntermediateDirectories: true)
        try DefaultModel.writeBackbone(spec, seed: 1, to: dir + "/backbone.safetensors")
        for (i, scene) in ["apparel", "beauty"].enumerated() {
            try DefaultModel.writeHead(DefaultModel.headSpec(scene: scene, input: 16), seed: UInt64(10 + i),
                                       to: dir + "/heads/\(scene).safetensors")
        }
        let registry = SceneRegistry()
        _ = try registry.load(modelDirectory: dir)
        let app = ScoringApp(registry: registry, maxCandidates: 64, maxBodyBytes: 4096, logger: Logger(label: "test")) { [] }
        app.setReady(true)
        return (app, dir)
    }

    static func head(_ method: String, _ path: String, contentType: String? = nil, length: Int? = nil) -> H2RequestHead {
        var h = H2RequestHead()
        h.method = method
        h.path = path
        h.contentType = contentType
        h.contentLength = length
        return h
    }

    static func binaryRequest(scene: String, candidates n: Int, seed: UInt32) -> [UInt8] {
        var x = seed
        func next() -> UInt32 { x = x &* 747_796_405 &+ 2_891_336_453; return x }
        var out: [UInt8] = []
        WireCodec.encodeBinaryRequest(requestID: UInt64(seed), scene: scene, contextIDs: [next()],
                                      contextDense: (0..<2).map { _ in Float(next() % 100) / 50 - 1 },
                                      itemIDs: (0..<(2 * n)).map { _ in next() },
                                      itemDense: (0..<(3 * n)).map { _ in Float(next() % 100) / 50 - 1 },
                                      candidates: n, into: &out)
        return out
    }

    @Test func earlyChecks() throws {
        let (app, dir) = try Self.makeApp()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(app.precheck(Self.head("GET", "/nope"))?.status == 404)
        let wrongMethod = app.precheck(Self.head("GET", "/v1/score"))
        #expect(wrongMethod?.status == 405)
        #expect(wrongMethod?.headers.contains { $0.name == "allow" && $0.value == "POST" } == true)
        #expect(app.precheck(Self.head("POST", "/v1/score", contentType: "text/plain"))?.status == 415)
        #expect(app.precheck(Self.head("POST", "/v1/score", contentType: "application/json", length: 5000))?.status == 413)
        #expect(app.precheck(Self.head("POST", "/v1/score", contentType: "application/json; charset=utf-8", length: 100)) == nil)
        #expect(app.precheck(Self.head("GET", "/v2/models/apparel/ready")) == nil)
    }

    @Test func batchAnswersWhatOneByOneAnswers() throws {
        let (app, dir) = try Self.makeApp()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let binary = "application/vnd.scenescore.v1"
        let json = Array(#"{"scene": "beauty", "request_id": 5, "context": {"ids": [3], "dense": [0.5, -1]}, "candidates": [{"ids": [1, 2], "dense": [1, 2, 3]}]}"#.utf8)
        let bodies: [(H2RequestHead, [UInt8])] = [
            (Self.head("POST", "/v1/score", contentType: binary), Self.binaryRequest(scene: "apparel", candidates: 1, seed: 1)),
            (Self.head("POST", "/v1/score", contentType: binary), Self.binaryRequest(scene: "beauty", candidates: 3, seed: 2)),
            (Self.head("GET", "/healthz"), []),
            (Self.head("POST", "/v1/score", contentType: binary), Self.binaryRequest(scene: "apparel", candidates: 7, seed: 3)),
            (Self.head("POST", "/v1/score", contentType: binary), Self.binaryRequest(scene: "shoes", candidates: 1, seed: 4)),
            (Self.head("POST", "/v1/score", contentType: "application/json"), json),
            (Self.head("POST", "/v1/score", contentType: binary), Array(Self.binaryRequest(scene: "apparel", candidates: 2, seed: 5).dropLast())),
            (Self.head("POST", "/v1/score", contentType: binary), Self.binaryRequest(scene: "apparel", candidates: 40, seed: 6)),
            (Self.head("POST", "/v1/score", contentType: binary), Self.binaryRequest(scene: "apparel", candidates: 1, seed: 7)),
        ]
        let alone = bodies.map { h, b in b.withUnsafeBytes { app.respond(to: h, body: $0) } }
        // All bodies in one arena so every view is valid during the batch call.
        var arena: [UInt8] = []
        var ranges: [Range<Int>] = []
        for (_, b) in bodies { ranges.append(arena.count..<(arena.count + b.count)); arena += b }
        let together = arena.withUnsafeBytes { raw in
            app.respond(toBatch: zip(bodies, ranges).map { H2CompletedRequest(head: $0.0, body: UnsafeRawBufferPointer(rebasing: raw[$1])) })
        }
        #expect(together.count == alone.count)
        let statuses: [Int] = alone.map { $0.status }
        #expect(statuses == [200, 200, 200, 200, 404, 200, 400, 200, 200])
        for (i, (a, t)) in zip(alone, together).enumerated() {
            #expect(a.status == t.status, "request \(i)")
            let aHeaders: [String] = a.headers.map { "\($0.name): \($0.value)" }
            let tHeaders: [String] = t.headers.map { "\($0.name): \($0.value)" }
            #expect(aHeaders == tHeaders, "request \(i)")
            guard a.status == 200, a.headers.first?.value == binary else {
                #expect(a.body == t.body, "request \(i)")
                continue
            }
            let ra = try a.body.withUnsafeBytes { try WireCodec.decodeBinaryResponse($0) }
            let rt = try t.body.withUnsafeBytes { try WireCodec.decodeBinaryResponse($0) }
            #expect(ra.requestID == rt.requestID && ra.scene == rt.scene && ra.headVersion == rt.headVersion)
            #expect(ra.scores.count == rt.scores.count)
            for (x, y) in zip(ra.scores, rt.scores) {
                let difference: Float = abs(x - y)
                #expect(difference <= 1e-5, "request \(i): \(x) vs \(y)")
            }
        }
    }

    /// Finite dense values so large that the forward pass overflows (inf − inf) are the request's
    /// fault: a 422 naming the candidate, while the requests batched with it are scored.
    @Test func overflowingValuesAre422AndSpareTheBatch() throws {
        let (app, dir) = try Self.makeApp()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let binary = "application/vnd.scenescore.v1"
        var huge: [UInt8] = []
        let big = Float.greatestFiniteMagnitude
        WireCodec.encodeBinaryRequest(requestID: 9, scene: "apparel", contextIDs: [3], contextDense: [big, -big],
                                      itemIDs: [1, 2, 5, 6], itemDense: [0.5, 0.25, -1, big, -big, big], candidates: 2, into: &huge)
        let bodies = [huge, Self.binaryRequest(scene: "apparel", candidates: 3, seed: 1)]
        let heads = bodies.map { _ in Self.head("POST", "/v1/score", contentType: binary) }
        let alone = zip(heads, bodies).map { h, b in b.withUnsafeBytes { app.respond(to: h, body: $0) } }
        var arena: [UInt8] = []
        var ranges: [Range<Int>] = []
        for b in bodies { ranges.append(arena.count..<(arena.count + b.count)); arena += b }
        let together = arena.withUnsafeBytes { raw in
            app.respond(toBatch: zip(heads, ranges).map { H2CompletedRequest(head: $0, body: UnsafeRawBufferPointer(rebasing: raw[$1])) })
        }
        for responses in [alone, together] {
            #expect(responses.map(\.status) == [422, 200])
            let problem = try JSONSerialization.jsonObject(with: Data(responses[0].body)) as? [String: Any]
            #expect(problem?["type"] as? String == "https://scenescore.dev/problems/unscorable-values")
            let detail = problem?["detail"] as? String ?? ""
            #expect(detail.hasPrefix("candidate 0: the model's 'click' score is nan"), "\(detail)")
            #expect(detail.hasSuffix("too large for scene 'apparel' to score"), "\(detail)")
        }
    }
}
