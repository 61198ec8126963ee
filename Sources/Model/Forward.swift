import Kernels

/// One request's features, read in place from the request body: little-endian u32 ids and
/// f32 dense values, at any alignment.
public struct ScoringInput {
    public let candidates: Int
    public let contextIDs: UnsafeRawBufferPointer
    public let contextDense: UnsafeRawBufferPointer
    public let itemIDs: UnsafeRawBufferPointer
    public let itemDense: UnsafeRawBufferPointer

    public init(candidates: Int, contextIDs: UnsafeRawBufferPointer, contextDense: UnsafeRawBufferPointer,
                itemIDs: UnsafeRawBufferPointer, itemDense: UnsafeRawBufferPointer) {
        self.candidates = candidates
        self.contextIDs = contextIDs
        self.contextDense = contextDense
        self.itemIDs = itemIDs
        self.itemDense = itemDense
    }
}

/// Consecutive requests of a cross-scene batch that one head scores.
public struct HeadRun {
    public let head: AdapterHead
    public let requests: Int
    public init(head: AdapterHead, requests: Int) { self.head = head; self.requests = requests }
}

/// A request whose feature counts don't match the backbone's schema.
public struct SchemaMismatch: Error, CustomStringConvertible, Equatable, Sendable {
    /// e.g. "context has 2 ids", "candidates have 12 dense values"
    public let what: String
    /// e.g. "expects 1"
    public let expected: String
    public var description: String { "\(what), \(expected)" }
}

/// Scratch memory for forward passes, grown on demand and reused, so a request allocates
/// nothing once the workspace has seen its size. One per thread; not shareable.
public final class ForwardWorkspace {
    private var buffers: [UnsafeMutablePointer<Float>] = []
    private var capacities: [Int] = []

    public init() {}

    deinit { buffers.forEach { $0.deallocate() } }

    /// Buffer `slot` with room for at least `count` floats (contents undefined).
    func buffer(_ slot: Int, count: Int) -> UnsafeMutablePointer<Float> {
        while buffers.count <= slot {
            buffers.append(UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64).bindMemory(to: Float.self, capacity: 16))
            capacities.append(16)
        }
        if capacities[slot] < count {
            buffers[slot].deallocate()
            let grown = max(count, capacities[slot] * 2)
            buffers[slot] = UnsafeMutableRawPointer.allocate(byteCount: grown * 4, alignment: 64).bindMemory(to: Float.self, capacity: grown)
            capacities[slot] = grown
        }
        return buffers[slot]
    }
}

/// The forward pass of backbone + head (Proto/MODEL-FORMAT.md, "Forward pass").
public enum Forward {
    /// Checks `input`'s counts against the backbone's schema.
    public static func validate(_ input: ScoringInput, against spec: BackboneSpec) throws(SchemaMismatch) {
        let contextIDs = input.contextIDs.count / 4, contextDense = input.contextDense.count / 4
        if contextIDs != spec.contextFields.count {
            throw SchemaMismatch(what: "context has \(contextIDs) ids", expected: "expects \(spec.contextFields.count) (\(spec.contextFields.map(\.name).joined(separator: ", ")))")
        }
        if contextDense != spec.contextDense {
            throw SchemaMismatch(what: "context has \(contextDense) dense values", expected: "expects \(spec.contextDense)")
        }
        let n = max(input.candidates, 1)
        let itemIDs = input.itemIDs.count / 4 / n, itemDense = input.itemDense.count / 4 / n
        if itemIDs != spec.itemFields.count {
            throw SchemaMismatch(what: "candidates have \(itemIDs) ids each", expected: "expects \(spec.itemFields.count) (\(spec.itemFields.map(\.name).joined(separator: ", ")))")
        }
        if itemDense != spec.itemDense {
            throw SchemaMismatch(what: "candidates have \(itemDense) dense values each", expected: "expects \(spec.itemDense)")
        }
    }

    /// Scores `input` into `out` (candidates × outputs, row-major). Counts must be valid
    /// (`validate`); this precondition-checks sizes only.
    public static func score(_ input: ScoringInput, backbone: Backbone, head: AdapterHead,
                             workspace ws: ForwardWorkspace, into out: UnsafeMutableBufferPointer<Float>) {
        let n = input.candidates
        guard n > candidatesPerPass else {
            return score(batch: CollectionOfOne(input), backbone: backbone, head: head, workspace: ws, into: out)
        }
        let idStride = 4 * backbone.spec.itemFields.count, denseStride = 4 * backbone.spec.itemDense
        let outputs = head.spec.outputs.count
        precondition(input.itemIDs.count >= n * idStride && input.itemDense.count >= n * denseStride,
                     "score: item sections shorter than the schema")
        precondition(out.count >= n * outputs, "score: output buffer too small")
        // A large request in passes of `candidatesPerPass` candidates: the same rows, the same
        // scores, each pass with the request's context.
        var first = 0
        while first < n {
            let count = min(candidatesPerPass, n - first)
            let pass = ScoringInput(candidates: count, contextIDs: input.contextIDs, contextDense: input.contextDense,
                                    itemIDs: UnsafeRawBufferPointer(rebasing: input.itemIDs[(first * idStride)..<((first + count) * idStride)]),
                                    itemDense: UnsafeRawBufferPointer(rebasing: input.itemDense[(first * denseStride)..<((first + count) * denseStride)]))
            score(batch: CollectionOfOne(pass), backbone: backbone, head: head, workspace: ws,
                  into: UnsafeMutableBufferPointer(rebasing: out[(first * outputs)..<((first + count) * outputs)]))
            first += count
        }
    }

    /// Candidates one pass through the network scores at most. Between layers a pass's
    /// activations (about 2 KiB per candidate for the default model) then stay in L2 rather
    /// than streaming through L3: 1,024 candidates took 936 µs in one pass against 883 in four
    /// (`scenescore bench model`, a Xeon with 2 MiB of L2; per candidate it is flat from 128 to 384).
    /// The context part (one GEMV per pass) is all a pass repeats.
    public static let candidatesPerPass = 256

    /// Scores several requests for the same head in one pass: their candidates are stacked into
    /// one matrix, so every layer is one GEMM with M = all candidates instead of one GEMM per
    /// request. For small requests that is the difference between streaming the weights from
    /// L2 once per request (GEMV, bandwidth-bound) and once per batch. `out` receives each
    /// request's candidates × outputs rows, in order.
    public static func score<C: Collection>(batch inputs: C, backbone: Backbone, head: AdapterHead,
                                            workspace ws: ForwardWorkspace,
                                            into out: UnsafeMutableBufferPointer<Float>) where C.Element == ScoringInput {
        score(batch: inputs, runs: CollectionOfOne(HeadRun(head: head, requests: inputs.count)), backbone: backbone,
              workspace: ws, into: out)
    }

    /// Requests for different heads in one pass (cross-scene batching): the shared backbone runs
    /// once over every candidate, then each head over its own rows. `runs` splits `inputs`, in
    /// order, into consecutive runs of requests scored by one head; `out` receives each request's
    /// candidates × (its head's outputs) rows, in order.
    public static func score<C: Collection, R: Collection>(batch inputs: C, runs: R, backbone: Backbone,
                                                           workspace ws: ForwardWorkspace,
                                                           into out: UnsafeMutableBufferPointer<Float>)
    where C.Element == ScoringInput, R.Element == HeadRun {
        var needed = 0, n = 0, interacting = false
        var remaining = inputs.makeIterator()
        for run in runs {
            for _ in 0..<run.requests { let c = remaining.next()!.candidates; n += c; needed += c * run.head.spec.outputs.count }
            if let adapter = run.head.interaction {
                precondition(adapter.dim == backbone.towers?.dim, "score: head \(run.head.spec.version) needs the backbone's interaction towers of dim \(adapter.dim)")
                interacting = true
            }
        }
        precondition(remaining.next() == nil, "score: runs do not cover the batch")
        precondition(out.count >= needed, "score: output buffer too small")
        if n == 0 { return }
        // The towers only run when some head of the batch reads u and v.
        let b = backboneRows(inputs, candidates: n, backbone: backbone, towers: interacting ? backbone.towers : nil, workspace: ws)
        var request = inputs.startIndex
        var requestIndex = 0, row = 0, outOffset = 0
        for run in runs {
            let first = request, firstIndex = requestIndex
            var rows = 0
            for _ in 0..<run.requests { rows += inputs[request].candidates; inputs.formIndex(after: &request) }
            requestIndex += run.requests
            if rows == 0 { continue }
            var logits: UnsafePointer<Float>?
            if let adapter = run.head.interaction, let t = b.towers {
                logits = interactionLogits(adapter, requests: inputs[first..<request], count: run.requests, rows: rows,
                                           u: t.u + firstIndex * t.dim, v: t.v + row * t.dim, workspace: ws)
            }
            applyHead(run.head, to: b.h + row * b.width, width: b.width, rows: rows, interaction: logits,
                      workspace: ws, into: out.baseAddress! + outOffset)
            row += rows
            outOffset += rows * run.head.spec.outputs.count
        }
    }

    /// What the backbone computed for a batch: h (candidates × width) and, when the towers ran,
    /// u (one row per request) and v (one row per candidate), `dim` wide.
    private struct BackboneRows {
        let h: UnsafeMutablePointer<Float>
        let width: Int
        let towers: (u: UnsafePointer<Float>, v: UnsafePointer<Float>, dim: Int)?
    }

    /// The backbone over every candidate of `inputs`: h in workspace slots 2/3; with `towers`,
    /// u in slot 7 and v in slot 8.
    private static func backboneRows<C: Collection>(_ inputs: C, candidates n: Int, backbone: Backbone,
                                                    towers: InteractionTowers?,
                                                    workspace ws: ForwardWorkspace) -> BackboneRows
    where C.Element == ScoringInput {
        let spec = backbone.spec
        let requests = inputs.count
        let h0 = spec.hidden[0]
        let k = towers?.dim ?? 0
        let u = ws.buffer(7, count: requests * k)

        // Layer 0, context part, once per request: c0[r] = W0[:, context] · context[r] + b0.
        let c0 = ws.buffer(0, count: requests * h0)
        if let l0c = backbone.layer0Context {
            let cw = spec.contextWidth
            let ctx = ws.buffer(1, count: requests * cw)
            let tables = backbone.contextTables, contextDense = spec.contextDense
            for (r, input) in inputs.enumerated() {
                precondition(input.contextIDs.count >= 4 * tables.fieldCount, "score: context ids shorter than the schema")
                if tables.fieldCount > 0 { tables.gather(ids: input.contextIDs.baseAddress!, into: ctx + r * cw) }
                copyFloats(input.contextDense, count: contextDense, into: ctx + r * cw + tables.width)
            }
            GEMM.multiply(ctx, rows: requests, stride: cw, by: l0c, activation: .identity, into: c0, stride: h0)
            // The user tower reads the same context part: u[r] = W_u · context[r] + b_u.
            if let towers { GEMM.multiply(ctx, rows: requests, stride: cw, by: towers.user, activation: .identity, into: u, stride: k) }
        } else {
            for r in 0..<requests { for j in 0..<h0 { c0[r * h0 + j] = backbone.layer0Bias[j] } }
        }

        // Layer 0, item part: each request's rows with its own row of c0 as the bias.
        let iw = spec.itemWidth
        let x = ws.buffer(1, count: n * iw)
        let tables = backbone.itemTables, itemDense = spec.itemDense
        let idBytes = 4 * tables.fieldCount, denseBytes = 4 * itemDense
        var base = 0
        for input in inputs {
            precondition(input.itemIDs.count >= input.candidates * idBytes && input.itemDense.count >= input.candidates * denseBytes,
                         "score: item sections shorter than the schema")
            for c in 0..<input.candidates {
                let row = x + (base + c) * iw
                if idBytes > 0 { tables.gather(ids: input.itemIDs.baseAddress! + c * idBytes, into: row) }
                if denseBytes > 0 {
                    UnsafeMutableRawPointer(row + tables.width).copyMemory(from: input.itemDense.baseAddress! + c * denseBytes, byteCount: denseBytes)
                }
            }
            base += input.candidates
        }
        // The item tower over the same item parts, all candidates in one GEMM: v[n] = W_v · item[n] + b_v.
        let v = ws.buffer(8, count: n * k)
        if let towers { GEMM.multiply(x, rows: n, stride: iw, by: towers.item, activation: .identity, into: v, stride: k) }
        let z = ws.buffer(2, count: n * h0)
        // One GEMM per request: the weights (item width × h0) stay in L1/L2 across the calls, and
        // this reads no n × h0 addend (each candidate's copy of its c0 row), which costs more
        // than the row blocks a request boundary splits. layer0Item carries no bias of its own:
        // b0 is already inside each c0 row.
        var row = 0
        for (r, input) in inputs.enumerated() where input.candidates > 0 {
            GEMM.multiply(x + row * iw, rows: input.candidates, stride: iw, by: backbone.layer0Item, bias: c0 + r * h0,
                          activation: .relu, into: z + row * h0, stride: h0)
            row += input.candidates
        }

        // Layers 1…: h (n × width).
        let (h, width) = reluChain(backbone.layers, input: z, width: h0, rows: n, slots: (3, 2), workspace: ws)
        return BackboneRows(h: h, width: width, towers: towers.map { (UnsafePointer(u), UnsafePointer(v), $0.dim) })
    }

    /// The interaction term of each output's logit for one head run, in workspace slot 10
    /// (rows × outputs): w_o = A_oᵀ u_r for every output and each of the run's `count` requests
    /// (one GEMM, M = requests; slot 9), then v_n · w_o for each of request r's candidates n.
    /// `u` and `v` point at the run's first request's and first candidate's rows.
    private static func interactionLogits<S: Collection>(_ adapter: InteractionAdapter, requests: S, count: Int, rows: Int,
                                                         u: UnsafePointer<Float>, v: UnsafePointer<Float>,
                                                         workspace ws: ForwardWorkspace) -> UnsafePointer<Float>
    where S.Element == ScoringInput {
        let k = adapter.dim, outputs = adapter.outputs, wWidth = outputs * k
        let w = ws.buffer(9, count: count * wWidth)
        GEMM.multiply(u, rows: count, stride: k, by: adapter.packed, activation: .identity, into: w, stride: wWidth)
        let logits = ws.buffer(10, count: rows * outputs)
        var row = 0
        for (r, input) in requests.enumerated() {
            let wr = w + r * wWidth
            for _ in 0..<input.candidates {
                for o in 0..<outputs { logits[row * outputs + o] = dotProduct(v + row * k, wr + o * k, count: k) }
                row += 1
            }
        }
        return UnsafePointer(logits)
    }

    /// A head over `rows` rows of h (overwritten with the adapter's output), scores into `out`;
    /// `interaction` (rows × outputs), when given, joins the output logits before the sigmoid.
    private static func applyHead(_ head: AdapterHead, to h: UnsafeMutablePointer<Float>, width: Int, rows n: Int,
                                  interaction: UnsafePointer<Float>?,
                                  workspace ws: ForwardWorkspace, into out: UnsafeMutablePointer<Float>) {
        // a = relu(D h + bD); h' = h + U a + bU, written over h; then the tower.
        let a = ws.buffer(4, count: n * head.down.n)
        GEMM.multiply(h, rows: n, stride: width, by: head.down, activation: .relu, into: a, stride: head.down.n)
        GEMM.multiply(a, rows: n, stride: head.down.n, by: head.up, addend: h, addendStride: width,
                      activation: .identity, into: h, stride: width)
        let (t, tWidth) = reluChain(head.tower, input: h, width: width, rows: n, slots: (5, 6), workspace: ws)
        if let narrow = head.narrowOutput {
            narrow.sigmoid(t, rows: n, stride: tWidth, addend: interaction, into: out, outStride: narrow.outputs)
        } else if let output = head.output {
            GEMM.multiply(t, rows: n, stride: tWidth, by: output, addend: interaction, addendStride: output.n,
                          activation: .sigmoid, into: out, stride: output.n)
        }
    }

    /// Runs ReLU `layers` over `input` (rows × width), alternating between two workspace slots
    /// (the first must not hold `input`; each layer's input is free once it ran). Returns the
    /// last output and its width.
    @inline(__always)
    static func reluChain(_ layers: [PackedWeights], input: UnsafeMutablePointer<Float>, width: Int, rows n: Int,
                          slots: (Int, Int), workspace ws: ForwardWorkspace) -> (UnsafeMutablePointer<Float>, Int) {
        var current = input, currentWidth = width, slot = slots.0
        for layer in layers {
            let next = ws.buffer(slot, count: n * layer.n)
            GEMM.multiply(current, rows: n, stride: currentWidth, by: layer, activation: .relu, into: next, stride: layer.n)
            slot = slot == slots.0 ? slots.1 : slots.0
            current = next
            currentWidth = layer.n
        }
        return (current, currentWidth)
    }

    @inline(__always)
    static func copyFloats(_ src: UnsafeRawBufferPointer, count: Int, into dst: UnsafeMutablePointer<Float>) {
        precondition(src.count >= count * 4, "score: dense section shorter than the schema")
        if count > 0 { UnsafeMutableRawPointer(dst).copyMemory(from: src.baseAddress!, byteCount: count * 4) }
    }
}
