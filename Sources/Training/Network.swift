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
    /// The two-tower interaction (spec `interaction`): u = user tower(context part of the
    /// layer-0 input), v = item tower(item part), both linear; nil without one.
    let userTower: Linear?, itemTower: Linear?
    var trainable = true {
        didSet {
            tables.forEach { $0.trainable = trainable }
            (layers + towers).forEach { $0.trainable = trainable }
        }
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
        if let k = spec.interaction?.dim {
            userTower = Linear(inputs: spec.contextWidth, outputs: k, gain: 1, workers: workers, rng: &rng)
            itemTower = Linear(inputs: spec.itemWidth, outputs: k, gain: 1, workers: workers, rng: &rng)
        } else {
            userTower = nil; itemTower = nil
        }
    }

    private init(spec: BackboneSpec, tables: [EmbeddingTable], layers: [Linear], userTower: Linear?, itemTower: Linear?) {
        self.spec = spec; self.tables = tables; self.layers = layers
        self.userTower = userTower; self.itemTower = itemTower
    }

    /// A deep copy (e.g. to fine-tune a pretrained backbone while keeping the original).
    func copy(workers: Int) -> BackboneNet {
        BackboneNet(spec: spec, tables: tables.map { EmbeddingTable(vocab: $0.vocab, dim: $0.dim, values: $0.value.array) },
                    layers: layers.map { $0.copy(workers: workers) },
                    userTower: userTower?.copy(workers: workers), itemTower: itemTower?.copy(workers: workers))
    }

    var inputWidth: Int { spec.contextWidth + spec.itemWidth }
    var outputWidth: Int { spec.outputWidth }
    /// k of the towers (0: none).
    var interactionDim: Int { spec.interactionDim }
    var towers: [Linear] { [userTower, itemTower].compactMap { $0 } }

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
        for (name, tower) in [("user_tower", userTower), ("item_tower", itemTower)] {
            guard let tower else { continue }
            out.append(.init(name: "\(name).weight", shape: [tower.outputs, tower.inputs], values: tower.weight.value.array))
            out.append(.init(name: "\(name).bias", shape: [tower.outputs], values: tower.bias.value.array))
        }
        return out
    }
}

/// The trainable adapter head: a = relu(D h + b_D); h' = h + U a + b_U; a ReLU tower; one
/// logit per output (sigmoid at serving time), plus uᵀ A_o v with the backbone's tower vectors
/// when the head has an interaction adapter.
final class HeadNet: @unchecked Sendable {
    let down: Linear, up: Linear
    let tower: [Linear]
    let output: Linear
    /// The per-scene interaction adapter: one k × k matrix per output (outputs × k × k,
    /// row-major), starting at the identity — the sources' interaction; nil: none.
    let interaction: Parameter?
    let interactionDim: Int
    var layers: [Linear] { [down, up] + tower + [output] }

    init(input: Int, bottleneck: Int, tower widths: [Int], outputs: Int, interaction k: Int = 0, baseRate: Double,
         workers: Int, rng: inout Random) {
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
        interactionDim = k
        if k > 0 {
            let identity = (0..<(outputs * k * k)).map { i -> Float in (i % (k * k)) % (k + 1) == 0 ? 1 : 0 }
            let a = Parameter(identity, workers: workers)
            a.anchor = identity  // decay pulls towards "the target interacts like the sources"
            interaction = a
        } else {
            interaction = nil
        }
    }

    private init(down: Linear, up: Linear, tower: [Linear], output: Linear, interaction: Parameter?, interactionDim: Int) {
        self.down = down; self.up = up; self.tower = tower; self.output = output
        self.interaction = interaction; self.interactionDim = interactionDim
    }

    func copy(workers: Int) -> HeadNet {
        let a = interaction.map { p in
            let c = Parameter(p.value.array, workers: workers)
            c.anchor = p.anchor
            return c
        }
        return HeadNet(down: down.copy(workers: workers), up: up.copy(workers: workers),
                       tower: tower.map { $0.copy(workers: workers) }, output: output.copy(workers: workers),
                       interaction: a, interactionDim: interactionDim)
    }

    /// The adapter at zero, decaying towards zero: for a head on an untrained backbone, whose
    /// random towers would otherwise add a random uᵀv to every score (trained on 1 % of the
    /// target, such a model ranked below chance). A's gradient u·vᵀ is not zero, so it moves.
    func startInteractionAtZero() {
        interaction?.value.zero()
        interaction?.anchor = nil
    }

    /// Pulls weight decay towards the current weights (L2-SP fine-tuning from a source head).
    func anchorToCurrentWeights() {
        for l in layers { l.weight.anchor = l.weight.value.array }
        interaction?.anchor = interaction?.value.array
    }

    func tensors() -> [SafeTensorsWriter.Tensor] {
        var out: [SafeTensorsWriter.Tensor] = []
        func add(_ name: String, _ l: Linear) {
            out.append(.init(name: "\(name).weight", shape: [l.outputs, l.inputs], values: l.weight.value.array))
            out.append(.init(name: "\(name).bias", shape: [l.outputs], values: l.bias.value.array))
        }
        add("adapter.down", down); add("adapter.up", up)
        for (j, t) in tower.enumerated() { add("tower.\(j)", t) }
        add("output", output)
        if let interaction {
            out.append(.init(name: "interaction.weight", shape: [output.outputs, interactionDim, interactionDim],
                             values: interaction.value.array))
        }
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
