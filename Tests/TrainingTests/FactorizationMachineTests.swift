import Foundation
import Model
import Testing
@testable import Training

/// Method fm: the per-sample SGD step against central finite differences, and training on a
/// small generated world.
@Suite struct FactorizationMachineTests {
    /// A tiny FM on `GradientTests.data`'s columns (1 context id, 2 context dense, 2 item ids,
    /// 3 item dense), every weight and factor nonzero; `anchored`: L2-SP towards other values.
    static func model(anchored: Bool) -> FactorizationMachine {
        let spec = BackboneSpec(contextFields: [FieldSpec(name: "user", vocab: 7, dim: 1)], contextDense: 2,
                                itemFields: [FieldSpec(name: "item", vocab: 11, dim: 1), FieldSpec(name: "category", vocab: 5, dim: 1)],
                                itemDense: 3, hidden: [4])
        let fm = FactorizationMachine(spec: spec, factors: 3, initSD: 0.5, baseRate: 0.3, seed: 9)
        // Draw every table row's factors (a step at rate 0 changes nothing else).
        let all = GradientTests.data(rows: 60, seed: 3)
        for r in 0..<all.count { fm.step(all, row: r, rate: 0, denseRate: 0, decay: 0) }
        var rng = Random(seed: 17)
        func randomize(_ b: FloatBuffer, weightsOnly: Bool) {
            for i in 0..<b.count where !weightsOnly || i % (fm.k + 1) == 0 { b.pointer[i] = Float(rng.normal() * 0.4) }
        }
        fm.tables.forEach { randomize($0, weightsOnly: true) }
        randomize(fm.dense, weightsOnly: true)
        if anchored {
            fm.anchorToCurrentParameters()
            fm.tables.forEach { randomize($0, weightsOnly: false) }
            randomize(fm.dense, weightsOnly: false)
        }
        fm.bias = -0.4
        return fm
    }

    /// At rate 1 a step moves every parameter by exactly minus its gradient, so the step itself
    /// is checked — for w0, the sample's id rows (weights and factors) and dense columns
    /// (weights and factors) — against loss + decay·½(θ − anchor)² (w0 is not decayed).
    @Test(arguments: [Float(0), 0.3])
    func stepFollowsTheGradient(decay: Float) {
        let fm = Self.model(anchored: decay != 0)
        let data = GradientTests.data(rows: 5, seed: 4)
        var checked = 0
        for r in 0..<data.count {
            let stepped = fm.copy()
            stepped.step(data, row: r, rate: 1, denseRate: 1, decay: decay)
            func check(_ saved: Float, after: Float, anchor: Float?, what: String, set: (Float) -> Void) {
                func objective(_ v: Float) -> Double {
                    set(v)
                    let loss = RankingMetrics.crossEntropy(logit: Double(fm.score(data, row: r)), label: Double(data.labels[r]))
                    return loss + (anchor.map { Double(decay) / 2 * Double(v - $0) * Double(v - $0) } ?? 0)
                }
                let eps: Float = 1e-2
                let numeric = (objective(saved + eps) - objective(saved - eps)) / Double(2 * eps)
                set(saved)
                let analytic = Double(saved - after)
                #expect(abs(numeric - analytic) <= 1e-3 + 0.01 * abs(numeric), "row \(r) \(what): step \(analytic), numeric \(numeric)")
                checked += 1
            }
            func check(_ p: UnsafeMutablePointer<Float>, after: Float, anchor: Float, what: String) {
                check(p.pointee, after: after, anchor: anchor, what: what) { p.pointee = $0 }
            }
            check(fm.bias, after: stepped.bias, anchor: nil, what: "w0") { fm.bias = $0 }
            let stride = fm.k + 1
            for f in fm.vocabs.indices {
                let id = f < fm.contextFields ? data.contextIDs[r] : data.itemIDs[r * 2 + f - 1]
                let base = Int(Model.fmix32(id) % UInt32(fm.vocabs[f])) * stride
                for j in 0..<stride {
                    check(fm.tables[f].pointer + base + j, after: stepped.tables[f].pointer[base + j],
                          anchor: fm.anchor?.tables[f].pointer[base + j] ?? 0, what: "field \(f) \(j == 0 ? "weight" : "factor \(j - 1)")")
                }
            }
            for c in 0..<5 {
                for j in 0..<stride {
                    check(fm.dense.pointer + c * stride + j, after: stepped.dense.pointer[c * stride + j],
                          anchor: fm.anchor?.dense.pointer[c * stride + j] ?? 0, what: "dense \(c) \(j == 0 ? "weight" : "factor \(j - 1)")")
                }
            }
        }
        #expect(checked == data.count * (1 + 3 * 4 + 5 * 4))
    }

    /// The same seed gives the same model, and training lifts the target's soft AUC and the
    /// source's AUC well above an untrained FM's (≈ 0.5: its only nonzero factors are the dense
    /// columns' N(0, 0.01²) draws).
    @Test func trainingIsDeterministicBySeedAndLearns() throws {
        let world = WorldGenerator.generate(SmallTransfer.world(seed: 5))
        var config = SmallTransfer.experiment
        config.fm.fineTuneMinSteps = 10_000
        let a = try TransferExperiment(world: world, config: config, seed: 5).run(.fm, fraction: 0.05)
        let b = try TransferExperiment(world: world, config: config, seed: 5).run(.fm, fraction: 0.05)
        #expect(a.auc == b.auc && a.softAUC == b.softAUC && a.logloss == b.logloss && a.sourceAUC == b.sourceAUC)
        #expect(a.trainSamples >= 10_000)

        let untrained = FactorizationMachine(spec: config.backbone, factors: config.fm.factors, initSD: config.fm.initSD,
                                             baseRate: 0.07, seed: 5)
        let target = world.target.test, source = world.sources[0].test
        let probabilities = try #require(target.eta).map { Float(sigmoid(Double($0))) }
        let untrainedSoft = RankingMetrics.softAUC(scores: untrained.predict(target), probabilities: probabilities)
        let untrainedSource = RankingMetrics.auc(scores: untrained.predict(source), labels: source.labels)
        let soft = try #require(a.softAUC), sourceAUC = try #require(a.sourceAUC)
        #expect(soft > untrainedSoft + 0.04, "target soft AUC: trained \(soft), untrained \(untrainedSoft)")
        #expect(sourceAUC > untrainedSource + 0.05, "source AUC: trained \(sourceAUC), untrained \(untrainedSource)")
        #expect(try soft < #require(world.target.aucStar))
    }

    @Test func isNotExported() throws {
        let world = WorldGenerator.generate(SmallTransfer.world(seed: 6))
        let experiment = TransferExperiment(world: world, config: SmallTransfer.experiment, seed: 6)
        #expect(throws: ConfigError.self) { try experiment.trainAndExport(.fm, fraction: 0.01, to: "/nonexistent") }
    }
}
