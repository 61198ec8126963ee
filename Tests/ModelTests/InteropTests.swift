import Foundation
import Model
import Testing

/// Models written by Python (numpy + the safetensors package) load, and the Swift forward pass
/// matches the numpy reference (Tests/interop/scenescore_model.py) within 1e-4 relative — with
/// and without the two-tower interaction, on the narrow (2 outputs) and packed (6) output paths.
@Suite struct InteropTests {
    @Test(arguments: [["--dtype", "F32"], ["--dtype", "F16"], ["--dtype", "BF16"],
                      ["--dtype", "F32", "--interaction", "12"], ["--dtype", "F32", "--interaction", "12", "--outputs", "6"],
                      ["--dtype", "BF16", "--interaction", "12", "--outputs", "6"]])
    func swiftForwardMatchesNumpyReference(options: [String]) throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try runPython("Tests/interop/make_interop_case.py", [dir, "--seed", "7"] + options)
        let backbone = try Backbone(path: dir + "/backbone.safetensors")
        let head = try AdapterHead(path: dir + "/head.safetensors", backbone: backbone.spec)
        #expect(head.spec.interaction == (options.contains("--interaction") ? 12 : 0))
        let cases = try #require(try readJSON(dir + "/cases.json") as? [[String: Any]])
        #expect(cases.count >= 5)
        let workspace = ForwardWorkspace()
        for c in cases {
            let name = c["name"] as? String ?? "?"
            let ctxIDs = (c["context_ids"] as! [NSNumber]).map { $0.uint32Value }
            let ctxDense = (c["context_dense"] as! [NSNumber]).map { $0.floatValue }
            let itemIDs = (c["item_ids"] as! [[NSNumber]]).flatMap { $0.map(\.uint32Value) }
            let itemDense = (c["item_dense"] as! [[NSNumber]]).flatMap { $0.map(\.floatValue) }
            let expected = (c["scores"] as! [[NSNumber]]).flatMap { $0.map(\.doubleValue) }
            let n = (c["item_ids"] as! [Any]).count
            var out = [Float](repeating: -1, count: n * head.spec.outputs.count)
            ctxIDs.withUnsafeBytes { ci in ctxDense.withUnsafeBytes { cd in
                itemIDs.withUnsafeBytes { ii in itemDense.withUnsafeBytes { id in
                    let input = ScoringInput(candidates: n, contextIDs: ci, contextDense: cd, itemIDs: ii, itemDense: id)
                    #expect(throws: Never.self) { try Forward.validate(input, against: backbone.spec) }
                    out.withUnsafeMutableBufferPointer { Forward.score(input, backbone: backbone, head: head, workspace: workspace, into: $0) }
                }}
            }}
            #expect(out.count == expected.count)
            for (i, (got, want)) in zip(out, expected).enumerated() {
                #expect(abs(Double(got) - want) <= 1e-4 * abs(want) + 1e-7,
                        "case \(name) [\(options.joined(separator: " "))] score \(i): swift \(got), numpy \(want)")
            }
        }
    }

    @Test func schemaMismatchIsNamed() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try runPython("Tests/interop/make_interop_case.py", [dir])
        let backbone = try Backbone(path: dir + "/backbone.safetensors")
        let ids: [UInt32] = [1], dense: [Float] = [0, 0, 0]
        ids.withUnsafeBytes { i in dense.withUnsafeBytes { d in
            let input = ScoringInput(candidates: 1, contextIDs: i, contextDense: d, itemIDs: i, itemDense: d)
            #expect(throws: SchemaMismatch.self) { try Forward.validate(input, against: backbone.spec) }
            do { try Forward.validate(input, against: backbone.spec) } catch {
                #expect("\(error)".contains("context has 1 ids"), "\(error)")
            }
        }}
    }
}

/// Scoring several requests in one batch gives each request the scores it gets alone.
@Suite struct BatchTests {
    @Test func batchMatchesOneByOne() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try DefaultModel.write(to: dir, seed: 3)
        let set = try ModelSet(directory: dir)
        let spec = set.backbone.spec
        let head = try #require(set.heads["beauty"])
        let k = head.spec.outputs.count
        var seed: UInt32 = 12345
        func next() -> UInt32 { seed = seed &* 1_664_525 &+ 1_013_904_223; return seed }
        let sizes = [1, 3, 1, 17, 2, 64, 1]
        let requests: [(ci: [UInt32], cd: [Float], ii: [UInt32], id: [Float])] = sizes.map { n in
            ((0..<spec.contextFields.count).map { _ in next() },
             (0..<spec.contextDense).map { _ in Float(next() % 1000) / 500 - 1 },
             (0..<(n * spec.itemFields.count)).map { _ in next() },
             (0..<(n * spec.itemDense)).map { _ in Float(next() % 1000) / 500 - 1 })
        }
        let ws = ForwardWorkspace()
        // One by one.
        var expected: [Float] = []
        for (r, n) in zip(requests, sizes) {
            var out = [Float](repeating: 0, count: n * k)
            r.ci.withUnsafeBytes { a in r.cd.withUnsafeBytes { b in r.ii.withUnsafeBytes { c in r.id.withUnsafeBytes { d in
                out.withUnsafeMutableBufferPointer {
                    Forward.score(ScoringInput(candidates: n, contextIDs: a, contextDense: b, itemIDs: c, itemDense: d),
                                  backbone: set.backbone, head: head, workspace: ws, into: $0)
                }
            }}}}
            expected += out
        }
        // As one batch: copy every request into one arena so all views live at once.
        var arena: [UInt8] = []
        var spans: [(Range<Int>, Range<Int>, Range<Int>, Range<Int>)] = []
        for r in requests {
            func add(_ bytes: UnsafeRawBufferPointer) -> Range<Int> { let s = arena.count; arena += bytes; return s..<arena.count }
            let a = r.ci.withUnsafeBytes(add), b = r.cd.withUnsafeBytes(add), c = r.ii.withUnsafeBytes(add), d = r.id.withUnsafeBytes(add)
            spans.append((a, b, c, d))
        }
        var batched = [Float](repeating: -1, count: expected.count)
        arena.withUnsafeBytes { raw in
            let inputs = zip(spans, sizes).map { s, n in
                ScoringInput(candidates: n, contextIDs: UnsafeRawBufferPointer(rebasing: raw[s.0]),
                             contextDense: UnsafeRawBufferPointer(rebasing: raw[s.1]),
                             itemIDs: UnsafeRawBufferPointer(rebasing: raw[s.2]), itemDense: UnsafeRawBufferPointer(rebasing: raw[s.3]))
            }
            batched.withUnsafeMutableBufferPointer { Forward.score(batch: inputs, backbone: set.backbone, head: head, workspace: ws, into: $0) }
        }
        for (i, (got, want)) in zip(batched, expected).enumerated() {
            // Row tiles differ between the two runs, so accumulation order (not math) may differ.
            #expect(abs(got - want) <= 1e-5 * max(abs(want), 1e-3), "score \(i): batch \(got), alone \(want)")
        }
    }

    /// A request larger than one pass (`Forward.candidatesPerPass`) is scored in passes: every
    /// candidate gets the score it gets in a request of its own (with the two-tower interaction
    /// too, whose user tower each pass recomputes).
    @Test(arguments: [0, 8])
    func largeRequestInPassesMatchesItsCandidatesAlone(interaction: Int) throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try DefaultModel.write(to: dir, seed: 5, interaction: interaction)
        let set = try ModelSet(directory: dir)
        let spec = set.backbone.spec
        let head = try #require(set.heads["beauty"])
        #expect(head.spec.interaction == interaction)
        let k = head.spec.outputs.count
        let n = 2 * Forward.candidatesPerPass + 37
        var seed: UInt32 = 777
        func next() -> UInt32 { seed = seed &* 1_664_525 &+ 1_013_904_223; return seed }
        let ci = (0..<spec.contextFields.count).map { _ in next() }
        let cd = (0..<spec.contextDense).map { _ in Float(next() % 1000) / 500 - 1 }
        let ii = (0..<(n * spec.itemFields.count)).map { _ in next() }
        let id = (0..<(n * spec.itemDense)).map { _ in Float(next() % 1000) / 500 - 1 }
        let ws = ForwardWorkspace()
        var whole = [Float](repeating: -1, count: n * k), alone = [Float](repeating: -2, count: n * k)
        ci.withUnsafeBytes { a in cd.withUnsafeBytes { b in ii.withUnsafeBytes { c in id.withUnsafeBytes { d in
            whole.withUnsafeMutableBufferPointer {
                Forward.score(ScoringInput(candidates: n, contextIDs: a, contextDense: b, itemIDs: c, itemDense: d),
                              backbone: set.backbone, head: head, workspace: ws, into: $0)
            }
            let idBytes = 4 * spec.itemFields.count, denseBytes = 4 * spec.itemDense
            alone.withUnsafeMutableBufferPointer { out in
                for j in 0..<n {
                    let one = ScoringInput(candidates: 1, contextIDs: a, contextDense: b,
                                           itemIDs: UnsafeRawBufferPointer(rebasing: c[(j * idBytes)..<((j + 1) * idBytes)]),
                                           itemDense: UnsafeRawBufferPointer(rebasing: d[(j * denseBytes)..<((j + 1) * denseBytes)]))
                    Forward.score(one, backbone: set.backbone, head: head, workspace: ws,
                                  into: UnsafeMutableBufferPointer(rebasing: out[(j * k)..<((j + 1) * k)]))
                }
            }
        }}}}
        for (i, (got, want)) in zip(whole, alone).enumerated() {
            #expect(abs(got - want) <= 1e-5 * max(abs(want), 1e-3), "candidate \(i / k): in passes \(got), alone \(want)")
        }
    }
}
