/// Encoders and strict decoders for the SceneScore wire format v1 (Proto/WIRE.md).
///
/// - Binary request: `BinaryRequest.swift` (the hot path: no Foundation, no allocation beyond the
///   `ScoreRequest` and its scene string).
/// - JSON request: `JSONRequest.swift` on top of the strict parser in `JSONReader.swift`.
/// - Responses (both encodings, and the binary response decoder): `Response.swift`.
public enum WireCodec {
    /// Decodes a request body in the given encoding.
    public static func decodeRequest(_ body: UnsafeRawBufferPointer, encoding: WireEncoding,
                                     limits: WireLimits) throws(WireError) -> ScoreRequest {
        switch encoding {
        case .binary: try decodeBinaryRequest(body, limits: limits)
        case .json: try decodeJSONRequest(body, limits: limits)
        }
    }

    /// Appends the response in the given encoding. `scores` is candidates × outputs.count,
    /// candidate-major.
    public static func encodeResponse(_ encoding: WireEncoding, requestID: UInt64, scene: String,
                                      headVersion: String, outputs: [String],
                                      scores: UnsafeBufferPointer<Float>, candidates: Int,
                                      into out: inout [UInt8]) {
        switch encoding {
        case .binary:
            encodeBinaryResponse(requestID: requestID, scene: scene, headVersion: headVersion,
                                 outputs: outputs, scores: scores, candidates: candidates, into: &out)
        case .json:
            encodeJSONResponse(requestID: requestID, scene: scene, headVersion: headVersion,
                               outputs: outputs, scores: scores, candidates: candidates, into: &out)
        }
    }
}
