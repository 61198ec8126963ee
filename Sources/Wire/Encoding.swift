/// The two request/response encodings (WIRE.md §1), picked by the request's `Content-Type`.
public enum WireEncoding: Sendable, Equatable {
    case binary, json

    /// From a `Content-Type` header value: type/subtype compared case-insensitively, parameters
    /// (after `;`) and surrounding whitespace ignored. `nil` if it names neither encoding.
    public init?(contentType: String) {
        // Fast path: the exact canonical spellings every client library sends.
        if contentType == "application/vnd.scenescore.v1" { self = .binary; return }
        if contentType == "application/json" { self = .json; return }
        var mediaType = contentType.utf8.prefix { $0 != UInt8(ascii: ";") }
        while let first = mediaType.first, first == 0x20 || first == 0x09 { mediaType = mediaType.dropFirst() }
        while let last = mediaType.last, last == 0x20 || last == 0x09 { mediaType = mediaType.dropLast() }
        // ASCII-only lowercasing: a non-ASCII byte never matches either name anyway.
        let lowered = mediaType.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }
        if lowered.elementsEqual(WireEncoding.binary.contentType.utf8) {
            self = .binary
        } else if lowered.elementsEqual(WireEncoding.json.contentType.utf8) {
            self = .json
        } else {
            return nil
        }
    }

    /// `application/vnd.scenescore.v1` or `application/json`.
    public var contentType: String {
        switch self {
        case .binary: "application/vnd.scenescore.v1"
        case .json: "application/json"
        }
    }
}

extension WireCodec {
    /// The name of the response header that carries the head version (WIRE.md §1).
    public static let headVersionHeaderName = "x-scenescore-head-version"

    /// Percent-encodes a head version for `x-scenescore-head-version` (WIRE.md §1): every UTF-8
    /// byte outside `A-Z a-z 0-9 - . _ ~` becomes `%XX` (uppercase hex).
    public static func headVersionHeader(_ version: String) -> String {
        if version.utf8.allSatisfy(isUnreserved) { return version }  // the usual case: as is
        var out: [UInt8] = []
        out.reserveCapacity(version.utf8.count)
        let digits = Array("0123456789ABCDEF".utf8)
        for b in version.utf8 {
            if isUnreserved(b) {
                out.append(b)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(digits[Int(b >> 4)])
                out.append(digits[Int(b & 0x0F)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// RFC 3986 unreserved: A–Z a–z 0–9 - . _ ~
@inline(__always)
private func isUnreserved(_ b: UInt8) -> Bool {
    (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39)
        || b == 0x2D || b == 0x2E || b == 0x5F || b == 0x7E
}
