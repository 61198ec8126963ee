import Foundation
import Model
import Testing

/// Every broken file from Tests/interop/make_bad_models.py is refused with an error that names
/// the file, the problem and (where one is to blame) the tensor — never a crash.
@Suite struct LoaderTests {
    @Test func brokenFilesAreRefusedWithTheirReason() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try runPython("Tests/interop/make_bad_models.py", [dir])
        let expected = try #require(try readJSON(dir + "/expected.json") as? [String: [String: Any]])
        #expect(expected.count >= 16)
        var backbones: [String: Backbone] = [:]
        for suffix in ["", "_interaction"] {
            let backbone = try Backbone(path: dir + "/backbone\(suffix).safetensors")
            _ = try AdapterHead(path: dir + "/head\(suffix).safetensors", backbone: backbone.spec)
            backbones["backbone\(suffix).safetensors"] = backbone
        }
        for (file, spec) in expected.sorted(by: { $0.key < $1.key }) {
            let kind = spec["kind"] as! String
            let goodBackbone = try #require(backbones[spec["backbone"] as! String])
            let anyOf = spec["any_of"] as! [String]
            let tensor = spec["tensor"] as? String
            do {
                if kind == "backbone" {
                    _ = try Backbone(path: dir + "/" + file)
                } else {
                    _ = try AdapterHead(path: dir + "/" + file, backbone: goodBackbone.spec)
                }
                Issue.record("\(file) loaded but should fail with one of \(anyOf)")
            } catch let error as ModelLoadError {
                let text = error.description.lowercased()
                #expect(error.file == file)
                #expect(anyOf.contains { text.contains($0) }, "\(file): '\(error)' lacks any of \(anyOf)")
                if let tensor { #expect(error.tensor == tensor, "\(file): '\(error)' should name tensor \(tensor)") }
            }
        }
    }

    @Test func writerRoundTripsAndHashes() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try DefaultModel.write(to: dir, seed: 11)
        let set = try ModelSet(directory: dir)
        #expect(Set(set.heads.keys) == Set(DefaultModel.scenes))
        #expect(set.backbone.spec == DefaultModel.backboneSpec)
        // Without interaction the specs keep their old keys, so older readers load these files.
        let spec = try #require(try SafeTensorsFile(path: dir + "/heads/apparel.safetensors").metadata["scenescore.spec"])
        #expect(!spec.contains("interaction"))
        // Deterministic by seed: a second build is byte-identical.
        let other = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: other) }
        try DefaultModel.write(to: other, seed: 11)
        for f in ["backbone.safetensors", "heads/apparel.safetensors"] {
            #expect(FileManager.default.contentsEqual(atPath: dir + "/" + f, andPath: other + "/" + f))
        }
        // No temporary files are left beside the model.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir + "/heads").filter { $0.contains(".tmp-") }
        #expect(leftovers.isEmpty)
    }

    @Test func writerAddsTheInteraction() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try DefaultModel.write(to: dir, seed: 11, interaction: 16)
        let set = try ModelSet(directory: dir)
        #expect(set.backbone.spec.interaction == InteractionSpec(kind: "two_tower", dim: 16))
        #expect(set.heads.values.allSatisfy { $0.spec.interaction == 16 })
        // The towers come after the MLP in the generator: the MLP is the plain model's.
        let plain = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: plain) }
        try DefaultModel.write(to: plain, seed: 11)
        let a = try SafeTensorsFile(path: dir + "/backbone.safetensors"), b = try SafeTensorsFile(path: plain + "/backbone.safetensors")
        #expect(Set(a.tensors.keys).subtracting(b.tensors.keys) == ["user_tower.weight", "user_tower.bias", "item_tower.weight", "item_tower.bias"])
        #expect(try a.floats("mlp.1.weight", shape: [128, 256]) == b.floats("mlp.1.weight", shape: [128, 256]))
        try runPython("Tests/interop/check_model_file.py", [dir + "/backbone.safetensors", "backbone"])
        try runPython("Tests/interop/check_model_file.py", [dir + "/heads/apparel.safetensors", "head"])
    }

    @Test func pythonSafetensorsReadsOurFiles() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try DefaultModel.writeHead(DefaultModel.headSpec(scene: "beauty"), seed: 5, to: dir + "/h.safetensors")
        // The reference loader checks the container, the metadata and the hash.
        try runPython("Tests/interop/check_model_file.py", [dir + "/h.safetensors", "head"])
    }

    @Test func truncationAtEveryRegionFailsCleanly() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/h.safetensors"
        try DefaultModel.writeHead(HeadSpec(scene: "x", version: "x-1", input: 8, bottleneck: 2, tower: [3], outputs: ["click"]), seed: 1, to: path)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        for cut in [0, 4, 7, 8, 9, 20, bytes.count / 2, bytes.count - 1] {
            try bytes.prefix(cut).write(to: URL(fileURLWithPath: path + ".cut"))
            #expect(throws: ModelLoadError.self) {
                _ = try AdapterHead(path: path + ".cut", backbone: BackboneSpec(contextFields: [], contextDense: 1, itemFields: [], itemDense: 1, hidden: [8]))
            }
        }
    }
}
