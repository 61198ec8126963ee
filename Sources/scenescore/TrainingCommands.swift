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
