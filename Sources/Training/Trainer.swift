import Foundation
import Model
import Kernels

/// Options of one training run.
public struct TrainingOptions: Codable, Sendable, Equatable {
    public var epochs: Int = 2
    /// Small training sets get more epochs, up to this many optimizer steps in all.
    public var minSteps: Int = 0
    public var batchSize: Int = 512
    public var adam = AdamOptions()
    /// Embedding rows see a few dozen updates each per epoch (one per impression of that
    /// user or item), so they need a larger Adam step than the dense layers.
    public var embeddingLearningRate: Float = 0.02
    /// L2 decay on the embedding rows a batch touches.
    public var embeddingDecay: Float = 1e-6
    /// L2 decay on context-field (user) rows: a user is seen a few dozen times, so its vector
    /// needs a real prior. With `contextEmbeddingSGD` 10 on a batch of 512, 4e-5 per touch is
    /// about a unit Gaussian prior over a user's ~45 source impressions.
    public var contextEmbeddingDecay: Float = 4e-5
    /// > 0: context-field rows train with plain SGD at this step (on the batch-mean loss)
    /// instead of lazy Adam — see `EmbeddingTable.updateSGD`. Measured on the benchmark (seed
    /// 1, ρ 0.8): zero-shot soft AUC 0.562 with Adam, 0.581 with SGD.
    public var contextEmbeddingSGD: Float = 10
    /// L2 decay of a head's interaction adapter towards its anchor (the identity, or the
    /// source head's matrix when fine-tuning).
    public var interactionDecay: Float = 1e-2
    /// μ: weight of the discriminator's loss (method e); the backbone receives −λ(p)·μ·∂L_d/∂h.
    public var discriminatorWeight: Float = 0.01
    /// Gradient-norm-aware reversal: per worker slice, the reversed gradient on h is scaled
    /// down to at most this multiple of the task gradient's norm on h. Without the cap, at μ ≥
    /// 0.03 the backbone escaped the discriminator by switching h off (every ReLU dead).
    public var reversalNormCap: Float = 0.5
    public var discriminatorHidden: Int = 64
    /// Probability of zeroing a training row's item-side id embeddings (item, category,
    /// brand), so the backbone also ranks from content — what cold-start items have.
    public var itemIDDropout: Double = 0.5
    /// Worker threads: a batch is split across them and their gradients summed in a fixed order.
    public var threads: Int = 2
    public init() {}
}

/// One block of training data: its rows go to head `head`, belong to scene `domain` for the
/// discriminator, are weighted `weight` (λ_s) in the loss and appear `repeats` times per epoch.
struct TrainingPart: Sendable {
    var data: Impressions
    var head: Int
    var domain: Int
    var weight: Float = 1
    var repeats: Int = 1
}

/// What a run measured.
public struct TrainingLog: Codable, Sendable {
    public var epochLoss: [Double] = []
    public var samples = 0
    public var seconds = 0.0
    /// Multiply-adds of the forward and backward products, for the fraction of kernel GFLOP/s.
    public var flops = 0.0
    public var samplesPerSecond: Double { seconds > 0 ? Double(samples) / seconds : 0 }
}

/// Mini-batch training of a backbone with several heads (and optionally a scene discriminator
/// behind a gradient-reversal layer). Deterministic by seed: batches come from a seeded
/// shuffle, each worker owns a fixed slice of every batch, and gradients are reduced in worker
/// order — the result does not depend on thread timing. (Unchecked Sendable: inside a
/// parallel section workers only read the weights and write their own scratch and gradients;
/// weights change only between sections, on the calling thread.)
final class Trainer: @unchecked Sendable {
    let backbone: BackboneNet
    var heads: [HeadNet]
    var discriminator: DiscriminatorNet?
    let workers: Int
    private(set) var step = 0
    private let scratch: [WorkerScratch]

    init(backbone: BackboneNet, heads: [HeadNet], discriminator: DiscriminatorNet? = nil, workers: Int) {
        self.backbone = backbone; self.heads = heads; self.discriminator = discriminator
        self.workers = workers
        scratch = (0..<workers).map { _ in WorkerScratch() }
    }

    // MARK: Training

    func train(_ parts: [TrainingPart], options o: TrainingOptions, seed: UInt64) -> TrainingLog {
        var log = TrainingLog()
        var order: [(part: Int32, row: Int32)] = []
        for (p, part) in parts.enumerated() {
            for _ in 0..<part.repeats { for r in 0..<part.data.count { order.append((Int32(p), Int32(r))) } }
        }
        guard !order.isEmpty else { return log }
        // Frozen backbone: h of every training row once, then only the heads train.
        let cache: [FloatBuffer]? = backbone.trainable ? nil : parts.map { hidden($0.data) }
        let batchesPerEpoch = (order.count + o.batchSize - 1) / o.batchSize
        let epochs = max(o.epochs, (o.minSteps + batchesPerEpoch - 1) / batchesPerEpoch)
        let totalSteps = max(epochs * batchesPerEpoch, 1)
        var rng = Random(seed: seed, stream: "batches")
        var dropRNG = Random(seed: seed, stream: "item-id-dropout")
        let start = DispatchTime.now().uptimeNanoseconds
        var stepInRun = 0
        for _ in 0..<epochs {
            rng.shuffle(&order)
            var epochLoss = 0.0  // mean of the batches' mean losses
            for b in 0..<batchesPerEpoch {
                var batch = Array(order[(b * o.batchSize)..<min((b + 1) * o.batchSize, order.count)])
                batch.sort { ($0.part, $0.row) < ($1.part, $1.row) }
                let progress = Double(stepInRun) / Double(totalSteps)
                let reversal = Float(2 / (1 + Foundation.exp(-10 * progress)) - 1)
                let drop = o.itemIDDropout > 0 ? batch.map { _ in dropRNG.uniform() < o.itemIDDropout } : []
                epochLoss += runStep(batch, drop: drop, parts: parts, cache: cache, options: o, reversal: reversal, log: &log)
                stepInRun += 1
            }
            log.epochLoss.append(epochLoss / Double(batchesPerEpoch))
        }
        log.seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return log
    }

    /// Forward, backward and Adam update for one batch; returns the batch's mean loss.
    private func runStep(_ batch: [(part: Int32, row: Int32)], drop: [Bool], parts: [TrainingPart], cache: [FloatBuffer]?,
                         options o: TrainingOptions, reversal: Float, log: inout TrainingLog) -> Double {
        let (loss, flops) = gradients(batch, dropItemIDs: drop, parts: parts, cache: cache,
                                      discriminatorWeight: o.discriminatorWeight, reversal: reversal,
                                      reversalNormCap: o.reversalNormCap)
        log.flops += flops
        log.samples += batch.count
        step += 1
        // Updates: every tensor's Adam step is independent of the others', so they run in
        // parallel and the result does not depend on the order.
        var updates: [Update] = []
        if backbone.trainable {
            var embeddingOptions = o.adam
            embeddingOptions.weightDecay = o.embeddingDecay
            embeddingOptions.learningRate = o.embeddingLearningRate
            var contextOptions = embeddingOptions
            contextOptions.weightDecay = o.contextEmbeddingDecay
            updates += backbone.tables.enumerated().map { f, t in
                guard f < backbone.spec.contextFields.count else { return .table(t, embeddingOptions) }
                return o.contextEmbeddingSGD > 0 ? .sgdTable(t, o.contextEmbeddingSGD, o.contextEmbeddingDecay) : .table(t, contextOptions)
            }
            updates += (backbone.layers + backbone.towers).map { .layer($0, o.adam) }
        }
        let usedHeads = Set(batch.map { parts[Int($0.part)].head }.filter { $0 >= 0 })
        var interactionOptions = o.adam
        interactionOptions.weightDecay = o.interactionDecay
        for h in usedHeads.sorted() {
            updates += heads[h].layers.map { .layer($0, o.adam) }
            if let a = heads[h].interaction { updates.append(.parameter(a, interactionOptions)) }
        }
        if let d = discriminator, backbone.trainable {
            var plain = o.adam
            plain.weightDecay = 0
            updates += d.layers.map { .layer($0, plain) }
        }
        let step = self.step, jobs = updates
        DispatchQueue.concurrentPerform(iterations: jobs.count) { i in
            switch jobs[i] {
            case .table(let t, let options): t.update(step: step, options: options)
            case .layer(let l, let options): l.update(step: step, options: options)
            case .parameter(let p, let options): p.update(step: step, options: options)
            case .sgdTable(let t, let rate, let decay): t.updateSGD(learningRate: rate, decay: decay)
            }
        }
        return loss
    }

    /// Gradients of the batch's objective — mean weighted cross-entropy of the heads, plus μ ×
    /// the discriminator's cross-entropy for its own weights, minus reversal × μ × that for the
    /// backbone's — summed into the parameters' gradient buffers (dense: per worker; embedding
    /// rows: in batch order). Returns (task loss, flops).
    /// `dropItemIDs`: per batch row, or empty for none.
    func gradients(_ batch: [(part: Int32, row: Int32)], dropItemIDs drop: [Bool] = [], parts: [TrainingPart], cache: [FloatBuffer]?,
                   discriminatorWeight: Float, reversal: Float, reversalNormCap: Float = .infinity) -> (Double, Double) {
        let n = batch.count, perWorker = (n + workers - 1) / workers
        let sliceCount = (n + perWorker - 1) / perWorker
        heads.forEach { h in h.layers.forEach { $0.zeroGradients() }; h.interaction?.zeroGradients() }
        (backbone.layers + backbone.towers).forEach { $0.zeroGradients() }
        discriminator?.layers.forEach { $0.zeroGradients() }
        let scale = 1 / Float(n)
        for s in scratch { s.loss = 0; s.discLoss = 0; s.flops = 0 }  // idle workers must not report a stale loss
        DispatchQueue.concurrentPerform(iterations: sliceCount) { w in
            let lo = w * perWorker, hi = min(n, lo + perWorker)
            workerStep(Array(batch[lo..<hi]), drop: drop.isEmpty ? [] : Array(drop[lo..<hi]), parts: parts, cache: cache, worker: w, lossScale: scale,
                       discriminatorWeight: discriminatorWeight, reversal: reversal, reversalNormCap: reversalNormCap)
        }
        let loss = scratch.reduce(0) { $0 + $1.loss }, flops = scratch.reduce(0) { $0 + $1.flops }
        // Embedding gradients: one table per task, each adding rows in batch order.
        if backbone.trainable {
            let width = backbone.inputWidth
            DispatchQueue.concurrentPerform(iterations: backbone.tables.count) { f in
                let (column, isItem) = backbone.embeddingColumn(f)
                for i in 0..<n {
                    let item = batch[i], dx = scratch[i / perWorker].dx0.pointer + (i % perWorker) * width
                    backbone.accumulateEmbeddingGradient(field: f, column: column, isItem: isItem, parts[Int(item.part)].data,
                                                         row: Int(item.row), droppedItemIDs: !drop.isEmpty && drop[i], dx)
                }
            }
        }
        return (loss, flops)
    }

    /// The discriminator's loss (× μ) of the last `gradients` call.
    var lastDiscriminatorLoss: Double { scratch.reduce(0) { $0 + $1.discLoss } }

    /// One worker's slice: forward, loss, backward into its own gradient buffers.
    private func workerStep(_ rows: [(part: Int32, row: Int32)], drop: [Bool], parts: [TrainingPart], cache: [FloatBuffer]?, worker w: Int,
                            lossScale: Float, discriminatorWeight: Float, reversal: Float, reversalNormCap: Float) {
        let s = scratch[w], m = rows.count, H = backbone.outputWidth, k = backbone.interactionDim
        let out = forwardBackbone(rows.map { (parts[Int($0.part)].data, Int($0.row)) }, drop: drop, cache: cache.map { c in
            rows.map { (c[Int($0.part)], Int($0.row)) } }, scratch: s)
        let h = out.h
        s.dh.reserve(m * H)
        s.dh.zero(m * H)
        let towerGradients = k > 0 && backbone.trainable
        if towerGradients {
            s.du.reserve(m * k); s.du.zero(m * k)
            s.dv.reserve(m * k); s.dv.zero(m * k)
        }
        // Heads, one contiguous segment per part (the batch is sorted by part).
        var start = 0
        while start < m {
            var end = start
            while end < m && rows[end].part == rows[start].part { end += 1 }
            let part = parts[Int(rows[start].part)]
            if part.head < 0 { start = end; continue }  // unlabeled rows: discriminator only
            let labels = rows[start..<end].map { part.data.labels[Int($0.row)] }
            headStep(heads[part.head], out.rows(from: start, width: H, k: k), rows: end - start, labels: labels,
                     weight: part.weight * lossScale, scratch: s, worker: w, dh: s.dh.pointer + start * H,
                     du: towerGradients ? s.du.pointer + start * k : nil, dv: towerGradients ? s.dv.pointer + start * k : nil)
            start = end
        }
        if let d = discriminator, backbone.trainable {
            discriminatorStep(d, h: h, rows: m, domains: rows.map { parts[Int($0.part)].domain },
                              weight: discriminatorWeight * lossScale, reversal: reversal, cap: reversalNormCap, scratch: s, worker: w)
        }
        if backbone.trainable { backwardBackbone(rows: m, scratch: s, worker: w) }
    }

    /// Layer-0 inputs and the backbone's activations for `rows`; returns h (rows × H) and the
    /// towers' u, v (rows × k). With a cache (frozen backbone: rows of [h | u | v]), they are
    /// copied from it.
    private func forwardBackbone(_ rows: [(Impressions, Int)], drop: [Bool] = [], cache: [(FloatBuffer, Int)]?, scratch s: WorkerScratch) -> BackboneRows {
        let m = rows.count, H = backbone.outputWidth, k = backbone.interactionDim
        if let cache {
            let F = H + 2 * k
            s.cachedH.reserve(m * H); s.u.reserve(m * k); s.v.reserve(m * k)
            for (i, (buf, r)) in cache.enumerated() {
                let row = buf.pointer + r * F
                (s.cachedH.pointer + i * H).update(from: row, count: H)
                if k > 0 {
                    (s.u.pointer + i * k).update(from: row + H, count: k)
                    (s.v.pointer + i * k).update(from: row + H + k, count: k)
                }
            }
            return BackboneRows(h: s.cachedH.pointer, u: k > 0 ? s.u.pointer : nil, v: k > 0 ? s.v.pointer : nil)
        }
        let width = backbone.inputWidth
        s.x0.reserve(m * width)
        for (i, (data, r)) in rows.enumerated() {
            backbone.gatherInput(data, row: r, dropItemIDs: !drop.isEmpty && drop[i], into: s.x0.pointer + i * width)
        }
        if let userTower = backbone.userTower, let itemTower = backbone.itemTower {
            // The towers read the context and item parts of the layer-0 input as their own matrices.
            let cw = userTower.inputs, iw = itemTower.inputs
            s.xc.reserve(m * cw); s.xi.reserve(m * iw); s.u.reserve(m * k); s.v.reserve(m * k)
            for i in 0..<m {
                (s.xc.pointer + i * cw).update(from: s.x0.pointer + i * width, count: cw)
                (s.xi.pointer + i * iw).update(from: s.x0.pointer + i * width + cw, count: iw)
            }
            userTower.forward(s.xc.pointer, rows: m, into: s.u.pointer, activation: .identity)
            itemTower.forward(s.xi.pointer, rows: m, into: s.v.pointer, activation: .identity)
            s.flops += 2 * Double(m * (cw + iw) * k)
        }
        while s.acts.count < backbone.layers.count { s.acts.append(FloatBuffer(count: 0)) }
        var input = UnsafePointer(s.x0.pointer)
        for (l, layer) in backbone.layers.enumerated() {
            s.acts[l].reserve(m * layer.outputs)
            layer.forward(input, rows: m, into: s.acts[l].pointer, activation: .relu)
            s.flops += 2 * Double(m * layer.inputs * layer.outputs)
            input = UnsafePointer(s.acts[l].pointer)
        }
        return BackboneRows(h: s.acts[backbone.layers.count - 1].pointer, u: k > 0 ? s.u.pointer : nil, v: k > 0 ? s.v.pointer : nil)
    }

    /// Head forward, cross-entropy on the logit, head backward; adds dL/dh into `dh` (and
    /// dL/du, dL/dv into `du`, `dv` when given).
    private func headStep(_ head: HeadNet, _ input: BackboneRows, rows m: Int, labels: [Float], weight: Float,
                          scratch s: WorkerScratch, worker w: Int, dh: UnsafeMutablePointer<Float>,
                          du: UnsafeMutablePointer<Float>?, dv: UnsafeMutablePointer<Float>?) {
        let h = input.h
        let logits = headForward(head, input, rows: m, scratch: s)
        let K = head.output.outputs
        s.dLogits.reserve(m * K)
        s.dLogits.zero(m * K)
        for r in 0..<m {
            let z = Double(logits[r * K]), y = Double(labels[r])
            s.loss += Double(weight) * RankingMetrics.crossEntropy(logit: z, label: y)
            s.dLogits.pointer[r * K] = weight * Float(sigmoid(z) - y)
        }
        if let a = head.interaction, let u = input.u, let v = input.v {
            interactionBackward(a, k: head.interactionDim, outputs: K, u: u, v: v, rows: m, dLogits: s.dLogits.pointer,
                                worker: w, du: du, dv: dv)
            s.flops += 4 * Double(m * K * head.interactionDim * head.interactionDim)
        }
        // Output and tower, back to dL/dh'.
        let towerInputs = [s.h2.pointer] + s.tower.prefix(head.tower.count).map(\.pointer)
        var dy = UnsafeMutablePointer(s.dLogits.pointer)
        var layer = head.output, li = head.tower.count
        while true {
            let x = towerInputs[li]
            let dxBuf = li == 0 ? s.dh2 : s.dTower[li - 1]
            dxBuf.reserve(m * layer.inputs)
            layer.backward(x, dy, rows: m, worker: w, scratch: s.transpose, dx: dxBuf.pointer)
            s.flops += 4 * Double(m * layer.inputs * layer.outputs)
            if li == 0 { break }
            reluBackward(dxBuf.pointer, activations: x, count: m * layer.inputs)
            dy = dxBuf.pointer
            li -= 1
            layer = head.tower[li]
        }
        // h' = h + U a + b_U, a = relu(D h + b_D).
        let H = head.up.outputs, B = head.down.outputs
        for i in 0..<(m * H) { dh[i] += s.dh2.pointer[i] }
        s.da.reserve(m * B)
        head.up.backward(s.a.pointer, s.dh2.pointer, rows: m, worker: w, scratch: s.transpose, dx: s.da.pointer)
        reluBackward(s.da.pointer, activations: s.a.pointer, count: m * B)
        s.dTmp.reserve(m * H)
        head.down.backward(h, s.da.pointer, rows: m, worker: w, scratch: s.transpose, dx: s.dTmp.pointer)
        for i in 0..<(m * H) { dh[i] += s.dTmp.pointer[i] }
        s.flops += 8 * Double(m * H * B)
    }

    /// The head's forward pass over h; returns the logits (rows × K) in scratch.
    @discardableResult
    private func headForward(_ head: HeadNet, _ input: BackboneRows, rows m: Int, scratch s: WorkerScratch) -> UnsafeMutablePointer<Float> {
        let H = head.up.outputs, h = input.h
        s.a.reserve(m * head.down.outputs)
        head.down.forward(h, rows: m, into: s.a.pointer, activation: .relu)
        s.h2.reserve(m * H)
        head.up.forward(s.a.pointer, rows: m, into: s.h2.pointer, activation: .identity, addend: h)
        var x = s.h2.pointer
        while s.tower.count < head.tower.count { s.tower.append(FloatBuffer(count: 0)); s.dTower.append(FloatBuffer(count: 0)) }
        for (j, t) in head.tower.enumerated() {
            s.tower[j].reserve(m * t.outputs)
            t.forward(x, rows: m, into: s.tower[j].pointer, activation: .relu)
            x = s.tower[j].pointer
        }
        s.logits.reserve(m * head.output.outputs)
        head.output.forward(x, rows: m, into: s.logits.pointer, activation: .identity)
        s.flops += 2 * Double(m) * Double(head.layers.reduce(0) { $0 + $1.inputs * $1.outputs })
        if let a = head.interaction, let u = input.u, let v = input.v {
            // logit_o += uᵀ A_o v
            let k = head.interactionDim, K = head.output.outputs
            for r in 0..<m {
                let ur = u + r * k, vr = v + r * k
                for o in 0..<K {
                    let ao = a.value.pointer + o * k * k
                    var sum: Float = 0
                    for i in 0..<k {
                        var av: Float = 0
                        for j in 0..<k { av += ao[i * k + j] * vr[j] }
                        sum += ur[i] * av
                    }
                    s.logits.pointer[r * K + o] += sum
                }
            }
            s.flops += 2 * Double(m * K * k * k)
        }
        return s.logits.pointer
    }

    /// Backprop of logit_o += uᵀ A_o v: dA_o += g·u vᵀ (into `worker`'s gradient), du += g·A_o v,
    /// dv += g·A_oᵀ u.
    private func interactionBackward(_ a: Parameter, k: Int, outputs K: Int, u: UnsafePointer<Float>, v: UnsafePointer<Float>,
                                     rows m: Int, dLogits: UnsafePointer<Float>, worker w: Int,
                                     du: UnsafeMutablePointer<Float>?, dv: UnsafeMutablePointer<Float>?) {
        let ga = a.workerGradients[w].pointer
        for r in 0..<m {
            let ur = u + r * k, vr = v + r * k
            for o in 0..<K {
                let g = dLogits[r * K + o]
                if g == 0 { continue }
                let ao = a.value.pointer + o * k * k, gao = ga + o * k * k
                for i in 0..<k {
                    let gu = g * ur[i]
                    var av: Float = 0
                    for j in 0..<k {
                        av += ao[i * k + j] * vr[j]
                        gao[i * k + j] += gu * vr[j]
                        dv?[r * k + j] += gu * ao[i * k + j]
                    }
                    du?[r * k + i] += g * av
                }
            }
        }
    }

    /// Softmax cross-entropy of the discriminator on h; its own gradients as usual, and
    /// −reversal · ∂L_d/∂h added to dL/dh (the gradient-reversal layer), its norm capped at
    /// `cap` × the norm of the task gradient already in dL/dh.
    private func discriminatorStep(_ d: DiscriminatorNet, h: UnsafeMutablePointer<Float>, rows m: Int, domains: [Int],
                                   weight: Float, reversal: Float, cap: Float, scratch s: WorkerScratch, worker w: Int) {
        let D = d.hidden.outputs, S = d.domains, H = d.hidden.inputs
        s.discHidden.reserve(m * D); s.discLogits.reserve(m * S)
        d.hidden.forward(h, rows: m, into: s.discHidden.pointer, activation: .relu)
        d.output.forward(s.discHidden.pointer, rows: m, into: s.discLogits.pointer, activation: .identity)
        let z = s.discLogits.pointer
        for r in 0..<m {
            let row = z + r * S
            var mx = row[0]
            for j in 1..<S { mx = max(mx, row[j]) }
            var sum: Float = 0
            for j in 0..<S { row[j] = Foundation.exp(row[j] - mx); sum += row[j] }
            for j in 0..<S { row[j] /= sum }
            s.discLoss -= Double(weight) * Foundation.log(Double(max(row[domains[r]], 1e-30)))
            for j in 0..<S { row[j] = weight * (row[j] - (j == domains[r] ? 1 : 0)) }
        }
        s.discGrad.reserve(m * D)
        d.output.backward(s.discHidden.pointer, z, rows: m, worker: w, scratch: s.transpose, dx: s.discGrad.pointer)
        reluBackward(s.discGrad.pointer, activations: s.discHidden.pointer, count: m * D)
        s.dTmp.reserve(m * H)
        d.hidden.backward(h, s.discGrad.pointer, rows: m, worker: w, scratch: s.transpose, dx: s.dTmp.pointer)
        var task: Float = 0, adversarial: Float = 0
        for i in 0..<(m * H) { task += s.dh.pointer[i] * s.dh.pointer[i]; adversarial += s.dTmp.pointer[i] * s.dTmp.pointer[i] }
        let scale = adversarial > 0 ? min(reversal, cap * (task / adversarial).squareRoot()) : reversal
        for i in 0..<(m * H) { s.dh.pointer[i] -= scale * s.dTmp.pointer[i] }
        s.flops += 6 * Double(m * (H * D + D * S))
    }

    /// Backprop from dL/dh through the MLP to dL/d(layer-0 input) in `dx0`.
    private func backwardBackbone(rows m: Int, scratch s: WorkerScratch, worker w: Int) {
        var dy = s.dh.pointer
        for l in stride(from: backbone.layers.count - 1, through: 0, by: -1) {
            let layer = backbone.layers[l]
            reluBackward(dy, activations: s.acts[l].pointer, count: m * layer.outputs)
            let x = l == 0 ? s.x0.pointer : s.acts[l - 1].pointer
            let dxBuf = l == 0 ? s.dx0 : (dy == s.dPing.pointer ? s.dPong : s.dPing)
            dxBuf.reserve(m * layer.inputs)
            layer.backward(x, dy, rows: m, worker: w, scratch: s.transpose, dx: dxBuf.pointer)
            s.flops += 4 * Double(m * layer.inputs * layer.outputs)
            dy = dxBuf.pointer
        }
        if let userTower = backbone.userTower, let itemTower = backbone.itemTower {
            // The towers' input gradients join the MLP's in their columns of dL/d(layer-0 input).
            let cw = userTower.inputs, iw = itemTower.inputs, width = backbone.inputWidth
            s.dxc.reserve(m * cw); s.dxi.reserve(m * iw)
            userTower.backward(s.xc.pointer, s.du.pointer, rows: m, worker: w, scratch: s.transpose, dx: s.dxc.pointer)
            itemTower.backward(s.xi.pointer, s.dv.pointer, rows: m, worker: w, scratch: s.transpose, dx: s.dxi.pointer)
            for i in 0..<m {
                let row = s.dx0.pointer + i * width
                for j in 0..<cw { row[j] += s.dxc.pointer[i * cw + j] }
                for j in 0..<iw { row[cw + j] += s.dxi.pointer[i * iw + j] }
            }
            s.flops += 4 * Double(m * (cw + iw) * backbone.interactionDim)
        }
    }

    @inline(__always)
    private func reluBackward(_ g: UnsafeMutablePointer<Float>, activations a: UnsafePointer<Float>, count: Int) {
        for i in 0..<count where a[i] <= 0 { g[i] = 0 }
    }

    // MARK: Inference

    /// [h | u | v] for every row of `data` (rows × (H + 2k)): what a head reads of the backbone.
    func hidden(_ data: Impressions) -> FloatBuffer {
        let H = backbone.outputWidth, k = backbone.interactionDim, F = H + 2 * k
        let out = FloatBuffer(count: data.count * F)
        forEachChunk(data.count) { lo, hi, s in
            let rows = forwardBackbone((lo..<hi).map { (data, $0) }, cache: nil, scratch: s)
            for r in 0..<(hi - lo) {
                let dst = out.pointer + (lo + r) * F
                dst.update(from: rows.h + r * H, count: H)
                if let u = rows.u, let v = rows.v {
                    (dst + H).update(from: u + r * k, count: k)
                    (dst + H + k).update(from: v + r * k, count: k)
                }
            }
        }
        return out
    }

    /// Logits of head `head` for every row (output 0).
    func predict(_ data: Impressions, head: Int) -> [Float] {
        let out = FloatBuffer(count: data.count), K = heads[head].output.outputs
        forEachChunk(data.count) { lo, hi, s in
            let rows = forwardBackbone((lo..<hi).map { (data, $0) }, cache: nil, scratch: s)
            let logits = headForward(heads[head], rows, rows: hi - lo, scratch: s)
            for r in 0..<(hi - lo) { out.pointer[lo + r] = logits[r * K] }
        }
        return out.array
    }

    /// Runs `body` over chunks of 1024 rows, spread over the workers.
    private func forEachChunk(_ n: Int, _ body: @Sendable (Int, Int, WorkerScratch) -> Void) {
        let chunk = 1024, chunks = (n + chunk - 1) / chunk
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            var c = w
            while c < chunks {
                body(c * chunk, min(n, (c + 1) * chunk), scratch[w])
                c += workers
            }
        }
    }
}

/// One tensor's optimizer step.
private enum Update: Sendable {
    case table(EmbeddingTable, AdamOptions)
    case layer(Linear, AdamOptions)
    case parameter(Parameter, AdamOptions)
    case sgdTable(EmbeddingTable, Float, Float)
}

/// The backbone's outputs for a block of rows: h (rows × H) and, with towers, u and v (rows × k).
struct BackboneRows {
    let h: UnsafeMutablePointer<Float>
    let u: UnsafeMutablePointer<Float>?, v: UnsafeMutablePointer<Float>?

    /// The same outputs from row `start` on.
    func rows(from start: Int, width H: Int, k: Int) -> BackboneRows {
        BackboneRows(h: h + start * H, u: u.map { $0 + start * k }, v: v.map { $0 + start * k })
    }
}

/// One worker's activations and gradients, reused across steps.
final class WorkerScratch: @unchecked Sendable {
    var xc = FloatBuffer(count: 0), xi = FloatBuffer(count: 0), dxc = FloatBuffer(count: 0), dxi = FloatBuffer(count: 0)
    var u = FloatBuffer(count: 0), v = FloatBuffer(count: 0), du = FloatBuffer(count: 0), dv = FloatBuffer(count: 0)
    var x0 = FloatBuffer(count: 0), dx0 = FloatBuffer(count: 0)
    var acts: [FloatBuffer] = []
    var dPing = FloatBuffer(count: 0), dPong = FloatBuffer(count: 0)
    var dh = FloatBuffer(count: 0), dh2 = FloatBuffer(count: 0), dTmp = FloatBuffer(count: 0)
    var cachedH = FloatBuffer(count: 0)
    var a = FloatBuffer(count: 0), da = FloatBuffer(count: 0), h2 = FloatBuffer(count: 0)
    var tower: [FloatBuffer] = [], dTower: [FloatBuffer] = []
    var logits = FloatBuffer(count: 0), dLogits = FloatBuffer(count: 0)
    var discHidden = FloatBuffer(count: 0), discLogits = FloatBuffer(count: 0), discGrad = FloatBuffer(count: 0)
    var transpose = FloatBuffer(count: 0)
    var loss = 0.0, discLoss = 0.0, flops = 0.0
}
