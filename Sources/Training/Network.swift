import Foundation
import Kernels
import Model

/// The trainable backbone: the served architecture (Proto/MODEL-FORMAT.md) — hashed embedding
/// tables, then a ReLU MLP whose last layer is h.
final class BackboneNet: @unchecked Sendable {
    let spec: BackboneSpec
    /// Context fields then item fields, in spec order.
    let tables: [EmbeddingTable]
    let layers: [Linear]
    var trainable = true {
        didSet { tables.forEach { $0.trainable = trainable }; layers.forEach { $0.trainable = trainable } }
    }

    init(spec: BackboneSpec, workers: Int, rng: inout Random) {
        self.spec = spec
        tables = (spec.contextFields + spec.itemFields).map { EmbeddingTable(vocab: $0.vocab, dim: $0.dim) }
        var width = spec.contextWidth + spec.itemWidth
        var layers: [Linear] = []
        for out in spec.hidden {
            layers.append(Linear(inputs: width, outputs: out, workers: workers, rng: &rng))
            width = out
        }
        self.layers = layers
    }

    private init(spec: BackboneSpec, tables: [EmbeddingTable], layers: [Linear]) {
        self.spec = spec; self.tables = tables; self.layers = layers
    }

    /// A deep copy (e.g. to fine-tune a pretrained backbone while keeping the original).
    func copy(workers: Int) -> BackboneNet {
        BackboneNet(spec: spec, tables: tables.map { EmbeddingTable(vocab: $0.vocab, dim: $0.dim, values: $0.value.array) },
                    layers: layers.map { $0.copy(workers: workers) })
    }

    var inputWidth: Int { spec.contextWidth + spec.itemWidth }
    var outputWidth: Int { spec.outputWidth }

    /// Writes row `r` of `data` as the layer-0 input: context embeddings, context dense, item
    /// embeddings, item dense — the order the server concatenates them in. `dropItemIDs`
    /// writes zeros for the item-side embeddings: what an item never seen in training looks
    /// like at serving time (its rows are zero), so the network learns to rank from content.
    func gatherInput(_ data: Impressions, row r: Int, dropItemIDs: Bool = false, into dst: UnsafeMutablePointer<Float>) {
        var col = 0
        func embed(_ f: Int, _ id: UInt32, drop: Bool = false) {
            let t = tables[f]
            if drop { (dst + col).update(repeating: 0, count: t.dim) }
            else { (dst + col).update(from: t.value.pointer + t.row(of: id) * t.dim, count: t.dim) }
            col += t.dim
        }
        for f in 0..<spec.contextFields.count { embed(f, data.contextIDs[r * data.contextIDWidth + f]) }
        for j in 0..<spec.contextDense { dst[col + j] = data.contextDense[r * data.contextDenseWidth + j] }
        col += spec.contextDense
        for f in 0..<spec.itemFields.count { embed(spec.contextFields.count + f, data.itemIDs[r * data.itemIDWidth + f], drop: dropItemIDs) }
        for j in 0..<spec.itemDense { dst[col + j] = data.itemDense[r * data.itemDenseWidth + j] }
    }

    /// Column of field `f`'s embedding in the layer-0 input, and whether it is an item field.
    func embeddingColumn(_ f: Int) -> (column: Int, isItem: Bool) {
        let c = spec.contextFields.count
        if f < c { return (spec.contextFields[..<f].reduce(0) { $0 + $1.dim }, false) }
        return (spec.contextWidth + spec.itemFields[..<(f - c)].reduce(0) { $0 + $1.dim }, true)
    }

    /// Adds one row's dL/d(input) to the row of field `f`'s table it read (nothing for an
    /// item field whose embedding was dropped).
    @inline(__always)
    func accumulateEmbeddingGradient(field f: Int, column: Int, isItem: Bool, _ data: Impressions, row r: Int,
                                     droppedItemIDs: Bool, _ dx: UnsafePointer<Float>) {
        let t = tables[f]
        if isItem {
            if droppedItemIDs { return }
            t.accumulate(row: t.row(of: data.itemIDs[r * data.itemIDWidth + f - spec.contextFields.count]), dx + column)
        } else {
            t.accumulate(row: t.row(of: data.contextIDs[r * data.contextIDWidth + f]), dx + column)
        }
    }

    /// Checks that `data` has the columns this backbone reads.
    func check(_ data: Impressions, name: String) throws {
        guard data.contextIDWidth == spec.contextFields.count, data.contextDenseWidth == spec.contextDense,
              data.itemIDWidth == spec.itemFields.count, data.itemDenseWidth == spec.itemDense else {
            throw ConfigError("\(name): columns (context ids \(data.contextIDWidth), context dense \(data.contextDenseWidth), item ids \(data.itemIDWidth), item dense \(data.itemDenseWidth)) do not match the backbone (\(spec.contextFields.count), \(spec.contextDense), \(spec.itemFields.count), \(spec.itemDense))")
        }
    }

    func tensors() -> [SafeTensorsWriter.Tensor] {
        var out: [SafeTensorsWriter.Tensor] = []
        for (f, field) in (spec.contextFields + spec.itemFields).enumerated() {
            out.append(.init(name: "embedding.\(field.name)", shape: [field.vocab, field.dim], values: tables[f].value.array))
        }
        for (i, l) in layers.enumerated() {
            out.append(.init(name: "mlp.\(i).weight", shape: [l.outputs, l.inputs], values: l.weight.value.array))
            out.append(.init(name: "mlp.\(i).bias", shape: [l.outputs], values: l.bias.value.array))
        }
        return out
    }
}

/// The trainable adapter head: a = relu(D h + b_D); h' = h + U a + b_U; a ReLU tower; one
/// logit per output (sigmoid at serving time).
final class HeadNet: @unchecked Sendable {
    let down: Linear, up: Linear
    let tower: [Linear]
    let output: Linear
    var layers: [Linear] { [down, up] + tower + [output] }

    init(input: Int, bottleneck: Int, tower widths: [Int], outputs: Int, baseRate: Double, workers: Int, rng: inout Random) {
        down = Linear(inputs: input, outputs: bottleneck, workers: workers, rng: &rng)
        // U starts at zero: the adapter begins as the identity on h (a residual adapter's usual start).
        up = Linear(inputs: bottleneck, outputs: input, weight: [Float](repeating: 0, count: input * bottleneck),
                    bias: [Float](repeating: 0, count: input), workers: workers)
        var width = input, tower: [Linear] = []
        for t in widths { tower.append(Linear(inputs: width, outputs: t, workers: workers, rng: &rng)); width = t }
        self.tower = tower
        // The output bias starts at the logit of the training base rate (from zero, a head
        // trained on a fraction of a percent of the data ranks below chance for many steps).
        // Its weights start at zero, so the untrained head predicts exactly the base rate
        // instead of He-scaled noise that the first epoch would spend unlearning.
        let rate = min(max(baseRate, 1e-4), 1 - 1e-4)
        output = Linear(inputs: width, outputs: outputs, weight: [Float](repeating: 0, count: width * outputs),
                        bias: [Float](repeating: Float(Foundation.log(rate / (1 - rate))), count: outputs), workers: workers)
    }

    private init(down: Linear, up: Linear, tower: [Linear], output: Linear) {
        self.down = down; self.up = up; self.tower = tower; self.output = output
    }

    func copy(workers: Int) -> HeadNet {
        HeadNet(down: down.copy(workers: workers), up: up.copy(workers: workers),
                tower: tower.map { $0.copy(workers: workers) }, output: output.copy(workers: workers))
    }

    /// Pulls weight decay towards the current weights (L2-SP fine-tuning from a source head).
    func anchorToCurrentWeights() { for l in layers { l.weight.anchor = l.weight.value.array } }

    func tensors() -> [SafeTensorsWriter.Tensor] {
        var out: [SafeTensorsWriter.Tensor] = []
        func add(_ name: String, _ l: Linear) {
            out.append(.init(name: "\(name).weight", shape: [l.outputs, l.inputs], values: l.weight.value.array))
            out.append(.init(name: "\(name).bias", shape: [l.outputs], values: l.bias.value.array))
        }
        add("adapter.down", down); add("adapter.up", up)
        for (j, t) in tower.enumerated() { add("tower.\(j)", t) }
        add("output", output)
        return out
    }
}

/// The scene discriminator of method e: h → ReLU layer → one logit per domain (softmax).
/// Trained to tell scenes apart while the backbone receives its gradient reversed.
final class DiscriminatorNet: @unchecked Sendable {
    let hidden: Linear, output: Linear
    let domains: Int
    init(input: Int, hidden width: Int, domains: Int, workers: Int, rng: inout Random) {
        self.domains = domains
        hidden = Linear(inputs: input, outputs: width, workers: workers, rng: &rng)
        output = Linear(inputs: width, outputs: domains, workers: workers, rng: &rng)
    }
    var layers: [Linear] { [hidden, output] }
}
