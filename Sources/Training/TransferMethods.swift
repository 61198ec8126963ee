import Foundation
import Model

/// The transfer methods of the benchmark (shared TRANSFER-BENCHMARK.md, "Protocol").
public enum TransferMethod: String, Codable, CaseIterable, Sendable {
    /// a. target-only: a fresh backbone and head trained on the target fraction.
    case targetOnly = "a"
    /// b. zero-shot: the multi-task pretrained backbone with a source head, no target data.
    case zeroShot = "b"
    /// c. pooled: one backbone and head on sources + target fraction, the scene as a feature.
    case pooled = "c"
    /// d. multi-task pretraining across the sources (L = Σ λ_s L_s), then the whole network
    ///    (backbone and a new target head) trained on the target fraction.
    case multiTask = "d"
    /// e. d with a scene discriminator on h trained through gradient reversal during pretraining.
    case adversarial = "e"
    /// f. frozen d backbone; a target head initialised from a source head, fine-tuned (L2-SP).
    case fineTune = "f"
    /// g. f on the e backbone.
    case adversarialFineTune = "g"
    /// fm. A baseline outside the served architecture: a factorization machine pretrained on
    ///    the pooled sources, then fine-tuned on the target fraction with L2-SP, like f.
    case fm = "fm"

    public var label: String {
        switch self {
        case .targetOnly: "a target-only"
        case .zeroShot: "b zero-shot"
        case .pooled: "c pooled + scene feature"
        case .multiTask: "d multi-task, full fine-tune"
        case .adversarial: "e d + adversarial, full fine-tune"
        case .fineTune: "f head fine-tune (d backbone)"
        case .adversarialFineTune: "g head fine-tune (e backbone)"
        case .fm: "fm factorization machine, fine-tuned (L2-SP)"
        }
    }
}

/// Architecture and schedules of the transfer experiments.
public struct ExperimentConfig: Codable, Sendable {
    public var backbone = DefaultTraining.backboneSpec
    public var bottleneck = 32
    public var tower = [64]
    /// Method c's extra context field.
    public var sceneFeature = FieldSpec(name: "scene", vocab: 64, dim: 8)
    /// λ_s per source scene in multi-task pretraining (missing: 1).
    public var sourceWeights: [String: Float] = [:]
    /// The source head zero-shot uses and fine-tuning starts from ("": the first source).
    public var sourceHead = ""
    /// Method e's discriminator also sees the target pool's features, unlabeled (domain
    /// adaptation); labels of the pool are never read.
    public var adversarialUsesUnlabeledTarget = true
    public var pretrain = TrainingOptions(epochs: 2)
    public var pooled = TrainingOptions(epochs: 1)
    public var targetOnly = TrainingOptions(epochs: 2, minSteps: 40)
    public var fullFineTune = TrainingOptions(epochs: 2, minSteps: 40, learningRate: 3e-4)
    public var headFineTune: TrainingOptions = {
        var o = TrainingOptions(epochs: 3, minSteps: 300, learningRate: 1e-3, weightDecay: 1e-2)
        o.interactionDecay = 1e-3  // the target's concept shift is what the adapter is for
        return o
    }()
    /// Method fm's model and schedules.
    public var fm = FMOptions()
    public var threads = 2

    public init() {}

    public static func load(json: Data) throws -> ExperimentConfig {
        try decodeOverridingDefaults(ExperimentConfig(), json: json, what: "experiment config")
    }
}

extension TrainingOptions {
    init(epochs: Int, minSteps: Int = 0, learningRate: Float = 1e-3, weightDecay: Float = 0) {
        self.init()
        self.epochs = epochs; self.minSteps = minSteps
        adam.learningRate = learningRate; adam.weightDecay = weightDecay
    }
}

func logit(_ p: Double) -> Float {
    let q = min(max(p, 1e-4), 1 - 1e-4)
    return Float(Foundation.log(q / (1 - q)))
}

/// Scores of one trained model on the target test set (and on a source test set).
public struct MethodScores: Codable, Sendable {
    public var auc: Double
    /// nil when the data carry no η (not generated).
    public var softAUC: Double?
    public var logloss: Double
    /// AUC of the source head on the source scene's test set, after adaptation.
    public var sourceAUC: Double?
    public var trainSamples: Int
    public var trainSeconds: Double
}

/// Runs the methods on one world. Pretrained backbones depend on the sources only, so one
/// experiment pretrains each once and reuses them for every target fraction.
public final class TransferExperiment {
    public let world: World
    public let config: ExperimentConfig
    let seed: UInt64
    /// Pretrained models by "adversarial?" and method fm's, shared with experiments on the same sources.
    final class Pretrained {
        var models: [Bool: Trainer] = [:]
        var factorizationMachine: FactorizationMachine?
    }
    let pretrained: Pretrained
    public internal(set) var logs: [String: TrainingLog] = [:]
    /// Logs of the pretraining runs this experiment ran itself (not inherited ones).
    public internal(set) var pretrainingLogs: [TrainingLog] = []

    /// `previous`: an experiment on a world with the same seed and sources (another ρ), whose
    /// pretrained backbones are reused — pretraining never reads the target's labels.
    public init(world: World, config: ExperimentConfig, seed: UInt64, reusingPretrainingOf previous: TransferExperiment? = nil) {
        self.world = world; self.config = config; self.seed = seed
        if let previous, previous.seed == seed,
           zip(previous.world.sources, world.sources).allSatisfy({ $0.train.labels == $1.train.labels }) {
            pretrained = previous.pretrained
        } else {
            pretrained = Pretrained()
        }
    }

    var sources: [SceneData] { world.sources }
    var sourceHeadIndex: Int { sources.firstIndex { $0.name == config.sourceHead } ?? 0 }
    var workers: Int { max(1, config.threads) }

    /// Method c's source parts, with the scene id as an extra context column: the same for
    /// every fraction, so built once.
    private lazy var pooledSources: [TrainingPart] = sources.map {
        TrainingPart(data: $0.train.addingContextID(UInt32($0.index)), head: 0, domain: 0)
    }

    func newHead(baseRate: Double, rng: inout Random) -> HeadNet {
        HeadNet(input: config.backbone.outputWidth, bottleneck: config.bottleneck, tower: config.tower, outputs: 1,
                interaction: config.backbone.interactionDim, baseRate: baseRate, workers: workers, rng: &rng)
    }

    /// Multi-task pretraining on the sources, one head per source, optionally adversarial.
    func pretrainedModel(adversarial: Bool) -> Trainer {
        if let done = pretrained.models[adversarial] { return done }
        var rng = Random(seed: seed, stream: "init.pretrain.\(adversarial)")
        let backbone = BackboneNet(spec: config.backbone, workers: workers, rng: &rng)
        let heads = sources.map { newHead(baseRate: $0.train.clickRate, rng: &rng) }
        var parts = sources.enumerated().map { i, s in
            TrainingPart(data: s.train, head: i, domain: i, weight: config.sourceWeights[s.name] ?? 1)
        }
        var discriminator: DiscriminatorNet?
        if adversarial {
            if config.adversarialUsesUnlabeledTarget {
                parts.append(TrainingPart(data: world.target.train, head: -1, domain: sources.count))
            }
            discriminator = DiscriminatorNet(input: config.backbone.outputWidth, hidden: config.pretrain.discriminatorHidden,
                                             domains: parts.count, workers: workers, rng: &rng)
        }
        let trainer = Trainer(backbone: backbone, heads: heads, discriminator: discriminator, workers: workers)
        let log = trainer.train(parts, options: config.pretrain, seed: seed)
        pretrained.models[adversarial] = trainer
        logs["pretrain\(adversarial ? "-adversarial" : "")"] = log
        pretrainingLogs.append(log)
        return trainer
    }

    /// Trains `method` with the first `fraction` of the target pool and scores it.
    public func run(_ method: TransferMethod, fraction: Double) throws -> MethodScores {
        guard config.sourceHead.isEmpty || sources.contains(where: { $0.name == config.sourceHead }) else {
            throw ConfigError("sourceHead '\(config.sourceHead)' is not a source scene (\(sources.map(\.name).joined(separator: ", ")))")
        }
        guard fraction > 0, fraction <= 1 else { throw ConfigError("fraction must be in (0, 1], got \(fraction)") }
        let target = world.target
        let train = target.train.prefix(max(1, Int((Double(target.train.count) * fraction).rounded())))
        var rng = Random(seed: seed, stream: "init.\(method.rawValue).\(fraction)")
        let sourceIndex = sourceHeadIndex
        var log = TrainingLog()
        let model: Trainer, targetHead: Int, sourceHead: Int?
        switch method {
        case .targetOnly:
            let backbone = BackboneNet(spec: config.backbone, workers: workers, rng: &rng)
            let head = newHead(baseRate: train.clickRate, rng: &rng)
            head.startInteractionAtZero()
            model = Trainer(backbone: backbone, heads: [head], workers: workers)
            log = model.train([TrainingPart(data: train, head: 0, domain: 0)], options: config.targetOnly, seed: seed)
            (targetHead, sourceHead) = (0, nil)
        case .zeroShot:
            model = pretrainedModel(adversarial: false)
            (targetHead, sourceHead) = (sourceIndex, sourceIndex)
        case .pooled:
            var spec = config.backbone
            spec.contextFields.append(config.sceneFeature)
            let backbone = BackboneNet(spec: spec, workers: workers, rng: &rng)
            let all = sources.map(\.train) + [train]
            let rate = all.reduce(0.0) { $0 + $1.clickRate * Double($1.count) } / Double(all.reduce(0) { $0 + $1.count })
            model = Trainer(backbone: backbone, heads: [newHead(baseRate: rate, rng: &rng)], workers: workers)
            var parts = pooledSources
            parts.append(TrainingPart(data: train.addingContextID(UInt32(target.index)), head: 0, domain: 0))
            log = model.train(parts, options: config.pooled, seed: seed)
            let scores = evaluate(model, head: 0, on: target.test.addingContextID(UInt32(target.index)))
            let source = sources[sourceIndex]
            let sourceAUC = RankingMetrics.auc(scores: model.predict(source.test.addingContextID(UInt32(source.index)), head: 0),
                                               labels: source.test.labels)
            lastModel = (model, 0)
            logs["\(method.rawValue)@\(fraction)"] = log
            return MethodScores(auc: scores.auc, softAUC: scores.softAUC, logloss: scores.logloss, sourceAUC: sourceAUC,
                                trainSamples: log.samples, trainSeconds: log.seconds)
        case .multiTask, .adversarial:
            let base = pretrainedModel(adversarial: method == .adversarial)
            let backbone = base.backbone.copy(workers: workers)
            model = Trainer(backbone: backbone, heads: base.heads + [newHead(baseRate: train.clickRate, rng: &rng)], workers: workers)
            log = model.train([TrainingPart(data: train, head: sources.count, domain: 0)], options: config.fullFineTune, seed: seed)
            (targetHead, sourceHead) = (sources.count, sourceIndex)
        case .fineTune, .adversarialFineTune:
            let base = pretrainedModel(adversarial: method == .adversarialFineTune)
            base.backbone.trainable = false
            let head = base.heads[sourceIndex].copy(workers: workers)
            head.anchorToCurrentWeights()
            // Shift the output bias from the source's base rate to the fraction's: the one
            // thing even 0.5 % of the pool estimates well.
            head.output.bias.value.pointer[0] += logit(train.clickRate) - logit(sources[sourceIndex].train.clickRate)
            head.output.repack()
            model = Trainer(backbone: base.backbone, heads: base.heads + [head], workers: workers)
            log = model.train([TrainingPart(data: train, head: sources.count, domain: 0)], options: config.headFineTune, seed: seed)
            base.backbone.trainable = true
            (targetHead, sourceHead) = (sources.count, sourceIndex)
        case .fm:
            lastModel = nil  // not a backbone and heads: nothing to export
            return try runFactorizationMachine(train: train, fraction: fraction)
        }
        lastModel = (model, targetHead)
        var scores = evaluate(model, head: targetHead, on: target.test)
        if let sourceHead {
            let source = sources[sourceIndex]
            scores.sourceAUC = RankingMetrics.auc(scores: model.predict(source.test, head: sourceHead), labels: source.test.labels)
        }
        scores.trainSamples = log.samples
        scores.trainSeconds = log.seconds
        logs["\(method.rawValue)@\(fraction)"] = log
        return scores
    }

    /// The reference rows: AUC* and the zero-shot ceiling on the target test set.
    public var ceilings: (aucStar: Double?, zeroShot: Double?) { (world.target.aucStar, world.zeroShotCeiling) }

    /// The model the last `run` trained, and the index of its target head.
    private(set) var lastModel: (trainer: Trainer, targetHead: Int)?

    func evaluate(_ model: Trainer, head: Int, on test: Impressions) -> MethodScores {
        evaluate(logits: model.predict(test, head: head), on: test)
    }

    func evaluate(logits: [Float], on test: Impressions) -> MethodScores {
        let soft = test.eta.map { eta in RankingMetrics.softAUC(scores: logits, probabilities: eta.map { Float(sigmoid(Double($0))) }) }
        return MethodScores(auc: RankingMetrics.auc(scores: logits, labels: test.labels), softAUC: soft,
                            logloss: RankingMetrics.logloss(logits: logits, labels: test.labels), sourceAUC: nil,
                            trainSamples: 0, trainSeconds: 0)
    }
}
