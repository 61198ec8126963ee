import Foundation
import Model
import Testing
@testable import Training

/// Backprop against central finite differences, on a small network in odd sizes, with two
/// workers, two heads (one segment each), the adversarial discriminator and the two-tower
/// interaction with its per-head adapter.
@Suite struct GradientTests {
    static func data(rows: Int, seed: UInt64) -> Impressions {
        var rng = Random(seed: seed)
        var d = Impressions(contextIDWidth: 1, contextDenseWidth: 2, itemIDWidth: 2, itemDenseWidth: 3)
        d.count = rows
        for _ in 0..<rows {
            d.contextIDs.append(UInt32(rng.below(5)))
            d.contextDense += [Float(rng.normal()), Float(rng.normal())]
            d.itemIDs += [UInt32(rng.below(9)), UInt32(rng.below(4))]
            d.itemDense += (0..<3).map { _ in Float(rng.normal()) }
            d.labels.append(rng.uniform() < 0.4 ? 1 : 0)
        }
        return d
    }

    /// A trainer with nonzero embeddings (they start at zero in real training, which would
    /// leave the layer-0 weight gradients of those columns untested).
    static func model(discriminator: Bool, interaction: Bool) -> (Trainer, [TrainingPart]) {
        let spec = BackboneSpec(contextFields: [FieldSpec(name: "user", vocab: 7, dim: 3)], contextDense: 2,
                                itemFields: [FieldSpec(name: "item", vocab: 11, dim: 3), FieldSpec(name: "category", vocab: 5, dim: 2)],
                                itemDense: 3, hidden: [9, 6], interaction: interaction ? InteractionSpec(dim: 3) : nil)
        var rng = Random(seed: 42)
        let backbone = BackboneNet(spec: spec, workers: 2, rng: &rng)
        for t in backbone.tables { for i in 0..<(t.vocab * t.dim) { t.value.pointer[i] = Float(rng.normal() * 0.5) } }
        let heads = (0..<2).map { _ in
            HeadNet(input: 6, bottleneck: 3, tower: [5], outputs: 1, interaction: spec.interactionDim, baseRate: 0.3, workers: 2, rng: &rng)
        }
        // U starts at zero in real training; make it nonzero so the adapter path is exercised.
        for h in heads {
            for i in 0..<h.up.weight.count { h.up.weight.value.pointer[i] = Float(rng.normal() * 0.3) }
            h.up.repack()
            // And A away from the identity, so its off-diagonal terms carry gradient to u and v.
            if let a = h.interaction { for i in 0..<a.count { a.value.pointer[i] += Float(rng.normal() * 0.5) } }
        }
        let disc = discriminator ? DiscriminatorNet(input: 6, hidden: 4, domains: 2, workers: 2, rng: &rng) : nil
        let parts = [TrainingPart(data: data(rows: 7, seed: 1), head: 0, domain: 0, weight: 1),
                     TrainingPart(data: data(rows: 6, seed: 2), head: 1, domain: 1, weight: 0.5)]
        return (Trainer(backbone: backbone, heads: heads, discriminator: disc, workers: 2), parts)
    }

    static func batch(_ parts: [TrainingPart]) -> [(part: Int32, row: Int32)] {
        parts.enumerated().flatMap { p, part in (0..<part.data.count).map { (Int32(p), Int32($0)) } }
    }

    @Test(arguments: [false, true], [false, true])
    func denseAndEmbeddingGradientsMatchFiniteDifferences(adversarial: Bool, interaction: Bool) {
        let (trainer, parts) = Self.model(discriminator: adversarial, interaction: interaction)
        let batch = Self.batch(parts)
        let mu: Float = 0.7, reversal: Float = 0.6
        _ = trainer.gradients(batch, parts: parts, cache: nil, discriminatorWeight: mu, reversal: reversal)

        // Objectives: the backbone descends task − reversal·μ·L_d, the heads the task loss,
        // the discriminator μ·L_d.
        func objective(backboneSide: Bool) -> Double {
            let (task, _) = trainer.gradients(batch, parts: parts, cache: nil, discriminatorWeight: mu, reversal: reversal)
            trainer.backbone.tables.forEach { $0.discardGradients() }
            let disc = trainer.lastDiscriminatorLoss
            return backboneSide ? task - Double(reversal) * disc : task + disc
        }
        var checked = 0
        func check(_ value: UnsafeMutablePointer<Float>, analytic: Float, backboneSide: Bool, repack: () -> Void, what: String) {
            let eps: Float = 5e-4  // small: at 1e-2 a row's ReLU kink sat inside the step (mlp.0.bias, with towers)
            let saved = value.pointee
            value.pointee = saved + eps; repack()
            let plus = objective(backboneSide: backboneSide)
            value.pointee = saved - eps; repack()
            let minus = objective(backboneSide: backboneSide)
            value.pointee = saved; repack()
            let numeric = (plus - minus) / Double(2 * eps)
            #expect(abs(numeric - Double(analytic)) <= 2e-3 + 0.03 * abs(numeric), "\(what): analytic \(analytic), numeric \(numeric)")
            checked += 1
        }
        func sum(_ p: Parameter, _ i: Int) -> Float { p.workerGradients.reduce(0) { $0 + $1.pointer[i] } }
        func checkLayer(_ l: Linear, backboneSide: Bool, name: String) {
            let w = (0..<l.weight.count).map { sum(l.weight, $0) }, b = (0..<l.bias.count).map { sum(l.bias, $0) }
            for i in stride(from: 0, to: l.weight.count, by: max(1, l.weight.count / 9)) {
                check(l.weight.value.pointer + i, analytic: w[i], backboneSide: backboneSide, repack: l.repack, what: "\(name).weight[\(i)]")
            }
            for i in 0..<l.bias.count {
                check(l.bias.value.pointer + i, analytic: b[i], backboneSide: backboneSide, repack: l.repack, what: "\(name).bias[\(i)]")
            }
        }
        // Snapshot the embedding gradients before finite differences reuse the buffers.
        let embeddingGradients = trainer.backbone.tables.map { $0.gradient.array }
        trainer.backbone.tables.forEach { $0.discardGradients() }
        for (i, l) in trainer.backbone.layers.enumerated() { checkLayer(l, backboneSide: true, name: "mlp.\(i)") }
        for (i, l) in trainer.backbone.towers.enumerated() { checkLayer(l, backboneSide: true, name: "tower\(i)") }
        for (hIndex, h) in trainer.heads.enumerated() {
            for (j, l) in h.layers.enumerated() { checkLayer(l, backboneSide: false, name: "head\(hIndex).layer\(j)") }
            if let a = h.interaction {
                let g = (0..<a.count).map { sum(a, $0) }
                for i in 0..<a.count { check(a.value.pointer + i, analytic: g[i], backboneSide: false, repack: {}, what: "head\(hIndex).interaction[\(i)]") }
            }
        }
        if let d = trainer.discriminator { for (j, l) in d.layers.enumerated() { checkLayer(l, backboneSide: false, name: "disc.\(j)") } }
        for (t, table) in trainer.backbone.tables.enumerated() {
            for i in 0..<(table.vocab * table.dim) where embeddingGradients[t][i] != 0 || i % 5 == 0 {
                check(table.value.pointer + i, analytic: embeddingGradients[t][i], backboneSide: true, repack: {}, what: "table\(t)[\(i)]")
            }
        }
        #expect(checked > 120)
    }
}
