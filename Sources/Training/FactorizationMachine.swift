import Foundation
import Model

/// Hyper-parameters of the factorization-machine baseline (method fm): plain per-sample SGD
/// on the logistic loss, as libFM, with decay on the parameters a sample touches. Chosen by a
/// sweep at 1 %, ρ = 0.8, seeds 1 and 2 (Sources/Training/README.md, "Methods").
public struct FMOptions: Codable, Sendable, Equatable {
    /// k: the length of every feature's factor vector.
    public var factors = 8
    /// Standard deviation of a factor's first value (weights start at zero).
    public var initSD: Float = 0.01
    /// Pretraining on the pooled sources.
    public var epochs = 4
    /// The step of w0 and the id rows.
    public var learningRate: Float = 0.05
    /// The dense columns' step relative to `learningRate`: every sample touches them, an id row
    /// only its own impressions (at 1 × they were noisy and the target AUC fell by ~0.01).
    public var denseRateScale: Float = 0.05
    /// L2 towards zero on the weights and factors a sample touches.
    public var l2: Float = 1e-4
    /// Probability that a pretraining sample leaves out its item-side ids (item, category,
    /// brand), so that user × content factors carry the ranking — all a target item has. At 0
    /// the pretrained FM ranked target items at chance (soft AUC ≈ 0.50 zero-shot).
    public var itemIDDropout = 0.9
    /// Fine-tuning on the target fraction: at least `fineTuneMinSteps` samples in all.
    public var fineTuneEpochs = 3
    public var fineTuneMinSteps = 30_000
    public var fineTuneLearningRate: Float = 0.003
    /// L2-SP: the per-sample pull of every touched parameter towards its pretrained value.
    public var l2sp: Float = 1e-2
    public init() {}
}

/// A factorization machine (Rendle 2010) on one impression:
/// logit = w0 + Σ_i w_i x_i + Σ_{i<j} ⟨v_i, v_j⟩ x_i x_j.
/// Each id field is one feature of value 1 whose w and v are a row of that field's hashed table
/// (`fmix32(id) mod vocab`, as the backbone hashes); each dense column is a feature of value
/// x_d with its own w and v. The pairwise term is ½ Σ_f [(Σ_i v_if x_i)² − Σ_i v_if² x_i²],
/// O(features · k).
///
/// Table rows start at zero and a row's factors are drawn from N(0, initSD²) the first time
/// training touches it (all-zero factors would get zero gradient). The draw depends only on the
/// seed, the field and the row, not on the order rows are met, and an id never seen in training
/// keeps a zero row and adds exactly nothing — as the backbone's untouched embedding rows do.
/// Dense factors are drawn at construction. Single-threaded.
final class FactorizationMachine {
    let k: Int
    let vocabs: [Int]
    /// Id fields and dense columns of a row: context first, then item (the backbone's order).
    let contextFields: Int, contextDense: Int, itemDense: Int
    var bias: Float
    /// Per id field: `vocab` rows of 1 + k floats, the weight and then the factors.
    let tables: [FloatBuffer]
    /// Per dense column (context, then item): 1 + k floats.
    let dense: FloatBuffer
    private var drawn: [[Bool]]
    /// L2-SP: the parameters decay pulls towards (nil: zero).
    private(set) var anchor: (tables: [FloatBuffer], dense: FloatBuffer)?
    private let initSD: Float, initSeed: UInt64
    // One sample's features: parameter block, anchor block and value of each (ids first,
    // `idCount` of them), and Σ_i v_if x_i.
    private let params: UnsafeMutablePointer<UnsafeMutablePointer<Float>>
    private let anchors: UnsafeMutablePointer<UnsafePointer<Float>>
    private let values: UnsafeMutablePointer<Float>
    private var count = 0, idCount = 0
    private let sums: FloatBuffer, zeros: FloatBuffer

    init(spec: BackboneSpec, factors: Int, initSD: Float, baseRate: Double, seed: UInt64) {
        k = factors
        vocabs = (spec.contextFields + spec.itemFields).map(\.vocab)
        contextFields = spec.contextFields.count; contextDense = spec.contextDense; itemDense = spec.itemDense
        bias = logit(baseRate)
        tables = vocabs.map { FloatBuffer(count: $0 * (factors + 1)) }
        drawn = vocabs.map { [Bool](repeating: false, count: $0) }
        var rng = Random(seed: seed, stream: "fm.dense")
        dense = FloatBuffer(count: (spec.contextDense + spec.itemDense) * (factors + 1))
        for c in 0..<(spec.contextDense + spec.itemDense) {
            for f in 1...factors { dense.pointer[c * (factors + 1) + f] = Float(rng.normal()) * initSD }
        }
        self.initSD = initSD
        var rows = Random(seed: seed, stream: "fm.rows")
        initSeed = rows.next()
        (params, anchors, values, sums, zeros) = Self.scratch(features: vocabs.count + contextDense + itemDense, k: factors)
    }

    private init(copying m: FactorizationMachine) {
        k = m.k; vocabs = m.vocabs
        contextFields = m.contextFields; contextDense = m.contextDense; itemDense = m.itemDense
        bias = m.bias
        tables = m.tables.map { FloatBuffer($0.array) }
        dense = FloatBuffer(m.dense.array)
        drawn = m.drawn; anchor = m.anchor
        initSD = m.initSD; initSeed = m.initSeed
        (params, anchors, values, sums, zeros) = Self.scratch(features: vocabs.count + contextDense + itemDense, k: k)
    }

    private static func scratch(features n: Int, k: Int) -> (UnsafeMutablePointer<UnsafeMutablePointer<Float>>,
                                                             UnsafeMutablePointer<UnsafePointer<Float>>,
                                                             UnsafeMutablePointer<Float>, FloatBuffer, FloatBuffer) {
        (.allocate(capacity: n), .allocate(capacity: n), .allocate(capacity: n), FloatBuffer(count: k), FloatBuffer(count: k + 1))
    }

    deinit { params.deallocate(); anchors.deallocate(); values.deallocate() }

    /// An independent copy (the fine-tuned model starts as the pretrained one).
    func copy() -> FactorizationMachine { FactorizationMachine(copying: self) }

    /// From now on decay pulls towards the current parameters (L2-SP), not towards zero.
    func anchorToCurrentParameters() {
        anchor = (tables.map { FloatBuffer($0.array) }, FloatBuffer(dense.array))
    }

    /// Whether `data` has the columns this model reads.
    func check(_ data: Impressions, name: String) throws {
        guard data.contextIDWidth == contextFields, data.itemIDWidth == vocabs.count - contextFields,
              data.contextDenseWidth == contextDense, data.itemDenseWidth == itemDense else {
            throw ConfigError("\(name): columns (context ids \(data.contextIDWidth), context dense \(data.contextDenseWidth), item ids \(data.itemIDWidth), item dense \(data.itemDenseWidth)) do not match the backbone spec (\(contextFields), \(contextDense), \(vocabs.count - contextFields), \(itemDense))")
        }
    }

    /// Collects row `r`'s features. Dense columns that are zero are skipped (they add nothing
    /// and, as in a sparse FM, are not touched); `training` draws first-touched rows.
    private func gather(_ data: Impressions, row r: Int, training: Bool, dropItemIDs: Bool = false) {
        let stride = k + 1
        count = 0
        for f in 0..<(dropItemIDs ? contextFields : vocabs.count) {
            let id = f < contextFields ? data.contextIDs[r * data.contextIDWidth + f]
                                       : data.itemIDs[r * data.itemIDWidth + f - contextFields]
            let row = Int(Model.fmix32(id) % UInt32(vocabs[f]))
            if training && !drawn[f][row] { draw(field: f, row: row) }
            params[count] = tables[f].pointer + row * stride
            anchors[count] = UnsafePointer(anchor.map { $0.tables[f].pointer + row * stride } ?? zeros.pointer)
            values[count] = 1
            count += 1
        }
        idCount = count
        for c in 0..<(contextDense + itemDense) {
            let x = c < contextDense ? data.contextDense[r * data.contextDenseWidth + c]
                                     : data.itemDense[r * data.itemDenseWidth + c - contextDense]
            guard x != 0 else { continue }
            params[count] = dense.pointer + c * stride
            anchors[count] = UnsafePointer(anchor.map { $0.dense.pointer + c * stride } ?? zeros.pointer)
            values[count] = x
            count += 1
        }
    }

    private func draw(field f: Int, row: Int) {
        var rng = Random(seed: initSeed &+ UInt64(f) &* 0x1_0000_0000 &+ UInt64(row))
        let p = tables[f].pointer + row * (k + 1)
        for j in 1...k { p[j] = Float(rng.normal()) * initSD }
        drawn[f][row] = true
    }

    /// The logit of the gathered sample; leaves Σ_i v_if x_i in `sums`.
    private func forward() -> Float {
        let s = sums.pointer
        s.update(repeating: 0, count: k)
        var y = bias, squares: Float = 0
        for i in 0..<count {
            let p = params[i], x = values[i]
            y += p[0] * x
            for f in 0..<k {
                let t = p[1 + f] * x
                s[f] += t; squares += t * t
            }
        }
        var pairs: Float = 0
        for f in 0..<k { pairs += s[f] * s[f] }
        return y + 0.5 * (pairs - squares)
    }

    /// The logit of row `r`.
    func score(_ data: Impressions, row r: Int) -> Float {
        gather(data, row: r, training: false)
        return forward()
    }

    func predict(_ data: Impressions) -> [Float] { (0..<data.count).map { score(data, row: $0) } }

    /// One SGD step on row `r`'s logistic loss plus `decay`·½‖θ − anchor‖² over the touched
    /// parameters (w0 is not decayed), at `rate` for w0 and id rows and `denseRate` for dense
    /// columns; returns the loss before the step. ∂ŷ/∂w_i = x_i and
    /// ∂ŷ/∂v_if = x_i (Σ_j v_jf x_j) − v_if x_i², all at the parameters before the step.
    @discardableResult
    func step(_ data: Impressions, row r: Int, rate: Float, denseRate: Float, decay: Float, dropItemIDs: Bool = false) -> Double {
        gather(data, row: r, training: true, dropItemIDs: dropItemIDs)
        let y = forward()
        let label = data.labels[r]
        let g = Float(sigmoid(Double(y))) - label
        let s = sums.pointer
        bias -= rate * g
        for i in 0..<count {
            let p = params[i], a = anchors[i], x = values[i]
            let lr = i < idCount ? rate : denseRate
            p[0] -= lr * (g * x + decay * (p[0] - a[0]))
            for f in 0..<k {
                let v = p[1 + f]
                p[1 + f] = v - lr * (g * (x * s[f] - v * x * x) + decay * (v - a[1 + f]))
            }
        }
        return RankingMetrics.crossEntropy(logit: Double(y), label: Double(label))
    }

    /// Per-sample SGD over every row of `parts`, shuffled each epoch, for `epochs` epochs or at
    /// least `minSteps` samples; the dense columns step at `rate · denseRateScale`.
    func train(_ parts: [Impressions], epochs: Int, minSteps: Int = 0, rate: Float, denseRateScale: Float, decay: Float,
               itemIDDropout: Double = 0, rng: inout Random) -> TrainingLog {
        var log = TrainingLog()
        var order: [(part: Int32, row: Int32)] = []
        for (p, part) in parts.enumerated() { for r in 0..<part.count { order.append((Int32(p), Int32(r))) } }
        guard !order.isEmpty else { return log }
        let start = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<max(epochs, (minSteps + order.count - 1) / order.count) {
            rng.shuffle(&order)
            var loss = 0.0
            for (p, r) in order {
                let drop = itemIDDropout > 0 && rng.uniform() < itemIDDropout
                loss += step(parts[Int(p)], row: Int(r), rate: rate, denseRate: rate * denseRateScale, decay: decay, dropItemIDs: drop)
            }
            log.epochLoss.append(loss / Double(order.count))
            log.samples += order.count
        }
        log.seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return log
    }
}

extension TransferExperiment {
    /// Method fm's pretraining: one FM on the pooled sources, w0 at their base rate. Reads no
    /// target data, so it is shared across fractions and ρ like the backbones.
    func pretrainedFactorizationMachine() throws -> FactorizationMachine {
        if let done = pretrained.factorizationMachine { return done }
        let o = config.fm
        let rate = sources.reduce(0.0) { $0 + $1.train.clickRate * Double($1.train.count) }
            / Double(max(1, sources.reduce(0) { $0 + $1.train.count }))
        let fm = FactorizationMachine(spec: config.backbone, factors: o.factors, initSD: o.initSD, baseRate: rate, seed: seed)
        for s in sources { try fm.check(s.train, name: s.name) }
        var rng = Random(seed: seed, stream: "fm.pretrain")
        let log = fm.train(sources.map(\.train), epochs: o.epochs, rate: o.learningRate, denseRateScale: o.denseRateScale,
                           decay: o.l2, itemIDDropout: o.itemIDDropout, rng: &rng)
        pretrained.factorizationMachine = fm
        logs["pretrain-fm"] = log
        pretrainingLogs.append(log)
        return fm
    }

    /// Method fm on `train` (a target fraction): a copy of the pretrained FM with w0 moved to
    /// the fraction's base rate, fine-tuned with L2-SP ("fine-tuned like f"), scored like the
    /// other rows; the source AUC is on the scene whose head the other rows report.
    func runFactorizationMachine(train: Impressions, fraction: Double) throws -> MethodScores {
        let o = config.fm
        let fm = try pretrainedFactorizationMachine().copy()
        try fm.check(train, name: world.target.name)
        try fm.check(world.target.test, name: "\(world.target.name) test")
        fm.anchorToCurrentParameters()
        fm.bias = logit(train.clickRate)
        var rng = Random(seed: seed, stream: "fm.finetune.\(fraction)")
        let log = fm.train([train], epochs: o.fineTuneEpochs, minSteps: o.fineTuneMinSteps,
                           rate: o.fineTuneLearningRate, denseRateScale: o.denseRateScale, decay: o.l2sp, rng: &rng)
        logs["\(TransferMethod.fm.rawValue)@\(fraction)"] = log
        let source = sources[sourceHeadIndex]
        let logits = fm.predict(world.target.test), sourceLogits = fm.predict(source.test)
        // Plain SGD diverges when a step is too large; the metrics' sort cannot rank NaN.
        guard logits.allSatisfy(\.isFinite), sourceLogits.allSatisfy(\.isFinite) else {
            throw ConfigError("method fm diverged (non-finite logits): lower fm.learningRate or fm.denseRateScale")
        }
        var scores = evaluate(logits: logits, on: world.target.test)
        scores.sourceAUC = RankingMetrics.auc(scores: sourceLogits, labels: source.test.labels)
        scores.trainSamples = log.samples
        scores.trainSeconds = log.seconds
        return scores
    }
}
