import Foundation
import Kernels

/// The frozen backbone: hashed embedding tables and an MLP, weights packed for the kernel.
public final class Backbone: Sendable {
    public let spec: BackboneSpec
    /// `scenescore.sha256` of the file it was loaded from.
    public let contentHash: String
    /// The embedding tables of the context fields and of the item fields, in spec order.
    let contextTables: EmbeddingTables
    let itemTables: EmbeddingTables
    /// Layer 0 split in its context columns (with layer 0's bias) and its item columns, so the
    /// context part is computed once per request (M = 1) and added to every candidate.
    let layer0Context: PackedWeights?
    let layer0Item: PackedWeights
    let layer0Bias: [Float]
    /// Layers 1… with their biases.
    let layers: [PackedWeights]
    /// The two-tower interaction, when the spec has one.
    let towers: InteractionTowers?

    public convenience init(path: String) throws {
        let file = try SafeTensorsFile(path: path)
        try self.init(file: file)
    }

    public init(file: SafeTensorsFile) throws {
        let name = (file.path as NSString).lastPathComponent
        let spec = try SpecReader.read(BackboneSpec.self, kind: "backbone", from: file)
        try spec.validate(file: name)
        var expected = Set<String>()
        func table(_ f: FieldSpec) throws -> [Float] {
            expected.insert("embedding.\(f.name)")
            return try file.floats("embedding.\(f.name)", shape: [f.vocab, f.dim])
        }
        contextTables = EmbeddingTables(try spec.contextFields.map(table), specs: spec.contextFields)
        itemTables = EmbeddingTables(try spec.itemFields.map(table), specs: spec.itemFields)
        var inWidth = spec.contextWidth + spec.itemWidth
        var packed: [PackedWeights] = []
        var l0Context: PackedWeights?
        var l0Item: PackedWeights?
        var l0Bias: [Float] = []
        for (i, out) in spec.hidden.enumerated() {
            expected.formUnion(["mlp.\(i).weight", "mlp.\(i).bias"])
            let w = try file.floats("mlp.\(i).weight", shape: [out, inWidth])
            let b = try file.floats("mlp.\(i).bias", shape: [out])
            if i == 0 {
                let cw = spec.contextWidth, width = inWidth
                l0Bias = b
                if cw > 0 {
                    l0Context = b.withUnsafeBufferPointer { bp in
                        PackedWeights(k: cw, n: out, bias: bp) { kk, nn in w[nn * width + kk] }
                    }
                }
                l0Item = PackedWeights(k: spec.itemWidth, n: out, bias: nil) { kk, nn in w[nn * width + cw + kk] }
            } else {
                packed.append(w.withUnsafeBufferPointer { wp in
                    b.withUnsafeBufferPointer { PackedWeights(outByIn: wp, out: out, in: inWidth, bias: $0) }
                })
            }
            inWidth = out
        }
        var towers: InteractionTowers?
        if let interaction = spec.interaction {
            func tower(_ prefix: String, in width: Int) throws -> PackedWeights {
                expected.formUnion(["\(prefix).weight", "\(prefix).bias"])
                let w = try file.floats("\(prefix).weight", shape: [interaction.dim, width])
                let b = try file.floats("\(prefix).bias", shape: [interaction.dim])
                return w.withUnsafeBufferPointer { wp in
                    b.withUnsafeBufferPointer { PackedWeights(outByIn: wp, out: interaction.dim, in: width, bias: $0) }
                }
            }
            towers = InteractionTowers(user: try tower("user_tower", in: spec.contextWidth),
                                       item: try tower("item_tower", in: spec.itemWidth))
        }
        let unexpected = Set(file.tensors.keys).subtracting(expected)
        if let extra = unexpected.sorted().first {
            throw ModelLoadError(file: name, tensor: extra, "unexpected tensor for this backbone spec")
        }
        try file.verifyContentHash()
        self.spec = spec
        self.contentHash = file.metadata["scenescore.sha256"]!.lowercased()
        self.layer0Context = l0Context
        self.layer0Item = l0Item!
        self.layer0Bias = l0Bias
        self.layers = packed
        self.towers = towers
    }

    /// Bytes of weights held in memory.
    public var byteCount: Int {
        (contextTables.count + itemTables.count) * 4
            + ([layer0Item] + (layer0Context.map { [$0] } ?? []) + layers).reduce(0) { $0 + $1.byteCount }
            + (towers.map { $0.user.byteCount + $0.item.byteCount } ?? 0)
    }
}

/// The backbone's two towers (BackboneSpec.interaction): linear maps, no activation, of the
/// context part of layer 0's input to u and of each candidate's item part to v (`dim` values
/// each). u is computed once per request, v in one GEMM over all candidates.
struct InteractionTowers: Sendable {
    /// contextWidth × dim, with b_u.
    let user: PackedWeights
    /// itemWidth × dim, with b_v.
    let item: PackedWeights
    var dim: Int { user.n }
}

/// MurmurHash3's 32-bit finalizer: spreads ids over a table so that sequential ids don't
/// crowd neighbouring rows. row = fmix32(id) mod vocab (Proto/MODEL-FORMAT.md).
@inline(__always)
public func fmix32(_ x: UInt32) -> UInt32 {
    var h = x
    h ^= h >> 16
    h = h &* 0x85eb_ca6b
    h ^= h >> 13
    h = h &* 0xc2b2_ae35
    h ^= h >> 16
    return h
}
