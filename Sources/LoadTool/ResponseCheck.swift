import Wire

/// The verdict on one response.
enum Verdict: Equatable {
    /// Good; the head version is `body[versionRange]` (empty when not checked).
    case ok(versionRange: Range<Int>)
    /// Not 200: the status (problem slug looked up by the caller, off the hot path).
    case status(Int)
    /// 200, but the response is wrong: what was wrong (a fixed text, counted as an error kind).
    case invalid(String)
}

/// What a response must match: the request that was sent.
struct ResponseExpectation {
    var requestID: UInt64
    var candidates: Int
    /// Outputs per candidate; 0 = unknown (not checked).
    var outputs: Int
}

/// Checks responses at the configured `CheckLevel`. The `fast` path reads the 32-byte header and
/// the head version in place and allocates nothing.
enum ResponseCheck {
    static let magic: (UInt8, UInt8, UInt8, UInt8) = (0x53, 0x53, 0x52, 0x31)  // "SSR1"

    static func check(level: CheckLevel, status: Int, header: UnsafeRawBufferPointer?, body: UnsafeRawBufferPointer,
                      expect: ResponseExpectation) -> Verdict {
        switch level {
        case .none: return .ok(versionRange: 0..<0)
        case .status: return status == 200 ? .ok(versionRange: 0..<0) : .status(status)
        case .fast, .full: break
        }
        guard status == 200 else { return .status(status) }
        guard body.count >= 32 else { return .invalid("response shorter than its 32-byte header") }
        guard body[0] == magic.0, body[1] == magic.1, body[2] == magic.2, body[3] == magic.3,
              u16(body, 4) == 1 else { return .invalid("not a binary v1 response (bad magic or version)") }
        guard u64(body, 8) == expect.requestID else { return .invalid("request id mismatch") }
        let candidates = Int(u32(body, 16)), outputs = Int(u16(body, 20))
        guard candidates == expect.candidates else { return .invalid("candidate count mismatch") }
        guard expect.outputs == 0 || outputs == expect.outputs else { return .invalid("output count mismatch") }
        let sceneLength = Int(u16(body, 22)), versionLength = Int(u16(body, 24)), namesLength = Int(u16(body, 26))
        let versionOffset = 32 + pad8(sceneLength)
        let implied = versionOffset + pad8(versionLength) + pad8(namesLength) + pad8(4 * candidates * outputs)
        guard implied == body.count else { return .invalid("response length does not match its count of scores") }
        guard versionLength > 0 else { return .invalid("empty head version") }
        let versionRange = versionOffset..<versionOffset + versionLength
        guard let header else { return .invalid("missing x-scenescore-head-version header") }
        guard headerMatches(header, UnsafeRawBufferPointer(rebasing: body[versionRange])) else {
            return .invalid("x-scenescore-head-version header differs from the body's head version")
        }
        if level == .full {
            do {
                let decoded = try WireCodec.decodeBinaryResponse(body)
                if decoded.requestID != expect.requestID || decoded.candidates != expect.candidates {
                    return .invalid("request id mismatch")
                }
            } catch {
                return .invalid("malformed response: \(error.detail)")
            }
        }
        return .ok(versionRange: versionRange)
    }

    /// The header value is the version percent-encoded (WIRE.md §1): every byte outside
    /// `A-Z a-z 0-9 - . _ ~` as `%XX`, uppercase hex. Compared without building the string.
    static func headerMatches(_ header: UnsafeRawBufferPointer, _ version: UnsafeRawBufferPointer) -> Bool {
        var h = 0
        for b in version {
            let unreserved = (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39)
                || b == 0x2D || b == 0x2E || b == 0x5F || b == 0x7E
            if unreserved {
                guard h < header.count, header[h] == b else { return false }
                h += 1
            } else {
                guard h + 2 < header.count, header[h] == 0x25, header[h + 1] == hexDigit(b >> 4),
                      header[h + 2] == hexDigit(b & 0x0F) else { return false }
                h += 3
            }
        }
        return h == header.count
    }

    /// The problem slug of an `application/problem+json` body (`…/problems/<slug>` in `type`).
    static func problemSlug(_ body: UnsafeRawBufferPointer) -> String? {
        let text = String(decoding: body.prefix(4096), as: UTF8.self)
        guard let typeKey = text.range(of: "\"type\"") else { return nil }
        let rest = text[typeKey.upperBound...]
        guard let open = rest.firstIndex(of: "\"") else { return nil }
        let value = rest[rest.index(after: open)...]
        guard let close = value.firstIndex(of: "\"") else { return nil }
        let uri = value[..<close]
        return uri.split(separator: "/").last.map(String.init)
    }

    @inline(__always) static func hexDigit(_ v: UInt8) -> UInt8 { v < 10 ? 0x30 + v : 0x41 + v - 10 }
    @inline(__always) static func pad8(_ x: Int) -> Int { (x + 7) & ~7 }
    @inline(__always) static func u16(_ p: UnsafeRawBufferPointer, _ o: Int) -> UInt16 {
        UInt16(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt16.self))
    }
    @inline(__always) static func u32(_ p: UnsafeRawBufferPointer, _ o: Int) -> UInt32 {
        UInt32(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt32.self))
    }
    @inline(__always) static func u64(_ p: UnsafeRawBufferPointer, _ o: Int) -> UInt64 {
        UInt64(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt64.self))
    }
}
