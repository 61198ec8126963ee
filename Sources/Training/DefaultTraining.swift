import Foundation
import Model

/// The model the server ships with: trained by this pipeline on the default generated world
/// (seed 1, ρ = 0.8). The backbone is the multi-task pretraining across the source scenes; the
/// cold-start electronics head is fine-tuned from the apparel head on 5 % of the target pool
/// with the backbone frozen (method f — the shared backbone stays as served, only a head is
/// added, as a hot-swapped head would be), its interaction adapter included. The full table's
/// best head-only method at 5 % (Sources/Training/results). About 30 s on two cores.
public enum DefaultTraining {
    public static let method = TransferMethod.fineTune
    public static let fraction = 0.05
    public static let seed: UInt64 = 1
    public static let rho = 0.8
    /// The serving schema with a two-tower interaction of width 16.
    public static let backboneSpec: BackboneSpec = {
        var spec = DefaultModel.backboneSpec
        spec.interaction = InteractionSpec(dim: 16)
        return spec
    }()

    @discardableResult
    public static func train(to directory: String, log: (String) -> Void = { _ in }) throws -> MethodScores {
        var config = WorldConfig()
        config.seed = seed
        config.rho = rho
        let world = WorldGenerator.generate(config)
        log("training the default model: world seed \(seed), ρ \(rho), method \(method.rawValue) at \(fraction * 100) % of the target pool")
        let experiment = TransferExperiment(world: world, config: ExperimentConfig(), seed: seed)
        return try experiment.trainAndExport(method, fraction: fraction, to: directory)
    }
}

/// Training throughput for `scenescore bench train`: multi-task pretraining of the default
/// architecture on the default world's sources (each cut to `impressionsPerSource`), one epoch.
public enum TrainingThroughput {
    public static func measure(threads: Int, impressionsPerSource: Int = 100_000, batchSize: Int = 512) -> TrainingLog {
        var config = WorldConfig()
        for i in config.scenes.indices { config.scenes[i].trainImpressions = impressionsPerSource; config.scenes[i].testImpressions = 1 }
        let world = WorldGenerator.generate(config)
        var experiment = ExperimentConfig()
        experiment.threads = threads
        experiment.pretrain.epochs = 1
        experiment.pretrain.batchSize = batchSize
        var rng = Random(seed: 1, stream: "bench")
        let backbone = BackboneNet(spec: experiment.backbone, workers: threads, rng: &rng)
        let heads = world.sources.map { _ in
            HeadNet(input: experiment.backbone.outputWidth, bottleneck: experiment.bottleneck, tower: experiment.tower,
                    outputs: 1, baseRate: 0.07, workers: threads, rng: &rng)
        }
        let trainer = Trainer(backbone: backbone, heads: heads, workers: threads)
        let parts = world.sources.enumerated().map { TrainingPart(data: $1.train, head: $0, domain: $0) }
        return trainer.train(parts, options: experiment.pretrain, seed: 1)
    }
}
