// Shared pieces of the binary format (WIRE.md §2): constants, little-endian loads and stores,
// padding, the scene-name rule, and the text helpers error details are built with.

enum Format {
    static let headerSize = 32
    static let maxSceneLength = 64
    static let version: UInt16 = 1
    static let requestMagic: [UInt8] = [0x53, 0x53, 0x51, 0x31]   // "SSQ1"
    static let responseMagic: [UInt8] = [0x53, 0x53, 0x52, 0x31]  // "SSR1"

    /// Round up to a multiple of 8 (only for sizes already known to fit the body).
    @inline(__always) static func pad8(_ x: Int) -> Int { (x + 7) & ~7 }

    @inline(__always) static func u16(_ p: UnsafeRawBufferPointer, _ offset: Int) -> UInt16 {
        UInt16(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }
    @inline(__always) static func u32(_ p: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
        UInt32(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }
    @inline(__always) static func u64(_ p: UnsafeRawBufferPointer, _ offset: Int) -> UInt64 {
        UInt64(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    @inline(__always) static func append<T: FixedWidthInteger>(_ value: T, to out: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
    }
    @inline(__always) static func appendZeros(_ count: Int, to out: inout [UInt8]) {
        for _ in 0..<count { out.append(0) }
    }
    /// Appends `bytes` followed by zero padding up to a multiple of 8.
    static func appendPadded<C: Collection>(_ bytes: C, to out: inout [UInt8]) where C.Element == UInt8 {
        out.append(contentsOf: bytes)
        appendZeros(pad8(bytes.count) - bytes.count, to: &out)
    }

    /// Appends the 32-bit patterns of `values` little-endian, then zero padding.
    static func appendPadded(words: UnsafeRawBufferPointer, count: Int, to out: inout [UInt8]) {
        #if _endian(little)
        out.append(contentsOf: UnsafeRawBufferPointer(rebasing: words[0..<4 * count]))
        #else
        for i in 0..<count { append(words.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self), to: &out) }
        #endif
        appendZeros(pad8(4 * count) - 4 * count, to: &out)
    }

    /// The scene-name rule (WIRE.md §5 steps 13 and 15): 1…64 bytes of `[a-z0-9_-]`.
    static func checkSceneName<C: Collection>(_ raw: C) throws(WireError) where C.Element == UInt8 {
        guard (1...maxSceneLength).contains(raw.count) else {
            throw .malformed("scene_len must be between 1 and \(maxSceneLength), got \(raw.count)")
        }
        for byte in raw where !isSceneByte(byte) {
            throw .malformed("bad scene name \(showBytes(raw)): only lowercase a-z, 0-9, '_' and '-' are allowed")
        }
    }

    @inline(__always) static func isSceneByte(_ b: UInt8) -> Bool {
        (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == 0x5F || b == 0x2D
    }

    /// Quotes bytes for an error detail: printable ASCII as is (`"` and `\` escaped with `\`),
    /// anything else as `\xNN`.
    static func showBytes<C: Collection>(_ raw: C) -> String where C.Element == UInt8 {
        var s = "\""
        for b in raw {
            if b == 0x22 || b == 0x5C {
                s += "\\" + String(UnicodeScalar(b))
            } else if b >= 0x20 && b < 0x7F {
                s.unicodeScalars.append(UnicodeScalar(b))
            } else {
                s += "\\x" + hex(b, digits: 2)
            }
        }
        return s + "\""
    }

    /// Lowercase hex, zero-padded to `digits`.
    static func hex<T: BinaryInteger>(_ value: T, digits: Int) -> String {
        let text = String(value, radix: 16)
        return String(repeating: "0", count: max(0, digits - text.count)) + text
    }

    /// `53 53 52 31`.
    static func hexBytes<C: Collection>(_ raw: C) -> String where C.Element == UInt8 {
        raw.map { hex($0, digits: 2) }.joined(separator: " ")
    }

    /// `NaN`, `+Inf` or `-Inf`.
    static func describeNonFinite(_ v: Float) -> String { v.isNaN ? "NaN" : (v > 0 ? "+Inf" : "-Inf") }
}

/// JSON text output shared by the problem and response encoders.
enum JSONText {
    /// Appends `s` as a JSON string literal (RFC 8259 escapes; non-ASCII stays UTF-8).
    static func appendString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var s = s
        // Runs of bytes that need no escape are copied whole: byte by byte, every append
        // re-checks the array's uniqueness and capacity (problem documents are mostly such runs).
        s.withUTF8 { bytes in
            var run = 0
            for i in bytes.indices {
                let b = bytes[i]
                guard b < 0x20 || b == 0x22 || b == 0x5C else { continue }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[run..<i]))
                switch b {
                case 0x22: out.append(contentsOf: [0x5C, 0x22])
                case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
                case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
                case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
                case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
                default: out.append(contentsOf: "\\u00\(Format.hex(b, digits: 2))".utf8)
                }
                run = i + 1
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[run...]))
        }
        out.append(UInt8(ascii: "\""))
    }

    /// Appends a float as the shortest decimal that round-trips (`Float.description`);
    /// a non-finite value (never a valid score) is written as `null` to keep the JSON valid.
    static func appendFloat(_ v: Float, to out: inout [UInt8]) {
        if v.isFinite {
            out.append(contentsOf: v.description.utf8)
        } else {
            out.append(contentsOf: "null".utf8)
        }
    }
}
