import ArgumentParser
import Foundation
import Training

struct DatagenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "datagen",
        abstract: "Generate the synthetic multi-scene world (shared TRANSFER-BENCHMARK.md) as .npy directories.")
    @Option(help: "JSON file overriding generator parameters (keys of WorldConfig; see Training/README.md).") var config: String?
    @Option(help: "Output directory.") var out = "var/data/world"
    @Option(help: "Generator seed (overrides the config file).") var seed: UInt64?
    @Option(help: "Concept-shift correlation ρ (overrides the config file).") var rho: Double?

    func run() throws {
        var world = try loadWorldConfig(config)
        if let seed { world.seed = seed }
        if let rho { world.rho = rho }
        try world.validate()
        let summary = try DataGeneration.write(WorldGenerator.generate(world), to: out)
        print("| scene | role | train | test | CTR | AUC* | zero-shot ceiling |\n|---|---|---:|---:|---:|---:|---:|")
        for s in summary.scenes {
            print("| \(s.name) | \(s.role) | \(s.trainImpressions) | \(s.testImpressions) | \(String(format: "%.4f", s.clickRate)) | \(String(format: "%.4f", s.aucStar)) | \(s.zeroShotCeiling.map { String(format: "%.4f", $0) } ?? "") |")
        }
        print("wrote \(out) (seed \(world.seed), ρ \(world.rho))")
    }
}

func loadWorldConfig(_ path: String?) throws -> WorldConfig {
    guard let path else { return WorldConfig() }
    guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read \(path)") }
    return try WorldConfig.load(json: data)
}

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train one transfer method on a generated world and report its target scores.")
    @Option(help: "Method: a target-only, b zero-shot, c pooled, d multi-task, e adversarial, f head fine-tune, g f on e.") var method: String = "g"
    @Option(help: "Fraction of the target pool to train on.") var fraction = 0.01
    @Option(help: "World config JSON.") var worldConfig: String?
    @Option(help: "Experiment config JSON.") var config: String?
    @Option var seed: UInt64 = 1
    @Option var rho: Double?

    func run() throws {
        guard let m = TransferMethod(rawValue: method) else { throw ValidationError("unknown method '\(method)'") }
        var w = try loadWorldConfig(worldConfig)
        w.seed = seed
        if let rho { w.rho = rho }
        let experimentConfig = try config.map { p in try ExperimentConfig.load(json: FileManager.default.contents(atPath: p) ?? Data()) } ?? ExperimentConfig()
        let world = WorldGenerator.generate(w)
        let experiment = TransferExperiment(world: world, config: experimentConfig, seed: seed)
        let scores = try experiment.run(m, fraction: fraction)
        print(scores, experiment.ceilings)
        for (k, log) in experiment.logs.sorted(by: { $0.key < $1.key }) {
            print(k, "samples", log.samples, "s", String(format: "%.1f", log.seconds), "samples/s", Int(log.samplesPerSecond),
                  "GFLOP/s", String(format: "%.1f", log.flops / log.seconds / 1e9), "loss", log.epochLoss)
        }
    }
}
