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
    /// The output layer: plain rows when it is narrow (see `NarrowLayer`), else packed.
    let output: PackedWeights?
    let narrowOutput: NarrowLayer?
    /// The per-output k × k interaction matrices, when the spec has them.
    let interaction: InteractionAdapter?

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
        if spec.interaction > 0, backbone.interaction == nil {
            throw ModelLoadError(file: name, "spec interaction \(spec.interaction) needs a backbone with interaction towers; this backbone has none")
        }
        if spec.interaction > 0, spec.interaction != backbone.interactionDim {
            throw ModelLoadError(file: name, "spec interaction \(spec.interaction) does not match the backbone's interaction dim \(backbone.interactionDim)")
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
        if spec.outputs.count <= NarrowLayer.maxOutputs {
            expected.formUnion(["output.weight", "output.bias"])
            narrowOutput = NarrowLayer(weights: try file.floats("output.weight", shape: [spec.outputs.count, width]),
                                       bias: try file.floats("output.bias", shape: [spec.outputs.count]), inputs: width)
            output = nil
        } else {
            output = try linear("output", out: spec.outputs.count, in: width)
            narrowOutput = nil
        }
        if spec.interaction > 0 {
            expected.insert("interaction.weight")
            let k = spec.interaction, outputs = spec.outputs.count
            let a = try file.floats("interaction.weight", shape: [outputs, k, k])
            interaction = InteractionAdapter(dim: k, outputs: outputs, matrices: a)
        } else {
            interaction = nil
        }
        if let extra = Set(file.tensors.keys).subtracting(expected).sorted().first {
            throw ModelLoadError(file: name, tensor: extra, "unexpected tensor for this head spec")
        }
        try file.verifyContentHash()
        self.spec = spec
        self.contentHash = file.metadata["scenescore.sha256"]!.lowercased()
    }

    public var byteCount: Int {
        ([down, up] + tower + (output.map { [$0] } ?? [])).reduce(0) { $0 + $1.byteCount } + (narrowOutput?.byteCount ?? 0)
            + (interaction?.packed.byteCount ?? 0)
    }
}

/// A head's interaction adapter (HeadSpec.interaction): per output o a k × k matrix A_o, whose
/// term uᵀ A_o v joins output o's logit. The matrices are packed side by side as one
/// k × (outputs·k) matrix B[i][o·k + j] = A_o[i][j], so uᵀB is every output's w_o = A_oᵀ u at
/// once — one GEMM for all requests of a head run; each candidate then adds v · w_o.
struct InteractionAdapter: Sendable {
    let dim: Int
    let outputs: Int
    let packed: PackedWeights

    /// `matrices`: outputs × k × k, row-major (A_o[i][j] at (o·k + i)·k + j).
    init(dim k: Int, outputs: Int, matrices a: [Float]) {
        self.dim = k
        self.outputs = outputs
        packed = PackedWeights(k: k, n: outputs * k, bias: nil) { i, col in a[((col / k) * k + i) * k + col % k] }
    }
}

/// A layer with a few outputs (a head's click / purchase logits), kept as plain rows: packed
/// into a 16-column panel it would be 15/16 padding — 4 KB of a 68 KB head, in memory for each
/// of thousands of heads and in multiply-adds for every candidate. Each output is a dot product
/// over 8-wide vectors.
final class NarrowLayer: Sendable {
    static let maxOutputs = 4
    let weights: [Float]  // outputs × inputs, row-major
    let bias: [Float]
    let inputs: Int
    var outputs: Int { bias.count }
    var byteCount: Int { (weights.count + bias.count) * 4 }

    init(weights: [Float], bias: [Float], inputs: Int) {
        self.weights = weights
        self.bias = bias
        self.inputs = inputs
    }

    /// out[r][j] = sigmoid(x[r] · w[j] + b[j] + addend[r][j]) for `rows` rows of x (row stride
    /// `stride`); `addend` (e.g. the interaction logits), when given, has out's layout.
    func sigmoid(_ x: UnsafePointer<Float>, rows: Int, stride: Int, addend: UnsafePointer<Float>? = nil,
                 into out: UnsafeMutablePointer<Float>, outStride: Int) {
        let k = inputs
        weights.withUnsafeBufferPointer { w in
            for r in 0..<rows {
                let row = x + r * stride
                for j in 0..<outputs {
                    var sum = dotProduct(row, w.baseAddress! + j * k, count: k) + bias[j]
                    if let addend { sum += addend[r * outStride + j] }
                    out[r * outStride + j] = Activation.sigmoid.apply(sum)
                }
            }
        }
    }
}

/// Σ a[i]·b[i] over `count` floats: 8-wide vectors, then the rest; any alignment.
@inline(__always)
func dotProduct(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
    var acc = SIMD8<Float>(repeating: 0)
    var i = 0
    while i + 8 <= count {
        acc.addProduct(UnsafeRawPointer(a + i).loadUnaligned(as: SIMD8<Float>.self),
                       UnsafeRawPointer(b + i).loadUnaligned(as: SIMD8<Float>.self))
        i += 8
    }
    var sum = acc.sum()
    while i < count { sum += a[i] * b[i]; i += 1 }
    return sum
}
