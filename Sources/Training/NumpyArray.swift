import Foundation
import Model

/// A NumPy `.npy` array of 1 or 2 dimensions, little-endian uint32 or float32, C order — what
/// `numpy.save` writes for `np.uint32` / `np.float32` arrays, so data scientists can hand over
/// training data straight from numpy or pandas.
public struct NumpyArray<Element: NumpyElement>: Sendable {
    public var shape: [Int]
    public var values: [Element]

    public init(shape: [Int], values: [Element]) {
        precondition(shape.reduce(1, *) == values.count, "npy: \(values.count) values for shape \(shape)")
        self.shape = shape
        self.values = values
    }

    /// Rows (shape[0]) and columns (1 for a vector).
    public var rows: Int { shape.first ?? 0 }
    public var columns: Int { shape.count == 2 ? shape[1] : 1 }
}

public protocol NumpyElement: Sendable, BitwiseCopyable {
    /// The `descr` numpy writes for this type, little-endian.
    static var descr: String { get }
}
extension UInt32: NumpyElement { public static var descr: String { "<u4" } }
extension Float: NumpyElement { public static var descr: String { "<f4" } }

public struct NumpyFormatError: Error, CustomStringConvertible {
    public let file: String
    public let problem: String
    public var description: String { "\(file): \(problem)" }
}

extension NumpyArray {
    /// Reads and validates a `.npy` file: magic, version 1–3, a dict header with the expected
    /// `descr`, `fortran_order: False`, a 1-D or 2-D shape whose byte count matches the file.
    public init(contentsOf path: String) throws {
        let name = (path as NSString).lastPathComponent
        guard let data = FileManager.default.contents(atPath: path) else {
            throw NumpyFormatError(file: name, problem: "cannot be read")
        }
        try self.init(npy: [UInt8](data), name: name)
    }

    /// Reads and validates a `.npy` file's bytes held in memory, as `init(contentsOf:)` does;
    /// `name` stands for the file in errors.
    public init(npy bytes: [UInt8], name: String) throws {
        func bad(_ p: String) -> NumpyFormatError { NumpyFormatError(file: name, problem: p) }
        guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1...5]) == Array("NUMPY".utf8) else {
            throw bad("not a .npy file (bad magic)")
        }
        let major = bytes[6]
        var headerLength: Int, headerStart: Int
        switch major {
        case 1:
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8; headerStart = 10
        case 2, 3:
            guard bytes.count >= 12 else { throw bad("truncated header") }
            headerLength = (0..<4).reduce(0) { $0 | Int(bytes[8 + $1]) << (8 * $1) }; headerStart = 12
        default:
            throw bad("unsupported .npy version \(major)")
        }
        guard headerStart + headerLength <= bytes.count else { throw bad("header runs past the end of the file") }
        let header = String(decoding: bytes[headerStart..<headerStart + headerLength], as: UTF8.self)
        guard let descr = Self.field("descr", in: header) else { throw bad("header has no descr") }
        let wanted = Element.descr
        guard descr == "'\(wanted)'" || (wanted.hasSuffix("u4") && descr == "'|u4'") else {
            throw bad("dtype \(descr) where \(wanted == "<u4" ? "uint32" : "float32") ('\(wanted)') is expected")
        }
        guard Self.field("fortran_order", in: header) == "False" else { throw bad("fortran_order arrays are not supported; save with np.ascontiguousarray") }
        guard let shapeText = Self.field("shape", in: header) else { throw bad("header has no shape") }
        let dims = shapeText.trimmingCharacters(in: CharacterSet(charactersIn: "() "))
            .split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let shape = try dims.map { d -> Int in
            guard let v = Int(d), v >= 0 else { throw bad("shape \(shapeText) is not a tuple of sizes") }
            return v
        }
        guard shape.count == 1 || shape.count == 2 else { throw bad("shape \(shapeText): 1 or 2 dimensions expected") }
        let (count, overflow) = shape.reduce((1, false)) { acc, d in
            let r = acc.0.multipliedReportingOverflow(by: d); return (r.partialValue, acc.1 || r.overflow)
        }
        let dataStart = headerStart + headerLength
        guard !overflow, count <= (bytes.count - dataStart) / 4, bytes.count - dataStart == count * 4 else {
            throw bad("shape \(shape) needs \(count) × 4 bytes of data, the file holds \(bytes.count - dataStart)")
        }
        let values = [Element](unsafeUninitializedCapacity: count) { buf, n in
            bytes.withUnsafeBytes { raw in
                UnsafeMutableRawBufferPointer(buf).copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[dataStart..<dataStart + count * 4]))
            }
            n = count
        }
        #if _endian(big)
        #error("npy reading assumes a little-endian host")
        #endif
        if Element.self == Float.self, let bad = values.firstIndex(where: { !($0 as! Float).isFinite }) {
            throw NumpyFormatError(file: name, problem: "value \(bad) is not finite")
        }
        self.init(shape: shape, values: values)
    }

    /// Writes the array crash-safely (temporary file, fsync, rename): version 1.0, header padded
    /// so the data starts on a 64-byte boundary, as numpy does.
    public func write(to path: String) throws {
        try AtomicFile.write(npyBytes(), to: path)
    }

    /// The `.npy` file `write(to:)` writes: version 1.0, data on a 64-byte boundary.
    public func npyBytes() -> [UInt8] {
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(\(shape.map(String.init).joined(separator: ", ")))"
        var header = "{'descr': '\(Element.descr)', 'fortran_order': False, 'shape': \(shapeText), }"
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count & 0xff), UInt8(header.utf8.count >> 8)]
        bytes += Array(header.utf8)
        values.withUnsafeBytes { bytes += $0 }
        return bytes
    }

    /// The text of `key`'s value in a numpy header dict (a Python literal).
    private static func field(_ key: String, in header: String) -> String? {
        guard let k = header.range(of: "'\(key)'") else { return nil }
        var rest = header[k.upperBound...].drop { $0 == " " || $0 == ":" }
        if rest.first == "(" {
            guard let close = rest.firstIndex(of: ")") else { return nil }
            return String(rest[...close])
        }
        let end = rest.firstIndex { $0 == "," || $0 == "}" } ?? rest.endIndex
        rest = rest[..<end]
        return rest.trimmingCharacters(in: .whitespaces)
    }
}
