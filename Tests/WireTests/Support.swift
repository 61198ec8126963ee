import Foundation
import Testing
import Wire

/// The repository root: this file is Tests/WireTests/Support.swift.
let repositoryRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let goldenDirectory = repositoryRoot.appendingPathComponent("Proto/golden")

let requestVectors = ["request-1cand", "request-4cand", "request-odd", "request-minimal"]
let responseVectors = ["response-1cand", "response-3cand"]

func goldenBytes(_ name: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: goldenDirectory.appendingPathComponent(name)))
}

func goldenText(_ name: String) throws -> String {
    try String(contentsOf: goldenDirectory.appendingPathComponent(name), encoding: .utf8)
}

func goldenObject(_ name: String) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(goldenBytes(name))) as? [String: Any])
}

/// `request_id` read from the JSON text itself: values up to 2^64−1 don't survive NSNumber on
/// every platform.
func requestIDInText(_ text: String) throws -> UInt64 {
    let key = try #require(text.range(of: "\"request_id\": "))
    return try #require(UInt64(String(text[key.upperBound...].prefix { $0.isNumber })))
}

/// A request's values, flat (the shape `ScoreRequest.values` returns).
struct RequestValues: Equatable, CustomStringConvertible {
    var scene: String
    var requestID: UInt64
    var candidates: Int
    var contextIDs: [UInt32]
    var contextDense: [UInt32]  // float bit patterns: compared exactly
    var itemIDs: [UInt32]
    var itemDense: [UInt32]

    var schema: WireSchema {
        WireSchema(contextIDs: contextIDs.count, contextDense: contextDense.count,
                   itemIDs: itemIDs.count / candidates, itemDense: itemDense.count / candidates)
    }
    var contextDenseFloats: [Float] { contextDense.map(Float.init(bitPattern:)) }
    var itemDenseFloats: [Float] { itemDense.map(Float.init(bitPattern:)) }
    var description: String { "\(scene) #\(requestID) ×\(candidates)" }

    init(scene: String, requestID: UInt64, candidates: Int, contextIDs: [UInt32], contextDense: [Float],
         itemIDs: [UInt32], itemDense: [Float]) {
        self.scene = scene; self.requestID = requestID; self.candidates = candidates
        self.contextIDs = contextIDs; self.contextDense = contextDense.map(\.bitPattern)
        self.itemIDs = itemIDs; self.itemDense = itemDense.map(\.bitPattern)
    }

    /// From a golden request `.json` (read with Foundation, independently of the Wire decoder).
    init(golden name: String) throws {
        let object = try goldenObject(name + ".json")
        let context = try #require(object["context"] as? [String: Any])
        let candidates = try #require(object["candidates"] as? [[String: Any]])
        func ids(_ v: Any?) throws -> [UInt32] { try #require(v as? [NSNumber]).map { UInt32($0.int64Value) } }
        func dense(_ v: Any?) throws -> [Float] { try #require(v as? [NSNumber]).map { Float($0.doubleValue) } }
        self.init(scene: try #require(object["scene"] as? String),
                  requestID: try requestIDInText(goldenText(name + ".json")),
                  candidates: candidates.count,
                  contextIDs: try ids(context["ids"]), contextDense: try dense(context["dense"]),
                  itemIDs: try candidates.flatMap { try ids($0["ids"]) },
                  itemDense: try candidates.flatMap { try dense($0["dense"]) })
    }

    /// From a decoded request.
    init(_ request: ScoreRequest, body: UnsafeRawBufferPointer) {
        let v = request.values(requestBody: body)
        self.init(scene: request.scene, requestID: request.requestID, candidates: request.candidates,
                  contextIDs: v.contextIDs, contextDense: v.contextDense, itemIDs: v.itemIDs, itemDense: v.itemDense)
    }

    func encodeBinary() -> [UInt8] {
        var out: [UInt8] = []
        WireCodec.encodeBinaryRequest(requestID: requestID, scene: scene, contextIDs: contextIDs,
                                      contextDense: contextDenseFloats, itemIDs: itemIDs,
                                      itemDense: itemDenseFloats, candidates: candidates, into: &out)
        return out
    }
}

/// Decodes `bytes` in `encoding`, returning the values or the error.
func decode(_ bytes: [UInt8], _ encoding: WireEncoding = .binary,
            limits: WireLimits = WireLimits()) -> Result<RequestValues, WireError> {
    bytes.withUnsafeBytes { raw in
        Result { () throws(WireError) in
            RequestValues(try WireCodec.decodeRequest(raw, encoding: encoding, limits: limits), body: raw)
        }
    }
}

/// The error decoding `bytes` gives; records an issue if it decodes.
func decodeError(_ bytes: [UInt8], _ encoding: WireEncoding = .binary, limits: WireLimits = WireLimits(),
                 sourceLocation: SourceLocation = #_sourceLocation) -> WireError? {
    switch decode(bytes, encoding, limits: limits) {
    case .success(let values):
        Issue.record("decoded to \(values), expected an error", sourceLocation: sourceLocation)
        return nil
    case .failure(let error):
        return error
    }
}

/// Decodes a JSON request given as text.
func decodeJSON(_ text: String, limits: WireLimits = WireLimits()) -> Result<RequestValues, WireError> {
    decode(Array(text.utf8), .json, limits: limits)
}

/// The detail of the 400 error a JSON body gets; records an issue for anything else.
func jsonDetail(_ text: String, status: Int = 400, slug: String = "malformed-request",
                sourceLocation: SourceLocation = #_sourceLocation) -> String? {
    guard let error = decodeError(Array(text.utf8), .json, sourceLocation: sourceLocation) else { return nil }
    #expect(error.status == status && error.slug == slug, "\(error)", sourceLocation: sourceLocation)
    return error.detail
}

/// The request's schema check, as a result.
func schemaCheck(_ bytes: [UInt8], _ encoding: WireEncoding, _ schema: WireSchema) throws -> WireError? {
    try bytes.withUnsafeBytes { raw in
        let request = try WireCodec.decodeRequest(raw, encoding: encoding, limits: WireLimits())
        do throws(WireError) {
            try request.check(against: schema)
            return nil
        } catch {
            return error
        }
    }
}

/// A deterministic generator for the fuzz-style tests (SplitMix64).
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
