// A small strict JSON (RFC 8259) reader over raw bytes, for the JSON request (WIRE.md §6.1).
//
// Why not Foundation's JSONSerialization: it can't say whether `1`, `1.0`, `1e0` and `true` were
// written as integers or booleans (they all become NSNumber, and the bridging differs between
// Darwin and Linux), it doesn't give exact 64-bit integers reliably (`request_id` goes up to
// 2^64−1), and it builds a whole object tree. This reader keeps the exact token text, so ids and
// request_id are parsed exactly from their digits and dense values like the reference
// (float64, then rounded to float32), and it works in two passes without a tree:
//
// 1. `validateDocument` checks the syntax of the whole body (step 1 of §6.1 comes before any
//    member check): UTF-8, grammar, a nesting limit (no stack overflow on `[[[[…`).
// 2. The request decoder walks the validated text with `members` / `forEachElement`, reading
//    each value where it is.
//
// Like Python's `json` module (the reference decoder), the number tokens `NaN`, `Infinity` and
// `-Infinity` are accepted by the syntax check so that they get the same, more useful detail
// ("value is not a finite float32", or "expected an integer") instead of a parse error, and for
// a duplicated member the last value wins.

struct JSONReader {
    let bytes: UnsafeRawBufferPointer
    var position: Int

    static let maxDepth = 64

    init(_ bytes: UnsafeRawBufferPointer, at position: Int = 0) {
        self.bytes = bytes
        self.position = position
    }

    enum Kind { case object, array, string, number, bool, null }

    /// A number token: its byte range, whether it's written as an integer (no fraction, no
    /// exponent), and for `NaN` / `Infinity` / `-Infinity` the value.
    struct Number {
        var start: Int, end: Int
        var isInteger: Bool
        var special: Double?
    }

    // MARK: Pass 1: syntax

    /// Checks that the whole body is one JSON value with optional surrounding whitespace.
    /// Returns the position of the value.
    static func validateDocument(_ bytes: UnsafeRawBufferPointer) throws(WireError) -> Int {
        var reader = JSONReader(bytes)
        reader.skipWhitespace()
        let start = reader.position
        try reader.skipValue(depth: 0)
        reader.skipWhitespace()
        if reader.position != bytes.count { throw reader.syntaxError("unexpected data after the JSON value") }
        return start
    }

    func syntaxError(_ what: String, at offset: Int? = nil) -> WireError {
        .malformed("body is not valid JSON: \(what) at byte \(offset ?? position)")
    }

    @inline(__always) func peek() -> UInt8? { position < bytes.count ? bytes[position] : nil }

    mutating func skipWhitespace() {
        while let b = peek(), b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 { position += 1 }
    }

    /// The kind of the value at `position` (after whitespace), judged by its first byte.
    mutating func kind() -> Kind? {
        skipWhitespace()
        guard let first = peek() else { return nil }
        switch first {
        case UInt8(ascii: "{"): return .object
        case UInt8(ascii: "["): return .array
        case UInt8(ascii: "\""): return .string
        case UInt8(ascii: "t"), UInt8(ascii: "f"): return .bool
        case UInt8(ascii: "n"): return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "N"), UInt8(ascii: "I"): return .number
        default: return nil
        }
    }

    /// Skips (and validates) one value.
    mutating func skipValue(depth: Int) throws(WireError) {
        guard let kind = kind() else {
            throw syntaxError(position < bytes.count ? "expected a value" : "unexpected end of input")
        }
        switch kind {
        case .object:
            if depth >= JSONReader.maxDepth { throw syntaxError("nesting deeper than \(JSONReader.maxDepth) levels") }
            position += 1
            skipWhitespace()
            if peek() == UInt8(ascii: "}") { position += 1; return }
            while true {
                skipWhitespace()
                guard peek() == UInt8(ascii: "\"") else { throw syntaxError("expected a member name") }
                _ = try scanString(collect: false)
                try expectAfterWhitespace(UInt8(ascii: ":"), "expected ':'")
                try skipValue(depth: depth + 1)
                skipWhitespace()
                if peek() == UInt8(ascii: ",") { position += 1; continue }
                try expectAfterWhitespace(UInt8(ascii: "}"), "expected ',' or '}'")
                return
            }
        case .array:
            if depth >= JSONReader.maxDepth { throw syntaxError("nesting deeper than \(JSONReader.maxDepth) levels") }
            position += 1
            skipWhitespace()
            if peek() == UInt8(ascii: "]") { position += 1; return }
            while true {
                try skipValue(depth: depth + 1)
                skipWhitespace()
                if peek() == UInt8(ascii: ",") { position += 1; continue }
                try expectAfterWhitespace(UInt8(ascii: "]"), "expected ',' or ']'")
                return
            }
        case .string:
            _ = try scanString(collect: false)
        case .number:
            _ = try scanNumber()
        case .bool:
            if !literal("true") && !literal("false") { throw syntaxError("expected a value") }
        case .null:
            if !literal("null") { throw syntaxError("expected a value") }
        }
    }

    mutating func expectAfterWhitespace(_ byte: UInt8, _ what: String) throws(WireError) {
        skipWhitespace()
        guard peek() == byte else {
            throw syntaxError(position < bytes.count ? what : "unexpected end of input")
        }
        position += 1
    }

    /// Consumes `word` if the input continues with it.
    mutating func literal(_ word: StaticString) -> Bool {
        let n = word.utf8CodeUnitCount
        guard position + n <= bytes.count else { return false }
        for i in 0..<n where bytes[position + i] != word.utf8Start[i] { return false }
        position += n
        return true
    }

    /// Scans a number token (JSON grammar, plus `NaN`, `Infinity`, `-Infinity`).
    mutating func scanNumber() throws(WireError) -> Number {
        skipWhitespace()
        let start = position
        if literal("NaN") { return Number(start: start, end: position, isInteger: false, special: .nan) }
        if literal("Infinity") { return Number(start: start, end: position, isInteger: false, special: .infinity) }
        if literal("-Infinity") { return Number(start: start, end: position, isInteger: false, special: -.infinity) }
        func isDigit(_ b: UInt8?) -> Bool { b.map { $0 >= 0x30 && $0 <= 0x39 } ?? false }
        if peek() == UInt8(ascii: "-") { position += 1 }
        guard isDigit(peek()) else { throw syntaxError("bad number", at: start) }
        if peek() == UInt8(ascii: "0") {
            position += 1
            if isDigit(peek()) { throw syntaxError("bad number (leading zero)", at: start) }
        } else {
            while isDigit(peek()) { position += 1 }
        }
        var isInteger = true
        if peek() == UInt8(ascii: ".") {
            isInteger = false
            position += 1
            guard isDigit(peek()) else { throw syntaxError("bad number", at: start) }
            while isDigit(peek()) { position += 1 }
        }
        if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
            isInteger = false
            position += 1
            if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { position += 1 }
            guard isDigit(peek()) else { throw syntaxError("bad number", at: start) }
            while isDigit(peek()) { position += 1 }
        }
        return Number(start: start, end: position, isInteger: isInteger, special: nil)
    }

    /// Scans a string at `position` (which holds `"`), validating escapes and UTF-8. With
    /// `collect`, returns its decoded UTF-8 bytes.
    mutating func scanString(collect: Bool) throws(WireError) -> [UInt8] {
        var out: [UInt8] = []
        position += 1  // opening quote
        while true {
            guard position < bytes.count else { throw syntaxError("unterminated string") }
            let b = bytes[position]
            switch b {
            case UInt8(ascii: "\""):
                position += 1
                return out
            case UInt8(ascii: "\\"):
                position += 1
                guard let e = peek() else { throw syntaxError("unterminated string") }
                position += 1
                let simple: UInt8?
                switch e {
                case UInt8(ascii: "\""): simple = 0x22
                case UInt8(ascii: "\\"): simple = 0x5C
                case UInt8(ascii: "/"): simple = 0x2F
                case UInt8(ascii: "b"): simple = 0x08
                case UInt8(ascii: "f"): simple = 0x0C
                case UInt8(ascii: "n"): simple = 0x0A
                case UInt8(ascii: "r"): simple = 0x0D
                case UInt8(ascii: "t"): simple = 0x09
                case UInt8(ascii: "u"): simple = nil
                default: throw syntaxError("bad escape", at: position - 2)
                }
                if let simple {
                    if collect { out.append(simple) }
                    continue
                }
                let escapeStart = position - 2
                var scalar = try hex4()
                if (0xD800...0xDBFF).contains(scalar) {
                    guard literal("\\u") else { throw syntaxError("unpaired surrogate escape", at: escapeStart) }
                    let low = try hex4()
                    guard (0xDC00...0xDFFF).contains(low) else { throw syntaxError("unpaired surrogate escape", at: escapeStart) }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00...0xDFFF).contains(scalar) {
                    throw syntaxError("unpaired surrogate escape", at: escapeStart)
                }
                if collect, let s = Unicode.Scalar(scalar) { out.append(contentsOf: UTF8.encode(s)!) }
            case 0..<0x20:
                throw syntaxError("control character in string")
            case 0x80...:
                let n = try utf8SequenceLength()
                if collect { out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[position..<position + n])) }
                position += n
            default:
                if collect { out.append(b) }
                position += 1
            }
        }
    }

    private mutating func hex4() throws(WireError) -> UInt32 {
        guard position + 4 <= bytes.count else { throw syntaxError("bad \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let b = bytes[position]
            let digit: UInt8
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = b - 0x30
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = b - 0x61 + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = b - 0x41 + 10
            default: throw syntaxError("bad \\u escape")
            }
            value = value << 4 | UInt32(digit)
            position += 1
        }
        return value
    }

    /// The length of the well-formed UTF-8 sequence at `position` (Unicode Table 3-7).
    private func utf8SequenceLength() throws(WireError) -> Int {
        let lead = bytes[position]
        let length: Int, secondLow: UInt8, secondHigh: UInt8
        switch lead {
        case 0xC2...0xDF: (length, secondLow, secondHigh) = (2, 0x80, 0xBF)
        case 0xE0: (length, secondLow, secondHigh) = (3, 0xA0, 0xBF)
        case 0xE1...0xEC, 0xEE...0xEF: (length, secondLow, secondHigh) = (3, 0x80, 0xBF)
        case 0xED: (length, secondLow, secondHigh) = (3, 0x80, 0x9F)
        case 0xF0: (length, secondLow, secondHigh) = (4, 0x90, 0xBF)
        case 0xF1...0xF3: (length, secondLow, secondHigh) = (4, 0x80, 0xBF)
        case 0xF4: (length, secondLow, secondHigh) = (4, 0x80, 0x8F)
        default: throw syntaxError("invalid UTF-8")
        }
        guard position + length <= bytes.count else { throw syntaxError("invalid UTF-8") }
        let second = bytes[position + 1]
        guard second >= secondLow && second <= secondHigh else { throw syntaxError("invalid UTF-8") }
        for i in 2..<length where bytes[position + i] & 0xC0 != 0x80 { throw syntaxError("invalid UTF-8") }
        return length
    }

    // MARK: Pass 2: reading validated text

    /// The members of the object at `position`, in document order: name and value position.
    mutating func members() throws(WireError) -> [(name: String, value: Int)] {
        var result: [(name: String, value: Int)] = []
        skipWhitespace()
        position += 1  // {
        skipWhitespace()
        if peek() == UInt8(ascii: "}") { position += 1; return result }
        while true {
            skipWhitespace()
            let name = String(decoding: try scanString(collect: true), as: UTF8.self)
            try expectAfterWhitespace(UInt8(ascii: ":"), "expected ':'")
            skipWhitespace()
            result.append((name, position))
            try skipValue(depth: 1)
            skipWhitespace()
            if peek() == UInt8(ascii: ",") { position += 1; continue }
            try expectAfterWhitespace(UInt8(ascii: "}"), "expected ',' or '}'")
            return result
        }
    }

    /// Calls `body` for each element of the array at `position`, with the reader on the element;
    /// `body` must consume it.
    mutating func forEachElement(_ body: (Int, inout JSONReader) throws(WireError) -> Void) throws(WireError) {
        skipWhitespace()
        position += 1  // [
        skipWhitespace()
        if peek() == UInt8(ascii: "]") { position += 1; return }
        var index = 0
        while true {
            skipWhitespace()
            try body(index, &self)
            index += 1
            skipWhitespace()
            if peek() == UInt8(ascii: ",") { position += 1; continue }
            try expectAfterWhitespace(UInt8(ascii: "]"), "expected ',' or ']'")
            return
        }
    }

    /// The number of elements of the array at `position` (consumes it).
    mutating func countElements() throws(WireError) -> Int {
        var count = 0
        try forEachElement { _, reader throws(WireError) in
            try reader.skipValue(depth: 1)
            count += 1
        }
        return count
    }

    /// The token as an unsigned integer if it's written as one and is at most `limit`
    /// (`-0` counts as 0, like the reference decoder).
    func unsignedValue(_ n: Number, limit: UInt64) -> UInt64? {
        guard n.isInteger else { return nil }
        var i = n.start
        let negative = bytes[i] == UInt8(ascii: "-")
        if negative { i += 1 }
        var value: UInt64 = 0
        while i < n.end {
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(UInt64(bytes[i] - 0x30))
            if o1 || o2 { return nil }
            value = sum
            i += 1
        }
        if negative && value != 0 { return nil }
        return value <= limit ? value : nil
    }

    /// The token's value as the nearest float64 (as the reference decoder parses it).
    func doubleValue(_ n: Number) -> Double {
        if let special = n.special { return special }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[n.start..<n.end]), as: UTF8.self)
        return Double(text) ?? .nan
    }
}
