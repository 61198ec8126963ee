import Foundation

/// The model the server ships with until trained weights replace it: the default backbone
/// schema and heads for apparel, electronics and beauty, with weights drawn deterministically
/// from a seed (He-scaled), so every machine builds the same bytes.
public enum DefaultModel {
    public static let scenes = ["apparel", "electronics", "beauty"]

    public static let backboneSpec = BackboneSpec(
        contextFields: [FieldSpec(name: "user", vocab: 65536, dim: 16)],
        contextDense: 4,
        itemFields: [FieldSpec(name: "item", vocab: 65536, dim: 16),
                     FieldSpec(name: "category", vocab: 1024, dim: 8),
                     FieldSpec(name: "brand", vocab: 8192, dim: 8)],
        itemDense: 17,
        hidden: [256, 128])

    public static func headSpec(scene: String, input: Int = backboneSpec.outputWidth) -> HeadSpec {
        HeadSpec(scene: scene, version: "\(scene)-1", input: input, bottleneck: 32, tower: [64],
                 outputs: ["click", "purchase"])
    }

    /// Writes backbone.safetensors and heads/<scene>.safetensors under `directory`;
    /// `interaction` > 0 adds two towers of that dim to the backbone and an interaction adapter
    /// to every head.
    public static func write(to directory: String, seed: UInt64 = 2026, interaction: Int = 0) throws {
        try FileManager.default.createDirectory(atPath: directory + "/heads", withIntermediateDirectories: true)
        var backbone = backboneSpec
        if interaction > 0 { backbone.interaction = InteractionSpec(dim: interaction) }
        try writeBackbone(backbone, seed: seed, to: directory + "/backbone.safetensors")
        for (i, scene) in scenes.enumerated() {
            var head = headSpec(scene: scene)
            head.interaction = interaction
            try writeHead(head, seed: seed &+ UInt64(i + 1) &* 7919, to: directory + "/heads/\(scene).safetensors")
        }
    }

    public static func writeBackbone(_ spec: BackboneSpec, seed: UInt64, to path: String) throws {
        var rng = Random(seed: seed)
        var tensors: [SafeTensorsWriter.Tensor] = []
        for f in spec.contextFields + spec.itemFields {
            tensors.append(.init(name: "embedding.\(f.name)", shape: [f.vocab, f.dim],
                                 values: rng.pairedNormals(f.vocab * f.dim, scale: 0.5)))
        }
        var width = spec.contextWidth + spec.itemWidth
        for (i, out) in spec.hidden.enumerated() {
            tensors.append(.init(name: "mlp.\(i).weight", shape: [out, width],
                                 values: rng.pairedNormals(out * width, scale: (2.0 / Float(width)).squareRoot())))
            tensors.append(.init(name: "mlp.\(i).bias", shape: [out], values: rng.pairedNormals(out, scale: 0.01)))
            width = out
        }
        // Drawn after the MLP, so a spec without towers keeps the bytes it always had.
        if let interaction = spec.interaction {
            for (tower, width) in [("user_tower", spec.contextWidth), ("item_tower", spec.itemWidth)] {
                tensors.append(.init(name: "\(tower).weight", shape: [interaction.dim, width],
                                     values: rng.pairedNormals(interaction.dim * width, scale: (1.0 / Float(width)).squareRoot())))
                tensors.append(.init(name: "\(tower).bias", shape: [interaction.dim], values: rng.pairedNormals(interaction.dim, scale: 0.01)))
            }
        }
        try SafeTensorsWriter.write(tensors, metadata: metadata(kind: "backbone", spec: spec), to: path)
    }

    public static func writeHead(_ spec: HeadSpec, seed: UInt64, to path: String) throws {
        var rng = Random(seed: seed)
        var tensors: [SafeTensorsWriter.Tensor] = []
        func linear(_ name: String, out: Int, in k: Int, bias: Float = 0) {
            tensors.append(.init(name: "\(name).weight", shape: [out, k],
                                 values: rng.pairedNormals(out * k, scale: (2.0 / Float(k)).squareRoot())))
            tensors.append(.init(name: "\(name).bias", shape: [out], values: [Float](repeating: bias, count: out)))
        }
        linear("adapter.down", out: spec.bottleneck, in: spec.input)
        linear("adapter.up", out: spec.input, in: spec.bottleneck)
        var width = spec.input
        for (j, t) in spec.tower.enumerated() { linear("tower.\(j)", out: t, in: width); width = t }
        // Start output biases near a 7 % click rate, as a trained head would sit.
        linear("output", out: spec.outputs.count, in: width, bias: -2.6)
        // Each A_o near the identity (plain u · v) with a little noise: scenes start alike.
        if spec.interaction > 0 {
            let k = spec.interaction
            var a = rng.pairedNormals(spec.outputs.count * k * k, scale: 0.05)
            for o in 0..<spec.outputs.count { for i in 0..<k { a[(o * k + i) * k + i] += 1 } }
            tensors.append(.init(name: "interaction.weight", shape: [spec.outputs.count, k, k], values: a))
        }
        try SafeTensorsWriter.write(tensors, metadata: metadata(kind: "head", spec: spec), to: path)
    }

    static func metadata<S: Encodable>(kind: String, spec: S) throws -> [String: String] {
        try ModelMetadata.make(kind: kind, spec: spec,
                               training: #"{"source":"DefaultModel (seeded random weights, not trained)"}"#)
    }
}
