import Foundation
import Kernels

/// A scene's head: residual bottleneck adapter h' = h + U·relu(D·h + b_D) + b_U, a ReLU tower,
/// and K sigmoid outputs. Immutable once loaded, so one instance serves every thread.
public final class AdapterHead: Sendable {
    public let spec: HeadSpec
    public let contentHash: String
    let down: PackedWeights
    let up: PackedWeights
    let tower: [PackedWeights]
    let output: PackedWeights

    public convenience init(path: String, backbone: BackboneSpec) throws {
        try self.init(file: try SafeTensorsFile(path: path), backbone: backbone)
    }

    public init(file: SafeTensorsFile, backbone: BackboneSpec) throws {
        let name = (file.path as NSString).lastPathComponent
        let spec = try SpecReader.read(HeadSpec.self, kind: "head", from: file)
        try spec.validate(file: name)
        guard spec.input == backbone.outputWidth else {
            throw ModelLoadError(file: name, "spec input \(spec.input) does not match the backbone's output width \(backbone.outputWidth)")
        }
        var expected = Set<String>()
        func linear(_ prefix: String, out: Int, in k: Int) throws -> PackedWeights {
            expected.formUnion(["\(prefix).weight", "\(prefix).bias"])
            let w = try file.floats("\(prefix).weight", shape: [out, k])
            let b = try file.floats("\(prefix).bias", shape: [out])
            return w.withUnsafeBufferPointer { wp in
                b.withUnsafeBufferPointer { PackedWeights(outByIn: wp, out: out, in: k, bias: $0) }
            }
        }
        down = try linear("adapter.down", out: spec.bottleneck, in: spec.input)
        up = try linear("adapter.up", out: spec.input, in: spec.bottleneck)
        var width = spec.input
        var layers: [PackedWeights] = []
        for (j, t) in spec.tower.enumerated() {
            layers.append(try linear("tower.\(j)", out: t, in: width))
            width = t
        }
        tower = layers
        output = try linear("output", out: spec.outputs.count, in: width)
        if let extra = Set(file.tensors.keys).subtracting(expected).sorted().first {
            throw ModelLoadError(file: name, tensor: extra, "unexpected tensor for this head spec")
        }
        try file.verifyContentHash()
        self.spec = spec
        self.contentHash = file.metadata["scenescore.sha256"]!.lowercased()
    }

    public var byteCount: Int { ([down, up, output] + tower).reduce(0) { $0 + $1.byteCount } }
}
