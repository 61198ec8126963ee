internal import COpenSSL
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A validated, memory-mapped safetensors file.
///
/// Validation follows the format's own reader (safetensors `read_metadata`): the header length
/// is capped and checked against the file before it is read; every size is computed with
/// overflow checks; tensors must lie back to back, in offset order, covering the data section
/// exactly — so no two overlap and no byte is unaccounted for. Each failure is a
/// `ModelLoadError` naming the file and, where one is to blame, the tensor.
public final class SafeTensorsFile {
    /// Headers above this are refused before any allocation (safetensors uses 100 MB too).
    public static let maxHeaderBytes = 100 * 1024 * 1024

    public enum DType: String, Sendable {
        case f32 = "F32", f16 = "F16", bf16 = "BF16"
        public var size: Int { self == .f32 ? 4 : 2 }
    }

    public struct TensorInfo: Sendable {
        public let name: String
        public let dtype: DType
        public let shape: [Int]
        /// Byte range inside the data section.
        public let range: Range<Int>
        public var elementCount: Int { shape.reduce(1, *) }
    }

    public let path: String
    public let metadata: [String: String]
    public let tensors: [String: TensorInfo]
    private let storage: Storage
    private let dataOffset: Int

    /// Where the file's bytes live: a read-only mapping of the file, or a copy in memory.
    private enum Storage {
        case mapped(UnsafeRawBufferPointer)
        case owned(UnsafeMutableRawBufferPointer)

        var bytes: UnsafeRawBufferPointer {
            switch self {
            case .mapped(let bytes): return bytes
            case .owned(let bytes): return UnsafeRawBufferPointer(bytes)
            }
        }

        func release() {
            switch self {
            case .mapped(let bytes): munmap(UnsafeMutableRawPointer(mutating: bytes.baseAddress), bytes.count)
            case .owned(let bytes): bytes.deallocate()
            }
        }
    }

    /// Maps and validates the file at `path`.
    public init(path: String) throws {
        self.path = path
        let name = (path as NSString).lastPathComponent
        func fail(_ problem: String) -> ModelLoadError { ModelLoadError(file: name, problem) }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw fail("cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw fail("cannot stat: \(String(cString: strerror(errno)))") }
        let size = Int(st.st_size)
        guard size >= 8 else { throw Self.shorterThanHeaderLength(size, name: name) }  // mmap refuses 0 bytes
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw fail("cannot map: \(String(cString: strerror(errno)))")
        }
        let storage = Storage.mapped(UnsafeRawBufferPointer(start: base, count: size))
        let table: (metadata: [String: String], tensors: [String: TensorInfo], dataOffset: Int)
        do { table = try Self.validate(storage.bytes, name: name) } catch {
            storage.release()
            throw error
        }
        metadata = table.metadata
        tensors = table.tensors
        dataOffset = table.dataOffset
        self.storage = storage
    }

    /// Validates a file's bytes held in memory (an upload, a fuzzer's input) exactly as
    /// `init(path:)` validates a file; `name` stands for the file in errors and is `path`.
    public init(bytes: UnsafeRawBufferPointer, name: String) throws {
        path = name
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 16)
        if bytes.count > 0 { copy.copyMemory(from: bytes) }
        let storage = Storage.owned(copy)
        let table: (metadata: [String: String], tensors: [String: TensorInfo], dataOffset: Int)
        do { table = try Self.validate(storage.bytes, name: name) } catch {
            storage.release()
            throw error
        }
        metadata = table.metadata
        tensors = table.tensors
        dataOffset = table.dataOffset
        self.storage = storage
    }

    deinit { storage.release() }

    /// The checks of both initialisers, on the whole file: the header, then
    /// the tensor table against the data section. Returns the metadata, the tensors and where
    /// the data section starts.
    private static func validate(_ file: UnsafeRawBufferPointer, name: String) throws
        -> (metadata: [String: String], tensors: [String: TensorInfo], dataOffset: Int) {
        func fail(_ problem: String) -> ModelLoadError { ModelLoadError(file: name, problem) }
        func fail(_ tensor: String, _ problem: String) -> ModelLoadError {
            ModelLoadError(file: name, tensor: tensor, problem)
        }
        let size = file.count
        guard size >= 8 else { throw shorterThanHeaderLength(size, name: name) }
        let headerLength = UInt64(littleEndian: file.loadUnaligned(as: UInt64.self))
        guard headerLength <= UInt64(Self.maxHeaderBytes) else {
            throw fail("header length \(headerLength) exceeds the \(Self.maxHeaderBytes)-byte limit")
        }
        guard headerLength <= UInt64(size - 8) else {
            throw fail("header length \(headerLength) runs beyond end of file (\(size) bytes): truncated")
        }
        let headerEnd = 8 + Int(headerLength)
        let headerData = Data(file[8..<headerEnd])
        guard let json = try? JSONSerialization.jsonObject(with: headerData),
              let header = json as? [String: Any] else {
            throw fail("header is not a JSON object")
        }
        var metadata: [String: String] = [:]
        if let meta = header["__metadata__"] {
            guard let m = meta as? [String: String] else { throw fail("header __metadata__ is not a string map") }
            metadata = m
        }
        var infos: [TensorInfo] = []
        for (tensorName, value) in header where tensorName != "__metadata__" {
            infos.append(try Self.parseEntry(tensorName, value, file: name))
        }
        // Back to back in offset order, starting at 0, ending at the end of the file.
        infos.sort { ($0.range.lowerBound, $0.range.upperBound) < ($1.range.lowerBound, $1.range.upperBound) }
        var expected = 0
        for info in infos {
            if info.range.lowerBound < expected {
                throw fail(info.name, "data offsets \(info.range) overlap the previous tensor (which ends at \(expected))")
            }
            if info.range.lowerBound > expected {
                throw fail(info.name, "data offsets leave a gap: starts at \(info.range.lowerBound), previous tensor ends at \(expected)")
            }
            expected = info.range.upperBound
        }
        let dataLength = size - headerEnd
        if expected > dataLength {
            throw fail("truncated: tensors need \(expected) data bytes, the file holds \(dataLength) (data runs beyond end of file)")
        }
        if expected < dataLength {
            throw fail("\(dataLength - expected) trailing bytes after the last tensor")
        }
        return (metadata, Dictionary(uniqueKeysWithValues: infos.map { ($0.name, $0) }), headerEnd)
    }

    private static func shorterThanHeaderLength(_ size: Int, name: String) -> ModelLoadError {
        ModelLoadError(file: name, "truncated: \(size) bytes, shorter than the 8-byte header length")
    }

    private static func parseEntry(_ name: String, _ value: Any, file: String) throws -> TensorInfo {
        func fail(_ tensor: String, _ problem: String) -> ModelLoadError {
            ModelLoadError(file: file, tensor: tensor, problem)
        }
        guard let entry = value as? [String: Any],
              let dtypeName = entry["dtype"] as? String,
              let shapeAny = entry["shape"] as? [Any],
              let offsetsAny = entry["data_offsets"] as? [Any], offsetsAny.count == 2 else {
            throw fail(name, "header entry needs dtype, shape and two data_offsets")
        }
        guard let dtype = DType(rawValue: dtypeName) else {
            throw fail(name, "dtype \(dtypeName) is not supported (F32, F16 or BF16)")
        }
        func int(_ x: Any) -> Int? {
            guard let n = x as? NSNumber, n.doubleValue >= 0, n.doubleValue < 9.0e15,
                  n.doubleValue == n.doubleValue.rounded() else { return nil }
            return n.intValue
        }
        let shape = shapeAny.compactMap(int)
        guard shape.count == shapeAny.count else { throw fail(name, "header shape \(shapeAny) is not a list of sizes") }
        guard let begin = int(offsetsAny[0]), let end = int(offsetsAny[1]), begin <= end else {
            throw fail(name, "header data_offsets \(offsetsAny) are not an increasing pair")
        }
        var bytes = dtype.size
        for d in shape {
            let (product, overflow) = bytes.multipliedReportingOverflow(by: d)
            guard !overflow else { throw fail(name, "header shape \(shape) overflows") }
            bytes = product
        }
        guard bytes == end - begin else {
            throw fail(name, "header shape \(shape) of \(dtypeName) needs \(bytes) bytes, data_offsets span \(end - begin)")
        }
        return TensorInfo(name: name, dtype: dtype, shape: shape, range: begin..<end)
    }

    /// The raw bytes of a tensor as stored.
    public func rawBytes(_ info: TensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: storage.bytes[(dataOffset + info.range.lowerBound)..<(dataOffset + info.range.upperBound)])
    }

    /// A tensor's values as float32, checked to have `shape` and finite values.
    public func floats(_ name: String, shape: [Int]) throws -> [Float] {
        let file = (path as NSString).lastPathComponent
        guard let info = tensors[name] else {
            throw ModelLoadError(file: file, tensor: name, "missing (expected shape \(shape))")
        }
        guard info.shape == shape else {
            throw ModelLoadError(file: file, tensor: name, "shape \(info.shape), expected \(shape)")
        }
        let raw = rawBytes(info)
        var values = [Float](repeating: 0, count: info.elementCount)
        values.withUnsafeMutableBufferPointer { out in
            switch info.dtype {
            case .f32:
                for i in 0..<out.count { out[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
            case .f16:
                for i in 0..<out.count { out[i] = Float(Float16(bitPattern: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))) }
            case .bf16:
                for i in 0..<out.count { out[i] = Float(bitPattern: UInt32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16) }
            }
        }
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw ModelLoadError(file: file, tensor: name, "value \(values[bad]) at flat index \(bad) is not finite")
        }
        return values
    }

    /// SHA-256 of every tensor's stored bytes, concatenated in byte-wise order of name.
    public func contentSHA256() -> String {
        let ordered = tensors.values.sorted { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
        return SHA256Hasher.hex(ordered.map { rawBytes($0) })
    }

    /// Checks `scenescore.sha256` against the data.
    public func verifyContentHash() throws {
        let file = (path as NSString).lastPathComponent
        guard let claimed = metadata["scenescore.sha256"] else {
            throw ModelLoadError(file: file, "metadata has no scenescore.sha256")
        }
        let actual = contentSHA256()
        guard claimed.lowercased() == actual else {
            throw ModelLoadError(file: file, "sha256 mismatch: metadata says \(claimed), the tensor data hashes to \(actual)")
        }
    }
}

/// SHA-256 through OpenSSL's EVP interface.
public enum SHA256Hasher {
    public static func hex(_ parts: [UnsafeRawBufferPointer]) -> String {
        let ctx = EVP_MD_CTX_new()!
        defer { EVP_MD_CTX_free(ctx) }
        EVP_DigestInit_ex(ctx, EVP_sha256(), nil)
        for p in parts where p.count > 0 { EVP_DigestUpdate(ctx, p.baseAddress, p.count) }
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        EVP_DigestFinal_ex(ctx, &digest, &length)
        return digest.prefix(Int(length)).map { String(format: "%02x", $0) }.joined()
    }
}
