import Foundation
import Model
import Training

// The two file formats the project reads from outside: safetensors model files (heads arrive
// over the admin API) and NumPy .npy training data. Both parse from memory here, through the
// same validation as their file-reading initialisers.

/// `safetensors`: a safetensors file, then a head and a backbone built from it. An accepted
/// file's tensors lie inside its data section, back to back; each reads as floats or is refused
/// for a non-finite value; its hash is stable. A head or backbone that loads has the tensors
/// its spec names and a hash that matches its data.
public func fuzzSafeTensors(_ data: UnsafeRawBufferPointer) {
    let file: SafeTensorsFile
    do {
        file = try SafeTensorsFile(bytes: data, name: "fuzz.safetensors")
    } catch {
        require(error is ModelLoadError, "unexpected error type: \(error)")
        return
    }
    var covered = 0
    for info in file.tensors.values.sorted(by: { $0.range.lowerBound < $1.range.lowerBound }) {
        require(info.range.lowerBound == covered, "tensor '\(info.name)' does not follow the previous one")
        require(info.elementCount * info.dtype.size == info.range.count, "tensor '\(info.name)': shape and byte range disagree")
        require(file.rawBytes(info).count == info.range.count, "tensor '\(info.name)': raw bytes of the wrong size")
        covered = info.range.upperBound
        do {
            let values = try file.floats(info.name, shape: info.shape)
            require(values.count == info.elementCount && values.allSatisfy(\.isFinite), "tensor '\(info.name)': bad floats")
        } catch {
            require(error is ModelLoadError, "unexpected error type: \(error)")
        }
    }
    require(covered <= data.count, "tensors cover more than the file")
    let hash = file.contentSHA256()
    require(hash.utf8.count == 64 && hash == file.contentSHA256(), "content hash is not a stable SHA-256")
    do {
        let head = try AdapterHead(file: file, backbone: FuzzModels.smallBackboneSpec)
        trace("loaded head \(head.spec.version)")
        require(head.contentHash == hash, "a loaded head's hash is not its data's")
        require(head.spec.input == FuzzModels.smallBackboneSpec.outputWidth, "a head loaded for another backbone width")
    } catch {
        require(error is ModelLoadError, "unexpected error type: \(error)")
    }
    do {
        let backbone = try Backbone(file: file)
        trace("loaded backbone \(backbone.spec.hidden)")
        require(backbone.contentHash == hash, "a loaded backbone's hash is not its data's")
    } catch {
        require(error is ModelLoadError, "unexpected error type: \(error)")
    }
}

/// `npy`: a .npy file, read as float32 and as uint32 arrays. An accepted array has 1 or 2
/// dimensions whose product is its value count (finite, for float32) and writes back to a file
/// that reads as the same array.
public func fuzzNumpy(_ data: UnsafeRawBufferPointer) {
    let bytes = Array(data)
    readBack(NumpyArray<Float>.self, bytes)
    readBack(NumpyArray<UInt32>.self, bytes)
}

private func readBack<E: NumpyElement & Equatable>(_: NumpyArray<E>.Type, _ bytes: [UInt8]) {
    let array: NumpyArray<E>
    do {
        array = try NumpyArray<E>(npy: bytes, name: "fuzz.npy")
    } catch {
        require(error is NumpyFormatError, "unexpected error type: \(error)")
        trace("npy as \(E.self): \(error)")
        return
    }
    trace("npy as \(E.self): shape \(array.shape)")
    require(array.shape.count == 1 || array.shape.count == 2, "accepted shape \(array.shape)")
    require(array.shape.reduce(1, *) == array.values.count, "shape \(array.shape) for \(array.values.count) values")
    if let floats = array.values as? [Float] { require(floats.allSatisfy(\.isFinite), "accepted a non-finite float") }
    let written = array.npyBytes()
    guard let again = try? NumpyArray<E>(npy: written, name: "again.npy") else {
        require(false, "an accepted array, written back, is refused")
        return
    }
    require(again.shape == array.shape && again.values == array.values, "written back, the array reads differently")
}
