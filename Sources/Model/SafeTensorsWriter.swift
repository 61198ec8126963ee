import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Writes float32 safetensors files with the scenescore metadata, crash-safely: the bytes go
/// to a temporary file in the same directory, which is fsynced and renamed over the target,
/// and the directory is fsynced — so a crash leaves either the old file or the new one.
public enum SafeTensorsWriter {
    public struct Tensor {
        public let name: String
        public let shape: [Int]
        public let values: [Float]
        public init(name: String, shape: [Int], values: [Float]) {
            precondition(shape.reduce(1, *) == values.count, "tensor \(name): shape \(shape) vs \(values.count) values")
            self.name = name; self.shape = shape; self.values = values
        }
    }

    /// Writes `tensors` with `metadata` plus `scenescore.sha256`, returning that hash.
    @discardableResult
    public static func write(_ tensors: [Tensor], metadata: [String: String], to path: String) throws -> String {
        let ordered = tensors.sorted { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
        var data = [UInt8]()
        data.reserveCapacity(ordered.reduce(0) { $0 + $1.values.count * 4 })
        var entries: [String: Any] = [:]
        for t in ordered {
            let begin = data.count
            for v in t.values { withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
            entries[t.name] = ["dtype": "F32", "shape": t.shape, "data_offsets": [begin, data.count]] as [String: Any]
        }
        // Tensors are stored in name order, so the stored bytes are the hash input as they are.
        let hash = data.withUnsafeBytes { SHA256Hasher.hex([$0]) }
        var meta = metadata
        meta["scenescore.sha256"] = hash
        entries["__metadata__"] = meta
        var header = try JSONSerialization.data(withJSONObject: entries, options: [.sortedKeys])
        while header.count % 8 != 0 { header.append(0x20) }
        var file = [UInt8]()
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(contentsOf: header)
        file.append(contentsOf: data)
        try AtomicFile.write(file, to: path)
        return hash
    }
}

/// Crash-safe replacement of a file's contents (write temp, fsync, rename, fsync directory).
public enum AtomicFile {
    public struct Failure: Error, CustomStringConvertible { public let description: String }

    public static func write(_ bytes: [UInt8], to path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent
        let temp = "\(path).tmp-\(getpid())"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Failure(description: "cannot create \(temp): \(String(cString: strerror(errno)))") }
        var written = 0
        let ok = bytes.withUnsafeBytes { raw -> Bool in
            while written < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + written, raw.count - written)
                if n < 0 { if errno == EINTR { continue }; return false }
                written += n
            }
            return fsync(fd) == 0
        }
        close(fd)
        guard ok else {
            unlink(temp)
            throw Failure(description: "cannot write \(temp): \(String(cString: strerror(errno)))")
        }
        guard rename(temp, path) == 0 else {
            unlink(temp)
            throw Failure(description: "cannot rename \(temp) to \(path): \(String(cString: strerror(errno)))")
        }
        let dfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }
}

/// The `__metadata__` of a scenescore model file (Proto/MODEL-FORMAT.md): format, kind, the
/// spec as sorted-key JSON, and how the weights were made.
public enum ModelMetadata {
    public static func make<S: Encodable>(kind: String, spec: S, training: String) throws -> [String: String] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return ["scenescore.format": "1", "scenescore.kind": kind,
                "scenescore.spec": String(decoding: try encoder.encode(spec), as: UTF8.self),
                "scenescore.training": training]
    }
}
