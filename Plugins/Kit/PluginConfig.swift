// The config a plugin's create() receives: a flat JSON object whose values are numbers, e.g.
// {"scene_index": 3, "mean_log_price": 5.0}. A small hand-written reader (RFC 8259 numbers and
// plain keys only) so a plugin needs no Foundation; every refusal says what and where.

/// The numbers of a config object, each key one of the plugin's known keys.
public struct PluginConfig: Sendable {
    public private(set) var values: [String: Double] = [:]

    /// Parses `length` bytes of JSON (not NUL-terminated). `known` lists the accepted keys: an
    /// unknown key is an error (a typo must not fall back to a default silently).
    public init(json: UnsafePointer<CChar>?, length: Int, known: [String]) throws(PluginFailure) {
        guard let json, length > 0 else { throw PluginFailure("config: expected a JSON object, got nothing") }
        let bytes = UnsafeRawBufferPointer(start: json, count: length).bindMemory(to: UInt8.self)
        var reader = Reader(bytes: bytes)
        reader.skipSpace()
        try reader.expect(UInt8(ascii: "{"), "a JSON object")
        reader.skipSpace()
        if !reader.take(UInt8(ascii: "}")) {
            while true {
                let key = try reader.key()
                guard known.contains(key) else {
                    throw PluginFailure("config: unknown key '\(key)' (known: \(known.joined(separator: ", ")))")
                }
                guard values[key] == nil else { throw PluginFailure("config: key '\(key)' repeats") }
                reader.skipSpace()
                try reader.expect(UInt8(ascii: ":"), "':' after '\(key)'")
                reader.skipSpace()
                values[key] = try reader.number(for: key)
                reader.skipSpace()
                if reader.take(UInt8(ascii: ",")) { reader.skipSpace(); continue }
                try reader.expect(UInt8(ascii: "}"), "',' or '}'")
                break
            }
        }
        reader.skipSpace()
        guard reader.atEnd else { throw PluginFailure("config: trailing bytes after the object at byte \(reader.index)") }
    }

    /// The value of `key`, or `fallback` when the config does not set it; fails unless `valid`.
    public func number(_ key: String, default fallback: Double, where valid: (Double) -> Bool = { _ in true },
                       _ requirement: String = "") throws(PluginFailure) -> Double {
        let value = values[key] ?? fallback
        guard valid(value) else { throw PluginFailure("config: \(key) \(value) \(requirement)") }
        return value
    }

    /// An integer value of `key` in `range`.
    public func integer(_ key: String, default fallback: Int, in range: ClosedRange<Int>) throws(PluginFailure) -> Int {
        let value = values[key] ?? Double(fallback)
        guard value == value.rounded(), value >= Double(range.lowerBound), value <= Double(range.upperBound) else {
            throw PluginFailure("config: \(key) must be an integer \(range.lowerBound)…\(range.upperBound), not \(value)")
        }
        return Int(value)
    }

    private struct Reader {
        let bytes: UnsafeBufferPointer<UInt8>
        var index = 0

        var atEnd: Bool { index == bytes.count }
        var current: UInt8? { index < bytes.count ? bytes[index] : nil }

        mutating func skipSpace() {
            while let c = current, c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D { index += 1 }
        }

        mutating func take(_ c: UInt8) -> Bool {
            guard current == c else { return false }
            index += 1
            return true
        }

        mutating func expect(_ c: UInt8, _ what: String) throws(PluginFailure) {
            guard take(c) else { throw PluginFailure("config: expected \(what) at byte \(index)") }
        }

        mutating func key() throws(PluginFailure) -> String {
            try expect(UInt8(ascii: "\""), "a key")
            let start = index
            while let c = current, c != UInt8(ascii: "\"") {
                guard c != UInt8(ascii: "\\"), c >= 0x20 else { throw PluginFailure("config: keys must be plain names (byte \(index))") }
                index += 1
            }
            guard !atEnd else { throw PluginFailure("config: unterminated key") }
            let key = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
            index += 1
            return key
        }

        /// An RFC 8259 number; a string, literal, array or object is refused by name.
        mutating func number(for key: String) throws(PluginFailure) -> Double {
            func isDigit(_ c: UInt8?) -> Bool { c.map { (0x30...0x39).contains($0) } ?? false }
            let start = index
            _ = take(UInt8(ascii: "-"))
            if !take(UInt8(ascii: "0")) {
                guard isDigit(current) else { throw notNumber(key, at: start) }
                while isDigit(current) { index += 1 }
            }
            if take(UInt8(ascii: ".")) {
                guard isDigit(current) else { throw notNumber(key, at: start) }
                while isDigit(current) { index += 1 }
            }
            if take(UInt8(ascii: "e")) || take(UInt8(ascii: "E")) {
                if !take(UInt8(ascii: "+")) { _ = take(UInt8(ascii: "-")) }
                guard isDigit(current) else { throw notNumber(key, at: start) }
                while isDigit(current) { index += 1 }
            }
            let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
            guard let value = Double(text), value.isFinite else { throw PluginFailure("config: \(key) \(text) is not a finite number") }
            return value
        }

        func notNumber(_ key: String, at start: Int) -> PluginFailure {
            let kind: String
            switch start < bytes.count ? bytes[start] : 0 {
            case UInt8(ascii: "\""): kind = "a string"
            case UInt8(ascii: "t"), UInt8(ascii: "f"): kind = "a boolean"
            case UInt8(ascii: "n"): kind = "null"
            case UInt8(ascii: "["): kind = "an array"
            case UInt8(ascii: "{"): kind = "an object"
            default: kind = "malformed"
            }
            return PluginFailure("config: \(key) must be a number, not \(kind) (byte \(start))")
        }
    }
}
