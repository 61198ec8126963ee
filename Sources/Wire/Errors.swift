/// An HTTP problem (RFC 9457) — every wire error is one (WIRE.md §7).
///
/// `status` and `slug` pick the problem type, `detail` is the exact text of WIRE.md §5 / §6.1.
public struct WireError: Error, CustomStringConvertible, Equatable, Sendable {
    public let status: Int
    public let slug: String
    public let detail: String

    public init(status: Int, slug: String, detail: String) {
        self.status = status
        self.slug = slug
        self.detail = detail
    }

    /// The problem type's title, from the table of WIRE.md §7.
    public var title: String { WireError.titles[slug] ?? "Error" }

    /// `https://scenescore.dev/problems/<slug>`.
    public var type: String { WireError.typeBase + slug }

    public var description: String { "\(status) \(slug): \(detail)" }

    public static let typeBase = "https://scenescore.dev/problems/"
    public static let problemContentType = "application/problem+json"

    static let titles: [String: String] = [
        "malformed-request": "Malformed request",
        "not-found": "Not found",
        "unknown-scene": "Unknown scene",
        "method-not-allowed": "Method not allowed",
        "body-too-large": "Request body too large",
        "too-many-candidates": "Too many candidates",
        "unsupported-media-type": "Unsupported media type",
        "schema-mismatch": "Request does not match the scene's schema",
        "unscorable-values": "The request's values are out of the model's range",
        "internal": "Internal error",
        "not-ready": "Not ready",
        "unauthorized": "Unauthorized",
        "forbidden": "Forbidden",
        "conflict": "Conflict",
        "invalid-head": "Head or plugin cannot be served",
        "registry-unavailable": "Registry unavailable",
        "plugin-rejected": "The scene's plugin rejected the request",
        "plugin-failed": "The scene's plugin failed",
    ]

    /// The `application/problem+json` body:
    /// `{"type": "https://scenescore.dev/problems/<slug>", "title": …, "status": …, "detail": …}`.
    public func problemJSON() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(96 + slug.utf8.count + detail.utf8.count)
        out.append(contentsOf: #"{"type": "#.utf8)
        JSONText.appendString(type, to: &out)
        out.append(contentsOf: #", "title": "#.utf8)
        JSONText.appendString(title, to: &out)
        out.append(contentsOf: #", "status": "#.utf8)
        out.append(contentsOf: String(status).utf8)
        out.append(contentsOf: #", "detail": "#.utf8)
        JSONText.appendString(detail, to: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    // MARK: Factories

    /// 400 `malformed-request`: the body breaks the wire format.
    public static func malformed(_ detail: String) -> WireError {
        WireError(status: 400, slug: "malformed-request", detail: detail)
    }

    /// 422 `schema-mismatch`: counts differ from the scene's backbone.
    public static func schemaMismatch(_ detail: String) -> WireError {
        WireError(status: 422, slug: "schema-mismatch", detail: detail)
    }

    /// 422 `unscorable-values`: finite inputs so large that the model's output overflowed.
    public static func unscorableValues(_ detail: String) -> WireError {
        WireError(status: 422, slug: "unscorable-values", detail: detail)
    }

    /// 413 `too-many-candidates`: `n_candidates N exceeds the limit of L`.
    public static func tooManyCandidates(_ count: UInt64, limit: Int) -> WireError {
        WireError(status: 413, slug: "too-many-candidates",
                  detail: "n_candidates \(count) exceeds the limit of \(limit)")
    }

    /// 404 `not-found`: `no resource at /v2/score`.
    public static func notFound(path: String) -> WireError {
        WireError(status: 404, slug: "not-found", detail: "no resource at \(path)")
    }

    /// 405 `method-not-allowed`: `method GET is not allowed on /v1/score; use POST`.
    /// `allowed` is the `Allow` header value (for example `POST`, or `GET, HEAD`).
    public static func methodNotAllowed(method: String, path: String, allowed: String) -> WireError {
        WireError(status: 405, slug: "method-not-allowed",
                  detail: "method \(method) is not allowed on \(path); use \(allowed)")
    }

    /// 415 `unsupported-media-type`: `content type 'text/plain' is not supported; use …`,
    /// or `content type is missing; use …` without a `Content-Type`.
    public static func unsupportedMediaType(_ contentType: String?) -> WireError {
        let use = "use \(WireEncoding.binary.contentType) or \(WireEncoding.json.contentType)"
        let detail: String
        if let contentType {
            detail = "content type '\(contentType)' is not supported; \(use)"
        } else {
            detail = "content type is missing; \(use)"
        }
        return WireError(status: 415, slug: "unsupported-media-type", detail: detail)
    }

    /// 503 `not-ready` with free text, for example `models are loading`.
    public static func notReady(_ detail: String) -> WireError {
        WireError(status: 503, slug: "not-ready", detail: detail)
    }

    /// 413 `body-too-large`: `body exceeds the limit of 8388608 bytes`.
    public static func bodyTooLarge(limit: Int) -> WireError {
        WireError(status: 413, slug: "body-too-large", detail: "body exceeds the limit of \(limit) bytes")
    }

    /// 404 `unknown-scene`: `unknown scene 'shoes'`.
    public static func unknownScene(_ scene: String) -> WireError {
        WireError(status: 404, slug: "unknown-scene", detail: "unknown scene '\(scene)'")
    }

    /// 500 `internal`; the detail doesn't leak internals.
    public static func internalError() -> WireError {
        WireError(status: 500, slug: "internal", detail: "the server failed to process the request")
    }
}
