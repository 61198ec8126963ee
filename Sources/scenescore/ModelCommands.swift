import ArgumentParser
import Foundation
import Bench
import Model
import Training

struct ModelDirectoryOption: ParsableArguments {
    @Option(help: "Model directory: backbone.safetensors and heads/*.safetensors.")
    var modelDir = "var/models/default"

    /// Builds the deterministic default model on first use, so a fresh clone can serve.
    func ensureModel() throws {
        if !FileManager.default.fileExists(atPath: modelDir + "/backbone.safetensors") {
            print("training the default model into \(modelDir)")
            try DefaultTraining.train(to: modelDir)
        }
    }
}

struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model", abstract: "Model files.", subcommands: [ModelInit.self, ModelCheck.self, ModelDeriveHead.self])
}

struct ModelInit: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Train the default model (backbone + apparel, beauty, home and electronics heads) from the transfer pipeline.",
        discussion: "--random writes seeded random weights instead (apparel, electronics and beauty heads with click and purchase outputs): for tests of the loader and the server, not for ranking.")
    @Option(help: "Output directory.") var dir = "var/models/default"
    @Flag(help: "Seeded random weights instead of training.") var random = false
    @Option(help: "Seed for --random weights.") var seed: UInt64 = 2026
    @Option(help: "With --random: two-tower interaction of this dim in the backbone and every head (0: none).")
    var interaction = 0

    func validate() throws {
        guard interaction == 0 || random else { throw ValidationError("--interaction needs --random") }
        guard (0...256).contains(interaction) else { throw ValidationError("--interaction must be 0…256") }
    }

    func run() throws {
        if random {
            try DefaultModel.write(to: dir, seed: seed, interaction: interaction)
            print("wrote \(dir)/backbone.safetensors and random heads for \(DefaultModel.scenes.joined(separator: ", "))"
                  + (interaction > 0 ? " (interaction dim \(interaction))" : ""))
            return
        }
        let scores = try DefaultTraining.train(to: dir) { print($0) }
        print("wrote \(dir): target soft AUC \(scores.softAUC.map { String(format: "%.4f", $0) } ?? "—"), AUC \(String(format: "%.4f", scores.auc))")
    }
}

struct ModelCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check", abstract: "Load and validate a model directory; print what it holds.")
    @OptionGroup var model: ModelDirectoryOption

    func run() throws {
        let set = try ModelSet(directory: model.modelDir)
        let b = set.backbone
        let towers = b.spec.interaction.map { "  interaction \($0.kind) \($0.dim)" } ?? ""
        print("backbone \(b.contentHash.prefix(12))  hidden \(b.spec.hidden)\(towers)  \(b.byteCount / 1024) KiB")
        for (scene, head) in set.heads.sorted(by: { $0.key < $1.key }) {
            let interaction = head.spec.interaction > 0 ? "  interaction \(head.spec.interaction)" : ""
            print("head \(scene)  version \(head.spec.version)  outputs \(head.spec.outputs)\(interaction)  \(head.byteCount / 1024) KiB")
        }
    }
}

/// A head for a new scene from an existing one: same weights, new scene and version, the source
/// as its parent. How a cold-start category starts serving before it has data of its own (and
/// what the README's ops example registers).
struct ModelDeriveHead: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "derive-head", abstract: "Copy a head's weights into a head for another scene (new scene, version and parent).")
    @Option(help: "Source head (.safetensors).") var from: String
    @Option(help: "Scene of the new head (1…64 of [a-z0-9_-]).") var scene: String
    @Option(help: "Version of the new head (default SCENE-1).") var version: String?
    @Option(help: "Output file.") var out: String

    func run() throws {
        let file = try SafeTensorsFile(path: from)
        try file.verifyContentHash()
        guard file.metadata["scenescore.kind"] == "head", let specJSON = file.metadata["scenescore.spec"] else {
            throw ValidationError("\(from) is not a scenescore head (metadata scenescore.kind/spec)")
        }
        var spec = try JSONDecoder().decode(HeadSpec.self, from: Data(specJSON.utf8))
        guard HeadSpec.isValidSceneName(scene) else { throw ValidationError("scene '\(scene)' must be 1…64 of [a-z0-9_-]") }
        spec.parent = spec.version
        spec.scene = scene
        spec.version = version ?? "\(scene)-1"
        let tensors = try file.tensors.values.sorted { $0.name < $1.name }.map { info in
            SafeTensorsWriter.Tensor(name: info.name, shape: info.shape, values: try file.floats(info.name, shape: info.shape))
        }
        var metadata = try ModelMetadata.make(kind: "head", spec: spec, training: file.metadata["scenescore.training"] ?? "")
        metadata["scenescore.training"] = file.metadata["scenescore.training"]
        let hash = try SafeTensorsWriter.write(tensors, metadata: metadata.compactMapValues { $0 }, to: out)
        print("\(out): scene \(spec.scene), version \(spec.version), parent \(spec.parent), sha256 \(hash.prefix(12))")
    }
}

struct ScoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "score", abstract: "Score a random sample request locally (no server) and print the scores.")
    @OptionGroup var model: ModelDirectoryOption
    @Option(help: "Scene.") var scene = "apparel"
    @Option(help: "Number of candidates.") var candidates = 5
    @Option(help: "Seed for the sample request.") var seed: UInt64 = 1

    func run() throws {
        try model.ensureModel()
        let set = try ModelSet(directory: model.modelDir)
        guard let head = set.heads[scene] else {
            throw ValidationError("unknown scene '\(scene)'; known: \(set.heads.keys.sorted().joined(separator: ", "))")
        }
        let spec = set.backbone.spec
        var rng = Random(seed: seed)
        let ctxIDs = spec.contextFields.map { _ in UInt32.random(in: 0...UInt32.max, using: &rng) }
        let ctxDense = (0..<spec.contextDense).map { _ in Float.random(in: -1...1, using: &rng) }
        let itemIDs = (0..<(candidates * spec.itemFields.count)).map { _ in UInt32.random(in: 0...UInt32.max, using: &rng) }
        let itemDense = (0..<(candidates * spec.itemDense)).map { _ in Float.random(in: -1...1, using: &rng) }
        var out = [Float](repeating: 0, count: candidates * head.spec.outputs.count)
        try ctxIDs.withUnsafeBytes { ci in try ctxDense.withUnsafeBytes { cd in
            try itemIDs.withUnsafeBytes { ii in try itemDense.withUnsafeBytes { id in
                let input = ScoringInput(candidates: candidates, contextIDs: ci, contextDense: cd, itemIDs: ii, itemDense: id)
                try Forward.validate(input, against: spec)
                out.withUnsafeMutableBufferPointer { Forward.score(input, backbone: set.backbone, head: head, workspace: ForwardWorkspace(), into: $0) }
            }}
        }}
        print("scene \(scene), head \(head.spec.version), \(candidates) random candidates")
        print((["candidate"] + head.spec.outputs).joined(separator: "\t"))
        for c in 0..<candidates {
            print(([String(c)] + (0..<head.spec.outputs.count).map { String(format: "%.5f", out[c * head.spec.outputs.count + $0]) }).joined(separator: "\t"))
        }
    }
}
