import Foundation
import Model
import Testing

/// The two-tower interaction on the served path, at its edges: heads with and without the
/// adapter in one cross-scene batch, N = 0, 1 and odd N, the narrow (≤ 4 outputs) and packed
/// output layers — each score checked against a Double forward pass read straight from the files.
@Suite struct InteractionTests {
    /// Small, odd sizes: k = 9 is one 8-wide vector and a remainder.
    static let k = 9
    static let backboneSpec = BackboneSpec(
        contextFields: [FieldSpec(name: "user", vocab: 97, dim: 5)], contextDense: 3,
        itemFields: [FieldSpec(name: "item", vocab: 101, dim: 7), FieldSpec(name: "brand", vocab: 13, dim: 3)],
        itemDense: 2, hidden: [24, 20], interaction: InteractionSpec(dim: k))

    /// Heads on the backbone above: narrow and packed outputs, with and without interaction.
    static let headSpecs = [
        HeadSpec(scene: "narrow-k", version: "narrow-k-1", input: 20, bottleneck: 4, tower: [11], outputs: ["click", "purchase"], interaction: k),
        HeadSpec(scene: "wide-k", version: "wide-k-1", input: 20, bottleneck: 4, tower: [], outputs: ["a", "b", "c", "d", "e", "f"], interaction: k),
        HeadSpec(scene: "narrow", version: "narrow-1", input: 20, bottleneck: 4, tower: [11], outputs: ["click", "purchase", "cart"]),
        HeadSpec(scene: "wide", version: "wide-1", input: 20, bottleneck: 3, tower: [13], outputs: ["a", "b", "c", "d", "e"]),
    ]

    let dir: String
    let backbone: Backbone
    let heads: [AdapterHead]
    let references: [ReferenceModel]

    init() throws {
        dir = try makeTemporaryDirectory()
        try DefaultModel.writeBackbone(Self.backboneSpec, seed: 21, to: dir + "/backbone.safetensors")
        backbone = try Backbone(path: dir + "/backbone.safetensors")
        var heads: [AdapterHead] = [], references: [ReferenceModel] = []
        for (i, spec) in Self.headSpecs.enumerated() {
            let path = dir + "/\(spec.scene).safetensors"
            try DefaultModel.writeHead(spec, seed: 30 + UInt64(i), to: path)
            heads.append(try AdapterHead(path: path, backbone: Self.backboneSpec))
            references.append(try ReferenceModel(backbone: dir + "/backbone.safetensors", head: path))
        }
        self.heads = heads
        self.references = references
        try? FileManager.default.removeItem(atPath: dir)  // everything is loaded
    }

    @Test func singleRequestsMatchTheReference() throws {
        let ws = ForwardWorkspace()
        var seed: UInt32 = 1
        for (head, reference) in zip(heads, references) {
            for n in [1, 2, 3, 7, 33] {
                let request = TestRequest(spec: Self.backboneSpec, candidates: n, seed: &seed)
                let got = score([request], runs: [(head, 1)], workspace: ws)
                expectClose(got, reference.scores(request), "\(head.spec.scene) n=\(n)")
            }
        }
    }

    @Test func crossSceneBatchMixesHeadsWithAndWithoutInteraction() throws {
        // Runs of 1–3 requests over every head, with empty requests and an all-empty run between.
        let plan: [(head: Int, sizes: [Int])] = [(0, [1, 0, 3]), (2, [17]), (1, [5, 2]), (0, [0]), (3, [1, 64, 0]),
                                                 (1, [1]), (2, [4, 9]), (0, [33])]
        var seed: UInt32 = 7
        let requests = plan.flatMap { run in run.sizes.map { TestRequest(spec: Self.backboneSpec, candidates: $0, seed: &seed) } }
        let ws = ForwardWorkspace()
        let got = score(requests, runs: plan.map { (heads[$0.head], $0.sizes.count) }, workspace: ws)
        var expected: [Double] = [], alone: [Float] = []
        var r = 0
        for run in plan {
            for _ in run.sizes {
                expected += references[run.head].scores(requests[r])
                alone += score([requests[r]], runs: [(heads[run.head], 1)], workspace: ws)
                r += 1
            }
        }
        expectClose(got, expected, "batch")
        // Row tiles differ between the two runs, so accumulation order (not math) may differ.
        for (i, (b, a)) in zip(got, alone).enumerated() {
            #expect(abs(b - a) <= 1e-5 * max(abs(a), 1e-3), "score \(i): batch \(b), alone \(a)")
        }
    }

    @Test func batchOfHeadsWithoutInteractionIgnoresTheTowers() throws {
        var seed: UInt32 = 3
        let requests = [3, 1, 8].map { TestRequest(spec: Self.backboneSpec, candidates: $0, seed: &seed) }
        let got = score(requests, runs: [(heads[2], 2), (heads[3], 1)], workspace: ForwardWorkspace())
        expectClose(got, references[2].scores(requests[0]) + references[2].scores(requests[1]) + references[3].scores(requests[2]),
                    "plain heads")
    }

    @Test func noCandidatesWritesNothing() throws {
        var seed: UInt32 = 5
        let requests = [0, 0].map { TestRequest(spec: Self.backboneSpec, candidates: $0, seed: &seed) }
        #expect(score(requests, runs: [(heads[0], 1), (heads[1], 1)], workspace: ForwardWorkspace()).isEmpty)
    }

    @Test func headMustMatchTheBackbonesTowers() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var spec = Self.headSpecs[0]
        spec.interaction = Self.k + 1
        try DefaultModel.writeHead(spec, seed: 1, to: dir + "/h.safetensors")
        let mismatch = #expect(throws: ModelLoadError.self) { try AdapterHead(path: dir + "/h.safetensors", backbone: Self.backboneSpec) }
        #expect(mismatch?.problem == "spec interaction 10 does not match the backbone's interaction dim 9")
        var plain = Self.backboneSpec
        plain.interaction = nil
        let noTowers = #expect(throws: ModelLoadError.self) { try AdapterHead(path: dir + "/h.safetensors", backbone: plain) }
        #expect(noTowers?.problem == "spec interaction 10 needs a backbone with interaction towers; this backbone has none")
        // Towers in a file whose spec does not declare them are refused, not ignored.
        try DefaultModel.writeBackbone(Self.backboneSpec, seed: 2, to: dir + "/b.safetensors")
        let file = try SafeTensorsFile(path: dir + "/b.safetensors")
        let tensors = try file.tensors.values.map { SafeTensorsWriter.Tensor(name: $0.name, shape: $0.shape, values: try file.floats($0.name, shape: $0.shape)) }
        try SafeTensorsWriter.write(tensors, metadata: try ModelMetadata.make(kind: "backbone", spec: plain, training: ""), to: dir + "/plain.safetensors")
        let extra = #expect(throws: ModelLoadError.self) { try Backbone(path: dir + "/plain.safetensors") }
        #expect(extra?.tensor == "item_tower.bias" && extra?.problem.contains("unexpected tensor") == true)
    }

    /// Scores `requests` in one pass, split into runs of (head, request count).
    func score(_ requests: [TestRequest], runs: [(AdapterHead, Int)], workspace ws: ForwardWorkspace) -> [Float] {
        var arena: [UInt8] = []
        var spans: [[Range<Int>]] = []
        for r in requests {
            func add(_ bytes: UnsafeRawBufferPointer) -> Range<Int> { let s = arena.count; arena += bytes; return s..<arena.count }
            spans.append([r.contextIDs.withUnsafeBytes(add), r.contextDense.withUnsafeBytes(add),
                          r.itemIDs.withUnsafeBytes(add), r.itemDense.withUnsafeBytes(add)])
        }
        var counts = requests.map(\.candidates).makeIterator()
        let total = runs.reduce(0) { sum, run in sum + (0..<run.1).reduce(0) { s, _ in s + counts.next()! } * run.0.spec.outputs.count }
        var out = [Float](repeating: -1, count: total)
        arena.withUnsafeBytes { raw in
            let inputs = zip(spans, requests).map { s, r in
                ScoringInput(candidates: r.candidates, contextIDs: UnsafeRawBufferPointer(rebasing: raw[s[0]]),
                             contextDense: UnsafeRawBufferPointer(rebasing: raw[s[1]]),
                             itemIDs: UnsafeRawBufferPointer(rebasing: raw[s[2]]), itemDense: UnsafeRawBufferPointer(rebasing: raw[s[3]]))
            }
            out.withUnsafeMutableBufferPointer {
                Forward.score(batch: inputs, runs: runs.map { HeadRun(head: $0.0, requests: $0.1) }, backbone: backbone, workspace: ws, into: $0)
            }
        }
        return out
    }

    func expectClose(_ got: [Float], _ want: [Double], _ what: String) {
        #expect(got.count == want.count, "\(what): \(got.count) scores, \(want.count) expected")
        for (i, (g, w)) in zip(got, want).enumerated() {
            #expect(abs(Double(g) - w) <= 1e-4 * abs(w) + 1e-6, "\(what) score \(i): forward \(g), reference \(w)")
        }
    }
}

/// One request's features, drawn from a small LCG.
struct TestRequest {
    let candidates: Int
    let contextIDs: [UInt32], contextDense: [Float], itemIDs: [UInt32], itemDense: [Float]

    init(spec: BackboneSpec, candidates n: Int, seed: inout UInt32) {
        func next() -> UInt32 { seed = seed &* 1_664_525 &+ 1_013_904_223; return seed }
        func dense() -> Float { Float(next() % 2000) / 1000 - 1 }
        candidates = n
        contextIDs = spec.contextFields.map { _ in next() }
        contextDense = (0..<spec.contextDense).map { _ in dense() }
        itemIDs = (0..<(n * spec.itemFields.count)).map { _ in next() }
        itemDense = (0..<(n * spec.itemDense)).map { _ in dense() }
    }
}

/// The forward pass of Proto/MODEL-FORMAT.md in Double, one candidate at a time, straight from
/// a backbone and a head file's tensors: no packing, no kernel, no context/item split.
struct ReferenceModel {
    let backbone: BackboneSpec
    let head: HeadSpec
    let tensors: [String: [Float]]

    init(backbone backbonePath: String, head headPath: String) throws {
        var tensors: [String: [Float]] = [:]
        var specs: [String: String] = [:]
        for path in [backbonePath, headPath] {
            let file = try SafeTensorsFile(path: path)
            for (name, info) in file.tensors { tensors[name] = try file.floats(name, shape: info.shape) }
            specs[file.metadata["scenescore.kind"]!] = file.metadata["scenescore.spec"]!
        }
        backbone = try JSONDecoder().decode(BackboneSpec.self, from: Data(specs["backbone"]!.utf8))
        head = try JSONDecoder().decode(HeadSpec.self, from: Data(specs["head"]!.utf8))
        self.tensors = tensors
    }

    /// candidates × outputs scores, row-major.
    func scores(_ r: TestRequest) -> [Double] {
        func row(_ field: FieldSpec, _ id: UInt32) -> [Double] {
            let start = Int(fmix32(id) % UInt32(field.vocab)) * field.dim
            return tensors["embedding.\(field.name)"]![start..<(start + field.dim)].map(Double.init)
        }
        func linear(_ name: String, _ x: [Double], relu: Bool) -> [Double] {
            let w = tensors[name + ".weight"]!, b = tensors[name + ".bias"]!
            return b.indices.map { o in
                let y = x.indices.reduce(Double(b[o])) { $0 + Double(w[o * x.count + $1]) * x[$1] }
                return relu ? max(y, 0) : y
            }
        }
        var context: [Double] = []
        for (f, field) in backbone.contextFields.enumerated() { context += row(field, r.contextIDs[f]) }
        context += r.contextDense.map(Double.init)
        var out: [Double] = []
        for n in 0..<r.candidates {
            var item: [Double] = []
            for (g, field) in backbone.itemFields.enumerated() { item += row(field, r.itemIDs[n * backbone.itemFields.count + g]) }
            item += r.itemDense[(n * backbone.itemDense)..<((n + 1) * backbone.itemDense)].map(Double.init)
            var z = context + item
            for i in backbone.hidden.indices { z = linear("mlp.\(i)", z, relu: true) }
            let a = linear("adapter.down", z, relu: true)
            var t = zip(z, linear("adapter.up", a, relu: false)).map { $0 + $1 }
            for j in head.tower.indices { t = linear("tower.\(j)", t, relu: true) }
            var logits = linear("output", t, relu: false)
            if head.interaction > 0 {
                let k = head.interaction, matrices = tensors["interaction.weight"]!
                let u = linear("user_tower", context, relu: false), v = linear("item_tower", item, relu: false)
                for o in logits.indices {
                    for i in 0..<k { for j in 0..<k { logits[o] += u[i] * Double(matrices[(o * k + i) * k + j]) * v[j] } }
                }
            }
            out += logits.map { 1 / (1 + Foundation.exp(-$0)) }
        }
        return out
    }
}
