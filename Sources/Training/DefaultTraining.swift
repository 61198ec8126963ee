import Foundation

/// The model the server ships with: trained by this pipeline on the default generated world
/// (seed 1, ρ = 0.8). The backbone is pretrained across the source scenes with the adversarial
/// scene discriminator (method e); the cold-start electronics head is fine-tuned from the
/// apparel head on 5 % of the target pool (method g). About half a minute on two cores.
public enum DefaultTraining {
    public static let method = TransferMethod.adversarialFineTune
    public static let fraction = 0.05
    public static let seed: UInt64 = 1
    public static let rho = 0.8

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
