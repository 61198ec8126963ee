import Foundation
import Model

/// The grid of `scenescore eval`: methods × target fractions × ρ, over seeds.
public struct EvaluationConfig: Codable, Sendable {
    public var fractions: [Double] = [0.005, 0.01, 0.05, 1.0]
    public var rhos: [Double] = [1, 0.8, 0.5, 0]
    public var seeds: [UInt64] = [1, 2, 3, 4, 5]
    public var methods: [TransferMethod] = TransferMethod.allCases
    public var world = WorldConfig()
    public var experiment = ExperimentConfig()

    public init() {}

    /// Defaults, overridden by a JSON object; `world` and `experiment` are themselves partial.
    public static func load(json: Data) throws -> EvaluationConfig {
        let config = try decodeOverridingDefaults(EvaluationConfig(), json: json, what: "evaluation config")
        try config.world.validate()
        guard !config.fractions.isEmpty, config.fractions.allSatisfy({ $0 > 0 && $0 <= 1 }) else { throw ConfigError("fractions must be in (0, 1]") }
        guard !config.seeds.isEmpty, !config.rhos.isEmpty, !config.methods.isEmpty else { throw ConfigError("seeds, rhos and methods must not be empty") }
        return config
    }
}

/// One trained model's scores in one condition.
public struct EvaluationRecord: Codable, Sendable {
    public var seed: UInt64
    public var rho: Double
    public var fraction: Double
    public var method: String
    public var scores: MethodScores
    public var aucStar: Double
    public var zeroShotCeiling: Double
}

/// Mean and sample standard deviation.
public struct MeanSD: Codable, Sendable {
    public var mean: Double
    public var sd: Double
    public var n: Int
    public init(_ xs: [Double]) {
        let count = xs.count, m = xs.reduce(0, +) / Double(max(xs.count, 1))
        n = count
        mean = m
        sd = count > 1 ? (xs.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(count - 1)).squareRoot() : 0
    }
    public func formatted(_ digits: Int = 4) -> String { String(format: "%.\(digits)f ± %.\(digits)f", mean, sd) }
}

/// Per (ρ, fraction, method): every metric as mean ± sd over seeds.
public struct EvaluationCell: Codable, Sendable {
    public var rho: Double, fraction: Double, method: String
    public var auc: MeanSD, softAUC: MeanSD, aucOverAUCStar: MeanSD, lift: MeanSD, logloss: MeanSD
    public var sourceAUC: MeanSD?
}

public struct EvaluationReport: Codable, Sendable {
    public var config: EvaluationConfig
    public var records: [EvaluationRecord]
    public var cells: [EvaluationCell]
    /// Per ρ: AUC* and the zero-shot ceiling over seeds.
    public var ceilings: [String: [String: MeanSD]]
    public var wallSeconds: Double
    public var trainingSamples: Int
    public var trainingSamplesPerSecond: Double
}

public enum Evaluation {
    /// Runs the grid. Sources and the target's features are the same for every ρ under one
    /// seed (only the target labels change), so pretraining runs once per seed and is reused.
    public static func run(_ config: EvaluationConfig, progress: (String) -> Void = { _ in }) throws -> EvaluationReport {
        let start = DispatchTime.now().uptimeNanoseconds
        var records: [EvaluationRecord] = []
        var samples = 0, seconds = 0.0
        for seed in config.seeds {
            var previous: TransferExperiment?
            for rho in config.rhos {
                var w = config.world
                w.seed = seed; w.rho = rho
                let world = WorldGenerator.generate(w)
                let experiment = TransferExperiment(world: world, config: config.experiment, seed: seed, reusingPretrainingOf: previous)
                previous = experiment
                guard let aucStar = world.target.aucStar, let zeroShot = world.zeroShotCeiling else { throw ConfigError("generated worlds carry η") }
                for fraction in config.fractions {
                    for method in config.methods {
                        let scores = try experiment.run(method, fraction: fraction)
                        samples += scores.trainSamples; seconds += scores.trainSeconds
                        records.append(EvaluationRecord(seed: seed, rho: rho, fraction: fraction, method: method.rawValue,
                                                        scores: scores, aucStar: aucStar, zeroShotCeiling: zeroShot))
                        progress("seed \(seed) ρ \(rho) fraction \(fraction) \(method.rawValue): soft AUC \(scores.softAUC.map { String(format: "%.4f", $0) } ?? "-") (AUC* \(String(format: "%.4f", aucStar)))")
                    }
                }
                for log in experiment.pretrainingLogs { samples += log.samples; seconds += log.seconds }
            }
        }
        let wall = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return EvaluationReport(config: config, records: records, cells: aggregate(records, config: config),
                                ceilings: ceilings(records), wallSeconds: wall, trainingSamples: samples,
                                trainingSamplesPerSecond: seconds > 0 ? Double(samples) / seconds : 0)
    }

    /// One report from runs of the same grid with different methods (e.g. a new baseline row
    /// run later on the same seeds, ρ and fractions): records joined, cells recomputed.
    public static func merge(_ reports: [EvaluationReport]) throws -> EvaluationReport {
        guard var config = reports.first?.config else { throw ConfigError("nothing to merge") }
        for r in reports.dropFirst() {
            guard r.config.seeds == config.seeds, r.config.rhos == config.rhos, r.config.fractions == config.fractions else {
                throw ConfigError("reports to merge must share seeds, ρ and fractions")
            }
        }
        let methods = Set(reports.flatMap(\.config.methods))
        config.methods = TransferMethod.allCases.filter(methods.contains)
        let records = reports.flatMap(\.records)
        let samples = reports.reduce(0) { $0 + $1.trainingSamples }
        let seconds = reports.reduce(0.0) { $0 + Double($1.trainingSamples) / max($1.trainingSamplesPerSecond, 1e-9) }
        return EvaluationReport(config: config, records: records, cells: aggregate(records, config: config),
                                ceilings: ceilings(records), wallSeconds: reports.reduce(0) { $0 + $1.wallSeconds },
                                trainingSamples: samples, trainingSamplesPerSecond: seconds > 0 ? Double(samples) / seconds : 0)
    }

    static func aggregate(_ records: [EvaluationRecord], config: EvaluationConfig) -> [EvaluationCell] {
        var cells: [EvaluationCell] = []
        for rho in config.rhos {
            for fraction in config.fractions {
                for method in config.methods {
                    let rs = records.filter { $0.rho == rho && $0.fraction == fraction && $0.method == method.rawValue }
                    guard !rs.isEmpty else { continue }
                    // Ratio and lift from the soft AUC (the low-noise estimate) when η is known.
                    let quality = rs.map { $0.scores.softAUC ?? $0.scores.auc }
                    let sources = rs.compactMap(\.scores.sourceAUC)
                    cells.append(EvaluationCell(
                        rho: rho, fraction: fraction, method: method.rawValue,
                        auc: MeanSD(rs.map(\.scores.auc)), softAUC: MeanSD(quality),
                        aucOverAUCStar: MeanSD(zip(quality, rs).map { $0 / $1.aucStar }),
                        lift: MeanSD(zip(quality, rs).map { RankingMetrics.lift(auc: $0, ceiling: $1.aucStar) }),
                        logloss: MeanSD(rs.map(\.scores.logloss)),
                        sourceAUC: sources.isEmpty ? nil : MeanSD(sources)))
                }
            }
        }
        return cells
    }

    static func ceilings(_ records: [EvaluationRecord]) -> [String: [String: MeanSD]] {
        var out: [String: [String: MeanSD]] = [:]
        for rho in Set(records.map(\.rho)) {
            // One value per seed (they repeat across fractions and methods).
            var perSeed: [UInt64: EvaluationRecord] = [:]
            for r in records where r.rho == rho { perSeed[r.seed] = r }
            let rs = perSeed.keys.sorted().map { perSeed[$0]! }
            out[rhoKey(rho)] = ["aucStar": MeanSD(rs.map(\.aucStar)), "zeroShotCeiling": MeanSD(rs.map(\.zeroShotCeiling))]
        }
        return out
    }

    static func rhoKey(_ rho: Double) -> String { String(format: "%g", rho) }
}
