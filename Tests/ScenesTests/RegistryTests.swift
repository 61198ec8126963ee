import Foundation
import Model
import Testing
@testable import Scenes

/// The registry and its state directory, in process: versions, labels, canary routing,
/// conflicts, refusals that change nothing, and restarts that come back to the committed state.
@Suite(.serialized) struct RegistryTests {
    static let spec = BackboneSpec(contextFields: [FieldSpec(name: "user", vocab: 97, dim: 4)], contextDense: 2,
                                   itemFields: [FieldSpec(name: "item", vocab: 101, dim: 4)], itemDense: 3, hidden: [24, 16])

    /// A temporary model directory (backbone + one head) and state directory.
    final class World {
        let root = NSTemporaryDirectory() + "scenescore-registry-" + UUID().uuidString
        var modelDir: String { root + "/model" }
        var stateDir: String { root + "/state" }
        let backbone: Backbone

        init() throws {
            try FileManager.default.createDirectory(atPath: root + "/model/heads", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: root + "/plugins", withIntermediateDirectories: true)
            try DefaultModel.writeBackbone(RegistryTests.spec, seed: 1, to: root + "/model/backbone.safetensors")
            try DefaultModel.writeHead(DefaultModel.headSpec(scene: "apparel", input: 16), seed: 2, to: root + "/model/heads/apparel.safetensors")
            backbone = try Backbone(path: root + "/model/backbone.safetensors")
        }

        deinit { try? FileManager.default.removeItem(atPath: root) }

        func open() throws -> (SceneRegistry, StateDirectoryStore) {
            let store = try StateDirectoryStore(root: stateDir, backboneHash: backbone.contentHash)
            let registry = SceneRegistry()
            let failures = try registry.open(store: store, backbone: backbone, pluginDirectory: root + "/plugins",
                                             keepVersions: 3, seedDirectory: modelDir)
            #expect(failures.isEmpty)
            return (registry, store)
        }

        func head(scene: String, version: String, seed: UInt64, input: Int = 16) throws -> [UInt8] {
            var spec = DefaultModel.headSpec(scene: scene, input: input)
            spec.version = version
            let path = root + "/head-\(UUID().uuidString).safetensors"
            try DefaultModel.writeHead(spec, seed: seed, to: path)
            defer { unlink(path) }
            return Array(FileManager.default.contents(atPath: path)!)
        }

        /// Every file under the state directory with its bytes.
        func stateFiles() -> [String: Data] {
            var out: [String: Data] = [:]
            let e = FileManager.default.enumerator(atPath: stateDir)!
            while let path = e.nextObject() as? String {
                if let data = FileManager.default.contents(atPath: stateDir + "/" + path), !isDirectory(stateDir + "/" + path) { out[path] = data }
            }
            return out
        }

        private func isDirectory(_ path: String) -> Bool {
            var dir: ObjCBool = false
            return FileManager.default.fileExists(atPath: path, isDirectory: &dir) && dir.boolValue
        }
    }

    @Test func seedsFromTheModelDirectoryOnce() throws {
        let world = try World()
        let (registry, _) = try world.open()
        #expect(registry.snapshot?.scenes["apparel"]?.stable.version == "apparel-1")
        try registry.remove(scene: "apparel", expectedGeneration: nil)
        let (reopened, _) = try world.open()
        #expect(reopened.snapshot?.scenes.isEmpty == true, "a removed seeded scene must not come back")
    }

    @Test func pushLabelsRollbackAndRestart() throws {
        let world = try World()
        let (registry, _) = try world.open()
        var record = try registry.register(scene: "shoes", plugin: nil, pluginConfig: "{}", head: try world.head(scene: "shoes", version: "s1", seed: 3))
        #expect(record.generation == 1 && record.stable == "s1")
        record = try registry.push(scene: "shoes", head: try world.head(scene: "shoes", version: "s2", seed: 4), label: .stable,
                                   canaryShare: nil, plugin: nil, expectedGeneration: 1)
        #expect(record.stable == "s2" && record.generation == 2)
        record = try registry.push(scene: "shoes", head: try world.head(scene: "shoes", version: "s3", seed: 5), label: .canary,
                                   canaryShare: 0.25, plugin: nil, expectedGeneration: nil)
        let served = try #require(registry.snapshot?.scenes["shoes"])
        #expect(served.stable.version == "s2" && served.canary?.version == "s3" && served.canaryShare == 0.25)
        // Canary routing is a pure function of the request id, at the configured share.
        var canaries = 0
        for id in UInt64(0)..<20_000 where served.version(for: id).version == "s3" {
            canaries += 1
            #expect(CanaryRouting.choosesCanary(requestID: id, share: 0.25))
        }
        #expect(abs(Double(canaries) / 20_000 - 0.25) < 0.02)

        record = try registry.rollback(scene: "shoes", to: nil, expectedGeneration: nil)
        #expect(record.stable == "s1")
        record = try registry.setLabels(scene: "shoes", stable: nil, canary: .some(nil), canaryShare: nil, expectedGeneration: nil)
        #expect(record.canary == nil && registry.snapshot?.scenes["shoes"]?.canary == nil)

        let before = world.stateFiles()
        let (reopened, _) = try world.open()
        #expect(reopened.record("shoes") == record)
        #expect(reopened.snapshot?.scenes["shoes"]?.stable.version == "s1")
        #expect(world.stateFiles() == before, "opening must not change a consistent state directory")
    }

    @Test func refusalsChangeNothing() throws {
        let world = try World()
        let (registry, _) = try world.open()
        _ = try registry.register(scene: "shoes", plugin: nil, pluginConfig: "{}", head: try world.head(scene: "shoes", version: "s1", seed: 3))
        let files = world.stateFiles()
        let serving = registry.snapshot?.scenes["shoes"]?.stable

        func refused(_ kind: RegistryError.Kind, _ body: () throws -> Void) {
            #expect(throws: RegistryError.self) { try body() }
            do { try body() } catch let error as RegistryError { #expect(error.kind == kind, "\(error)") } catch {}
            #expect(world.stateFiles() == files)
            #expect(registry.snapshot?.scenes["shoes"]?.stable === serving)
        }
        let good = try world.head(scene: "shoes", version: "s2", seed: 4)
        refused(.invalid) { _ = try registry.push(scene: "shoes", head: Array(good.prefix(good.count / 2)), label: .stable, canaryShare: nil, plugin: nil, expectedGeneration: nil) }
        refused(.invalid) { _ = try registry.push(scene: "shoes", head: [UInt8](repeating: 7, count: 100), label: .stable, canaryShare: nil, plugin: nil, expectedGeneration: nil) }
        refused(.invalid) { _ = try registry.push(scene: "shoes", head: try world.head(scene: "shoes", version: "w", seed: 5, input: 8), label: .stable, canaryShare: nil, plugin: nil, expectedGeneration: nil) }
        refused(.invalid) { _ = try registry.push(scene: "shoes", head: try world.head(scene: "boots", version: "b", seed: 5), label: .stable, canaryShare: nil, plugin: nil, expectedGeneration: nil) }
        var nan = good
        // Corrupt one weight byte: the content hash no longer matches.
        nan[nan.count - 3] ^= 0x55
        refused(.invalid) { _ = try registry.push(scene: "shoes", head: nan, label: .stable, canaryShare: nil, plugin: nil, expectedGeneration: nil) }
        refused(.conflict) { _ = try registry.push(scene: "shoes", head: try world.head(scene: "shoes", version: "s1", seed: 9), label: .stable, canaryShare: nil, plugin: nil, expectedGeneration: nil) }
        refused(.conflict) { _ = try registry.push(scene: "shoes", head: good, label: .stable, canaryShare: nil, plugin: nil, expectedGeneration: 7) }
        refused(.conflict) { _ = try registry.register(scene: "shoes", plugin: nil, pluginConfig: "{}", head: good) }
        refused(.notFound) { _ = try registry.setLabels(scene: "shoes", stable: "nope", canary: nil, canaryShare: nil, expectedGeneration: nil) }
        refused(.forbidden) { _ = try registry.push(scene: "shoes", head: good, label: .stable, canaryShare: nil, plugin: (name: "../evil", config: "{}"), expectedGeneration: nil) }
        refused(.invalid) { _ = try registry.push(scene: "shoes", head: good, label: .stable, canaryShare: nil, plugin: (name: "missing", config: "{}"), expectedGeneration: nil) }
        refused(.invalid) { _ = try registry.push(scene: "shoes", head: good, label: .canary, canaryShare: 1.5, plugin: nil, expectedGeneration: nil) }
    }

    @Test func keepsTheLastVersionsAndFreesRetiredOnes() throws {
        let world = try World()
        let (registry, store) = try world.open()
        _ = try registry.register(scene: "shoes", plugin: nil, pluginConfig: "{}", head: try world.head(scene: "shoes", version: "v0", seed: 3))
        // Weak references, not SceneVersion.live: that count is process-wide, and suites running
        // in parallel (other registries, the PostgreSQL store's) load and free versions too.
        final class Watched { weak var version: SceneVersion?; init(_ v: SceneVersion?) { version = v } }
        var held = registry.snapshot?.scenes["shoes"]?.stable  // a request in flight on v0
        let v0 = Watched(held)
        var retired: [Watched] = []
        for i in 1...6 {
            _ = try registry.push(scene: "shoes", head: try world.head(scene: "shoes", version: "v\(i)", seed: UInt64(10 + i)),
                                  label: .stable, canaryShare: nil, plugin: nil, expectedGeneration: nil)
            if i < 6 { retired.append(Watched(registry.snapshot?.scenes["shoes"]?.stable)) }
        }
        let record = try #require(registry.record("shoes"))
        #expect(record.versions.map(\.version) == ["v4", "v5", "v6"])
        let files = try FileManager.default.contentsOfDirectory(atPath: store.directory + "/scenes/shoes/versions")
        #expect(files.count == 3)
        #expect(held?.version == "v0", "a request keeps the version it started with")
        #expect(retired.allSatisfy { $0.version == nil }, "v1…v5 are freed once no snapshot or request holds them")
        #expect(registry.snapshot?.scenes["shoes"]?.stable.version == "v6")
        held = nil
        #expect(v0.version == nil, "v0 is freed with the last request that held it")
        _ = held
    }

    @Test func restartIgnoresWhatACrashLeftBehind() throws {
        let world = try World()
        let (registry, store) = try world.open()
        _ = try registry.register(scene: "shoes", plugin: nil, pluginConfig: "{}", head: try world.head(scene: "shoes", version: "s1", seed: 3))
        let committed = world.stateFiles()
        // What a kill -9 can leave: a staged upload, a version file no manifest names, a
        // half-written manifest temp file, a scene folder whose first commit never happened.
        let scene = store.directory + "/scenes/shoes"
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: store.directory + "/staging/123-abc.safetensors"))
        try Data(try world.head(scene: "shoes", version: "s2", seed: 4)).write(to: URL(fileURLWithPath: scene + "/versions/999-orphan.safetensors"))
        try Data("{\"scene\":".utf8).write(to: URL(fileURLWithPath: scene + "/manifest.json.tmp-42"))
        try FileManager.default.createDirectory(atPath: store.directory + "/scenes/boots/versions", withIntermediateDirectories: true)
        let (reopened, _) = try world.open()
        #expect(reopened.snapshot?.scenes.keys.sorted() == ["apparel", "shoes"])
        #expect(world.stateFiles() == committed)
    }
}
