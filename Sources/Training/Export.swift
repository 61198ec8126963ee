import Foundation
import Model

/// Writes trained models in the format the server loads (Proto/MODEL-FORMAT.md).
public enum ModelExport {
    /// What `scenescore.training` records in every exported file.
    public struct Summary: Codable, Sendable {
        public var method: String
        public var fraction: Double
        public var seed: UInt64
        public var world: WorldConfig?
        public var data: String?
        public var trainSamples: Int
        public var trainSeconds: Double
        public var targetAUC: Double
        public var targetSoftAUC: Double?
        public var aucStar: Double?
    }

    /// backbone.safetensors plus heads/<scene>.safetensors for every scene, crash-safely
    /// (each file is written to a temporary name, fsynced and renamed).
    static func write(backbone: BackboneNet, heads: [(scene: String, head: HeadNet, parent: String)],
                      summary: Summary, to directory: String, bottleneck: Int, tower: [Int]) throws {
        try FileManager.default.createDirectory(atPath: directory + "/heads", withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let training = String(decoding: try encoder.encode(summary), as: UTF8.self)
        func metadata<S: Encodable>(_ kind: String, _ spec: S) throws -> [String: String] {
            try ModelMetadata.make(kind: kind, spec: spec, training: training)
        }
        let backboneHash = try SafeTensorsWriter.write(backbone.tensors(), metadata: try metadata("backbone", backbone.spec),
                                                       to: directory + "/backbone.safetensors")
        var versions: [String: String] = [:]
        // Parents first, so a fine-tuned head can name its parent's version.
        for (scene, head, parent) in heads.sorted(by: { ($0.parent.isEmpty ? 0 : 1) < ($1.parent.isEmpty ? 0 : 1) }) {
            let tensors = head.tensors()
            let spec = HeadSpec(scene: scene, version: "\(scene)-\(summary.method)-\(backboneHash.prefix(8))",
                                parent: versions[parent] ?? parent, input: backbone.outputWidth,
                                bottleneck: bottleneck, tower: tower, outputs: ["click"], interaction: head.interactionDim)
            versions[scene] = spec.version
            _ = try SafeTensorsWriter.write(tensors, metadata: try metadata("head", spec), to: "\(directory)/heads/\(scene).safetensors")
        }
    }
}

extension TransferExperiment {
    /// Trains `method` on `fraction` of the target pool and writes the backbone with every
    /// source head and the target head. Method c is not exported: its backbone reads a scene
    /// id that the serving schema does not carry; nor is method fm, which is not a backbone
    /// with heads at all.
    public func trainAndExport(_ method: TransferMethod, fraction: Double, to directory: String) throws -> MethodScores {
        guard method != .pooled else { throw ConfigError("method c (pooled) is not exported: its backbone has a scene feature the serving schema lacks") }
        guard method != .fm else { throw ConfigError("method fm (factorization machine) is not exported: the server serves a backbone with heads, not an FM") }
        let scores = try run(method, fraction: fraction)
        guard let model = lastModel else { throw ConfigError("no model was trained") }
        let target = world.target.name
        var heads: [(scene: String, head: HeadNet, parent: String)] = []
        if method != .targetOnly {
            for (i, s) in sources.enumerated() { heads.append((s.name, model.trainer.heads[i], "")) }
        }
        if method != .zeroShot {
            let parent = (method == .fineTune || method == .adversarialFineTune) ? sources[sourceHeadIndex].name : ""
            heads.append((target, model.trainer.heads[model.targetHead], parent))
        }
        let summary = ModelExport.Summary(method: method.rawValue, fraction: fraction, seed: seed,
                                          world: world.isGenerated ? world.config : nil, data: world.dataDirectory,
                                          trainSamples: scores.trainSamples, trainSeconds: scores.trainSeconds,
                                          targetAUC: scores.auc, targetSoftAUC: scores.softAUC,
                                          aucStar: world.target.aucStar)
        try ModelExport.write(backbone: model.trainer.backbone, heads: heads, summary: summary, to: directory,
                              bottleneck: config.bottleneck, tower: config.tower)
        return scores
    }
}
