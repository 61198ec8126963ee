import Foundation
import Model
import Testing

/// Models written by Python (numpy + the safetensors package) load, and the Swift forward pass
/// matches the numpy reference (Tests/interop/scenescore_model.py) within 1e-4 relative.
@Suite struct InteropTests {
    @Test(arguments: ["F32", "F16", "BF16"])
    func swiftForwardMatchesNumpyReference(dtype: String) throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try runPython("Tests/interop/make_interop_case.py", [dir, "--seed", "7", "--dtype", dtype])
        let backbone = try Backbone(path: dir + "/backbone.safetensors")
        let head = try AdapterHead(path: dir + "/head.safetensors", backbone: backbone.spec)
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
                        "case \(name) [\(dtype)] score \(i): swift \(got), numpy \(want)")
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
