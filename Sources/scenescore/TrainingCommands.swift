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
            print("| \(s.name) | \(s.role) | \(s.trainImpressions) | \(s.testImpressions) | \(String(format: "%.4f", s.clickRate)) | \(s.aucStar.map { String(format: "%.4f", $0) } ?? "") | \(s.zeroShotCeiling.map { String(format: "%.4f", $0) } ?? "") |")
        }
        print("wrote \(out) (seed \(world.seed), ρ \(world.rho))")
    }
}

func loadWorldConfig(_ path: String?) throws -> WorldConfig {
    guard let path else { return WorldConfig() }
    return try WorldConfig.load(json: try readFile(path))
}

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train transfer methods on a generated world (or .npy data) and report target scores; --out exports the model.",
        discussion: """
        Methods: a target-only, b zero-shot, c pooled with a scene feature, d multi-task pretraining + full fine-tune,
        e d with an adversarial scene discriminator, f head fine-tune on the frozen d backbone, g f on the e backbone;
        fm a factorization machine pretrained on the sources and fine-tuned with L2-SP (a baseline; not exportable).
        Several methods (--method a,f,g) share one pretraining.
        """)
    @Option(help: "Methods, comma-separated.") var method: String = "g"
    @Option(help: "Fraction of the target pool to train on.") var fraction = 0.01
    @Option(help: "World config JSON (generator parameters).") var worldConfig: String?
    @Option(help: "Experiment config JSON (architecture and schedules).") var config: String?
    @Option(help: "Read .npy data from <data>/<scene>/{train,test}/ instead of generating a world.") var data: String?
    @Option(help: "With --data: source scenes, comma-separated.") var sources: String = "apparel,beauty,home"
    @Option(help: "With --data: the target scene.") var target: String = "electronics"
    @Option(help: "Seed of the world and of training.") var seed: UInt64 = 1
    @Option(help: "Concept-shift correlation ρ of the generated world.") var rho: Double?
    @Option(help: "Write the trained model (last method) here, in the format the server loads.") var out: String?

    func run() throws {
        let methods = try method.split(separator: ",").map { m in
            guard let t = TransferMethod(rawValue: String(m)) else { throw ValidationError("unknown method '\(m)' (a…g, fm)") }
            return t
        }
        let experimentConfig = try config.map { try ExperimentConfig.load(json: try readFile($0)) } ?? ExperimentConfig()
        let world: World
        if let data {
            world = try World(directory: data, sources: sources.split(separator: ",").map(String.init), target: target)
        } else {
            var w = try loadWorldConfig(worldConfig)
            w.seed = seed
            if let rho { w.rho = rho }
            try w.validate()
            world = WorldGenerator.generate(w)
        }
        let experiment = TransferExperiment(world: world, config: experimentConfig, seed: seed)
        print("| method | fraction | AUC | soft AUC | logloss | source AUC | samples | seconds |\n|---|---:|---:|---:|---:|---:|---:|---:|")
        for (i, m) in methods.enumerated() {
            let scores = try (i == methods.count - 1 && out != nil)
                ? experiment.trainAndExport(m, fraction: fraction, to: out!) : experiment.run(m, fraction: fraction)
            print("| \(m.label) | \(fraction) | \(f4(scores.auc)) | \(scores.softAUC.map(f4) ?? "—") | \(f4(scores.logloss)) | \(scores.sourceAUC.map(f4) ?? "—") | \(scores.trainSamples) | \(String(format: "%.1f", scores.trainSeconds)) |")
        }
        if let star = world.target.aucStar, let zs = world.zeroShotCeiling {
            print("| AUC* | | | \(f4(star)) | | | | |\n| zero-shot ceiling | | | \(f4(zs)) | | | | |")
        }
        for (name, log) in experiment.logs.sorted(by: { $0.key < $1.key }) {
            print("\(name): \(log.samples) samples in \(String(format: "%.1f", log.seconds)) s = \(Int(log.samplesPerSecond)) samples/s, \(String(format: "%.1f", log.flops / max(log.seconds, 1e-9) / 1e9)) GFLOP/s; epoch loss \(log.epochLoss.map(f4).joined(separator: " "))")
        }
        if let out { print("wrote \(out)") }
    }
}

func f4(_ x: Double) -> String { String(format: "%.4f", x) }

func readFile(_ path: String) throws -> Data {
    guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read \(path)") }
    return data
}

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "The transfer evaluation table: methods × target fractions × ρ over seeds, against AUC*.",
        discussion: "Writes report.md, report.json and lift.svg (lift against target fraction, one line per method) to --out.")
    @Option(help: "Evaluation config JSON: fractions, rhos, seeds, methods, world {…}, experiment {…}; missing keys keep the benchmark's defaults.") var config: String?
    @Option(help: "Output directory.") var out = "var/eval"
    @Flag(help: "Print one line per trained model.") var verbose = false
    @Option(help: "Instead of training: merge these report.json files (same seeds, ρ and fractions; other methods), comma-separated.")
    var merge: String?

    func run() throws {
        let report: EvaluationReport
        if let merge {
            report = try Evaluation.merge(merge.split(separator: ",").map {
                try JSONDecoder().decode(EvaluationReport.self, from: try readFile(String($0)))
            })
        } else {
            let evalConfig = try config.map { try EvaluationConfig.load(json: try readFile($0)) } ?? EvaluationConfig()
            report = try Evaluation.run(evalConfig) { line in if verbose { print(line) } }
        }
        try report.write(to: out)
        print(report.markdown)
        print("wrote \(out)/report.md, \(out)/report.json, \(out)/lift.svg")
    }
}
