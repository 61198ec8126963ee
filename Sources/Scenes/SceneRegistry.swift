import Foundation
import Model
import NIOConcurrencyHelpers

/// Which label a pushed version gets.
public enum VersionLabel: String, Sendable {
    case stable, canary, none
}

/// The registry of scenes (Proto/ADMIN.md): scene → kept versions → labels, durable in a
/// `SceneStore`, served through immutable snapshots.
///
/// Readers (every request) take the current snapshot: one lock-protected reference copy; scoring
/// holds no lock. Writers are serialised by one lock and run off the event loops: stage the
/// upload durably, validate and load it (head dims against the backbone, finite values, sha256,
/// plugin), warm it up, commit the record to the store, then publish a new snapshot. Any failure
/// before the commit leaves both the store and the served state untouched.
public final class SceneRegistry: Sendable {
    private let current = NIOLockedValueBox<SceneSnapshot?>(nil)
    /// What the admin API lists: the records as last committed.
    private let committed = NIOLockedValueBox<[String: SceneRecord]>([:])
    private let writer = NIOLockedValueBox<Writer?>(nil)

    /// What writers need; set by `open`.
    private struct Writer: Sendable {
        let store: any SceneStore
        let backbone: Backbone
        let pluginDirectory: String
        let keepVersions: Int
    }

    public init() {}

    /// The snapshot to score with, or nil while nothing is loaded.
    public var snapshot: SceneSnapshot? { current.withLockedValue { $0 } }

    public func publish(_ snapshot: SceneSnapshot) {
        current.withLockedValue { $0 = snapshot }
    }

    public var records: [SceneRecord] { committed.withLockedValue { Array($0.values) }.sorted { $0.scene < $1.scene } }
    public func record(_ scene: String) -> SceneRecord? { committed.withLockedValue { $0[scene] } }

    /// Serves a model directory as it is (backbone + one canonical head per scene), without a
    /// store: for tools and tests. The admin API needs `open`.
    @discardableResult
    public func load(modelDirectory: String) throws -> SceneSnapshot {
        let set = try ModelSet(directory: modelDirectory)
        var scenes: [String: ServedScene] = [:]
        for (name, head) in set.heads {
            let record = VersionRecord(version: head.spec.version, parent: head.spec.parent, sha256: head.contentHash, bytes: 0,
                                       plugin: nil, pluginConfig: "{}", created: "", file: "")
            scenes[name] = ServedScene(name: name, generation: 0,
                                       stable: SceneVersion(scene: name, head: head, plugin: nil, backbone: set.backbone.spec, record: record))
        }
        let snapshot = SceneSnapshot(backbone: set.backbone, scenes: scenes)
        publish(snapshot)
        return snapshot
    }

    /// Opens the durable registry: reads the store (seeding an empty one from
    /// `seedDirectory/heads`), loads every scene's labelled versions and publishes them.
    /// Returns the scenes that could not be loaded (left out, with the reason).
    public func open(store: any SceneStore, backbone: Backbone, pluginDirectory: String, keepVersions: Int,
                     seedDirectory: String?) throws(RegistryError) -> [(scene: String, reason: String)] {
        let w = Writer(store: store, backbone: backbone, pluginDirectory: pluginDirectory, keepVersions: keepVersions)
        writer.withLockedValue { $0 = w }
        publish(SceneSnapshot(backbone: backbone, scenes: [:]))
        let records = try store.exclusively { () throws(RegistryError) -> [SceneRecord] in
            var records = try store.loadAll()
            guard try store.needsSeeding() else { return records }
            if records.isEmpty, let seedDirectory { records = try seed(from: seedDirectory + "/heads", writer: w) }
            try store.markSeeded()
            return records
        }
        var scenes: [String: ServedScene] = [:]
        var failures: [(scene: String, reason: String)] = []
        for record in records {
            do { scenes[record.scene] = try serve(record, reusing: nil, writer: w) } catch {
                failures.append((record.scene, error.message))
            }
        }
        // A scene that failed to load stays listed (ops can push a version that loads), unserved.
        committed.withLockedValue { c in for r in records { c[r.scene] = r } }
        publish(SceneSnapshot(backbone: backbone, scenes: scenes))
        return failures
    }

    // MARK: - Writes (serialised; call off the event loops)

    /// Registers a new scene with its first head.
    public func register(scene: String, plugin: String?, pluginConfig: String, head bytes: [UInt8]) throws(RegistryError) -> SceneRecord {
        guard HeadSpec.isValidSceneName(scene) else {
            throw RegistryError(.invalid, "scene name '\(scene)' must be 1…64 of [a-z0-9_-]")
        }
        return try write(retryingStale: true) { w throws(RegistryError) in
            if record(scene) != nil { throw RegistryError(.conflict, "scene '\(scene)' exists already") }
            let (version, staged) = try stageVersion(bytes, scene: scene, plugin: plugin, pluginConfig: pluginConfig, existing: nil, writer: w)
            let record = SceneRecord(scene: scene, first: version.record)
            try committing(staged, w) { () throws(RegistryError) in try commit(record, staged: staged, expected: nil, writer: w) }
            publishScene(ServedScene(name: scene, generation: record.generation, stable: version))
            return record
        }
    }

    /// Adds a head version to a scene; `plugin` nil keeps the stable version's plugin and config.
    public func push(scene: String, head bytes: [UInt8], label: VersionLabel, canaryShare: Double?,
                     plugin: (name: String?, config: String)?, expectedGeneration: Int?) throws(RegistryError) -> SceneRecord {
        try write(retryingStale: expectedGeneration == nil) { w throws(RegistryError) in
            var record = try existing(scene, expectedGeneration)
            let stable = record.version(record.stable)
            let (name, config) = plugin ?? (stable?.plugin, stable?.pluginConfig ?? "{}")
            let share = try canaryShare.map { s throws(RegistryError) in try Self.checkShare(s) }
            let (version, staged) = try stageVersion(bytes, scene: scene, plugin: name, pluginConfig: config, existing: record, writer: w)
            record.versions.append(version.record)
            switch label {
            case .stable:
                record.stableHistory.append(record.stable)
                record.stable = version.version
                if record.canary == version.version { record.canary = nil }
            case .canary:
                record.canary = version.version
                if let share { record.canaryShare = share }
            case .none: break
            }
            record.generation += 1
            record.trim(keep: w.keepVersions)
            let served = try committing(staged, w) { () throws(RegistryError) -> ServedScene in
                let served = try serve(record, reusing: [version.version: version], writer: w)
                try commit(record, staged: staged, expected: expectedGeneration ?? record.generation - 1, writer: w)
                return served
            }
            publishScene(served)
            return record
        }
    }

    /// Moves labels: `stable` to a kept version, `canary` to a kept version or off (`.some(nil)`).
    public func setLabels(scene: String, stable: String?, canary: String??, canaryShare: Double?,
                          expectedGeneration: Int?) throws(RegistryError) -> SceneRecord {
        try write(retryingStale: expectedGeneration == nil) { w throws(RegistryError) in
            var record = try existing(scene, expectedGeneration)
            if let stable {
                guard record.version(stable) != nil else { throw RegistryError(.notFound, "scene '\(scene)' has no version '\(stable)'") }
                if stable != record.stable { record.stableHistory.append(record.stable); record.stable = stable }
                if record.canary == stable { record.canary = nil }
            }
            if let canary {
                if let name = canary, record.version(name) == nil { throw RegistryError(.notFound, "scene '\(scene)' has no version '\(name)'") }
                record.canary = canary == record.stable ? nil : canary
            }
            if let canaryShare { record.canaryShare = try Self.checkShare(canaryShare) }
            return try commitLabels(record, expected: expectedGeneration, writer: w)
        }
    }

    /// Makes `version` (default: the version stable before the current one) stable again.
    public func rollback(scene: String, to version: String?, expectedGeneration: Int?) throws(RegistryError) -> SceneRecord {
        try write(retryingStale: expectedGeneration == nil) { w throws(RegistryError) in
            var record = try existing(scene, expectedGeneration)
            let target: String
            if let version {
                guard record.version(version) != nil else { throw RegistryError(.notFound, "scene '\(scene)' has no kept version '\(version)'") }
                target = version
            } else {
                guard let previous = record.stableHistory.last(where: { $0 != record.stable }) else {
                    throw RegistryError(.notFound, "scene '\(scene)' has no earlier stable version to roll back to")
                }
                target = previous
            }
            if let i = record.stableHistory.lastIndex(of: target) { record.stableHistory.remove(at: i) }
            if target != record.stable { record.stableHistory.append(record.stable) }
            record.stable = target
            if record.canary == target { record.canary = nil }
            return try commitLabels(record, expected: expectedGeneration, writer: w)
        }
    }

    /// Removes a scene: new requests no longer find it; requests holding its versions finish.
    public func remove(scene: String, expectedGeneration: Int?) throws(RegistryError) {
        try write(retryingStale: expectedGeneration == nil) { w throws(RegistryError) in
            let record = try existing(scene, expectedGeneration)
            try w.store.remove(scene: scene, expectedGeneration: record.generation)
            committed.withLockedValue { _ = $0.removeValue(forKey: scene) }
            publishScene(nil, named: scene)
        }
    }

    // MARK: - Other replicas' changes

    /// What `synchronize` did.
    public struct Synchronization: Sendable {
        /// Scenes now served at a new generation.
        public var updated: [ServedScene] = []
        /// Scenes no longer in the store, no longer served.
        public var removed: [String] = []
        /// Scenes whose committed state could not be loaded here: they keep serving what they did.
        public var failures: [(scene: String, reason: String)] = []
        /// Every scene in the store is served at its committed generation.
        public var converged: Bool { failures.isEmpty }
    }

    /// Brings this process up to the store's state, for a store that other processes write too:
    /// each scene whose generation moved on is loaded (fetched, validated, warmed) and swapped in
    /// like a local push; scenes gone from the store stop being served. A scene that cannot be
    /// loaded here keeps serving what it served, and is retried by the next call.
    public func synchronize() throws(RegistryError) -> Synchronization {
        try write(retryingStale: false) { w throws(RegistryError) in try synchronize(w) }
    }

    private func synchronize(_ w: Writer) throws(RegistryError) -> Synchronization {
        let records = try w.store.loadAll()
        var result = Synchronization()
        let known = committed.withLockedValue { c in
            let old = c
            c = Dictionary(uniqueKeysWithValues: records.map { ($0.scene, $0) })
            return old
        }
        let served = snapshot?.scenes ?? [:]
        for record in records where served[record.scene]?.generation != record.generation || known[record.scene] != record {
            do {
                let scene = try serve(record, reusing: nil, writer: w)
                publishScene(scene)
                result.updated.append(scene)
            } catch {
                result.failures.append((record.scene, error.message))
            }
        }
        let stored = Set(records.map(\.scene))
        for name in served.keys where !stored.contains(name) {
            publishScene(nil, named: name)
            result.removed.append(name)
        }
        return result
    }

    // MARK: - Internals

    /// Runs a change with the writer lock held for all of it: writers are serialised. When the
    /// store refuses the change as a conflict and the caller named no generation (`retryingStale`),
    /// this process's view may just be behind another replica's commit: it catches up and tries
    /// once more, so only a caller's own stale `if-match` (or a genuine clash) is a 409.
    private func write<T>(retryingStale: Bool, _ body: (Writer) throws(RegistryError) -> T) throws(RegistryError) -> T {
        let result: Result<T, RegistryError> = writer.withLockedValue { w in
            guard let w else { return .failure(RegistryError(.unavailable, "the registry is not open")) }
            do throws(RegistryError) { return .success(try body(w)) } catch where error.kind == .conflict && retryingStale {
                do throws(RegistryError) {
                    _ = try synchronize(w)
                    return .success(try body(w))
                } catch { return .failure(error) }
            } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// Runs the steps between staging an upload and its commit; on failure the stage is dropped.
    private func committing<T>(_ staged: StagedHead, _ w: Writer, _ body: () throws(RegistryError) -> T) throws(RegistryError) -> T {
        do throws(RegistryError) { return try body() } catch {
            w.store.discard(staged)
            throw error
        }
    }

    private func existing(_ scene: String, _ expectedGeneration: Int?) throws(RegistryError) -> SceneRecord {
        guard let record = record(scene) else { throw RegistryError(.notFound, "unknown scene '\(scene)'") }
        if let expectedGeneration, expectedGeneration != record.generation {
            throw RegistryError(.conflict, "scene '\(scene)' is at generation \(record.generation), not \(expectedGeneration)")
        }
        return record
    }

    private static func checkShare(_ share: Double) throws(RegistryError) -> Double {
        guard share.isFinite, share >= 0, share <= 1 else { throw RegistryError(.invalid, "canary share \(share) must be within 0…1") }
        return share
    }

    private func commitLabels(_ record: SceneRecord, expected: Int?, writer w: Writer) throws(RegistryError) -> SceneRecord {
        var record = record
        record.generation += 1
        record.trim(keep: w.keepVersions)
        let served = try serve(record, reusing: nil, writer: w)  // loads before committing: a head that fails leaves all as is
        try commit(record, staged: nil, expected: record.generation - 1, writer: w)
        publishScene(served)
        return record
    }

    private func commit(_ record: SceneRecord, staged: StagedHead?, expected: Int?, writer w: Writer) throws(RegistryError) {
        try w.store.commit(record, adding: staged, expectedGeneration: expected)
        committed.withLockedValue { $0[record.scene] = record }
    }

    /// Only writers publish, one at a time: the new snapshot (a copy of every scene's entry) is
    /// built outside the lock, so readers never wait for the copy.
    private func publishScene(_ scene: ServedScene?, named name: String? = nil) {
        guard let old = snapshot else { return }
        publish(old.replacing(scene?.name ?? name!, with: scene))
    }

    /// The served form of `record`: its labelled versions, reusing those already in memory.
    private func serve(_ record: SceneRecord, reusing fresh: [String: SceneVersion]?, writer w: Writer) throws(RegistryError) -> ServedScene {
        let served = snapshot?.scenes[record.scene]
        var resident: [String: SceneVersion] = fresh ?? [:]
        for v in [served?.stable, served?.canary].compactMap({ $0 }) where resident[v.version] == nil && record.version(v.version) == v.record {
            resident[v.version] = v
        }
        func version(_ name: String) throws(RegistryError) -> SceneVersion {
            if let v = resident[name] { return v }
            guard let r = record.version(name) else { throw RegistryError(.notFound, "scene '\(record.scene)' has no version '\(name)'") }
            let v = try loadVersion(r, scene: record.scene, source: try w.store.head(scene: record.scene, version: r), writer: w)
            resident[name] = v
            return v
        }
        let stable = try version(record.stable)
        let canary = try record.canary.map { name throws(RegistryError) in try version(name) }
        return ServedScene(name: record.scene, generation: record.generation, stable: stable, canary: canary,
                           canaryShare: canary == nil ? 0 : record.canaryShare)
    }

    /// Stages an upload, validates and loads it; the caller commits or the stage is discarded.
    private func stageVersion(_ bytes: [UInt8], scene: String, plugin: String?, pluginConfig: String,
                              existing: SceneRecord?, writer w: Writer) throws(RegistryError) -> (SceneVersion, StagedHead) {
        let staged = try w.store.stage(bytes)
        do throws(RegistryError) {
            let created = ISO8601DateFormatter().string(from: Date())
            let record = VersionRecord(version: "", parent: "", sha256: "", bytes: bytes.count, plugin: plugin,
                                       pluginConfig: pluginConfig, created: created, file: staged.file)
            let version = try loadVersion(record, scene: scene, source: staged.source, writer: w)
            if existing?.version(version.version) != nil {
                throw RegistryError(.conflict, "scene '\(scene)' already has a version '\(version.version)'")
            }
            return (version, staged)
        } catch {
            w.store.discard(staged)
            throw error
        }
    }

    /// Loads a head file and its plugin instance, checks them, and warms them up.
    private func loadVersion(_ record: VersionRecord, scene: String, source: HeadSource, writer w: Writer) throws(RegistryError) -> SceneVersion {
        let head: AdapterHead
        do {
            head = try AdapterHead(file: try source.open(), backbone: w.backbone.spec)
        } catch let error as ModelLoadError {
            throw RegistryError(.invalid, "head: " + (error.tensor.map { "tensor '\($0)': " } ?? "") + error.problem)
        } catch {
            throw RegistryError(.invalid, "head: \(error)")
        }
        guard head.spec.scene == scene else {
            throw RegistryError(.invalid, "head: its metadata is for scene '\(head.spec.scene)', not '\(scene)'")
        }
        // A committed version read back from the store must be the head that was committed.
        if !record.sha256.isEmpty, head.contentHash != record.sha256 || head.spec.version != record.version {
            throw RegistryError(.unavailable, "store: head of \(scene) \(record.version) reads back as \(head.spec.version) with sha256 \(head.contentHash.prefix(12)), committed \(record.sha256.prefix(12))")
        }
        var plugin: ScenePlugin?
        if let name = record.plugin {
            do {
                plugin = try ScenePlugin.load(name: name, directory: w.pluginDirectory, configJSON: record.pluginConfig, canonical: w.backbone.spec)
            } catch {
                switch error.kind {
                case .forbidden: throw RegistryError(.forbidden, "plugin: \(error.message)")
                default: throw RegistryError(.invalid, "plugin: \(error.message)")
                }
            }
        }
        if let plugin, plugin.hasPostprocess {
            // A plugin that cannot post-process this head's outputs would fail every request.
            var probe = [Float](repeating: 0.5, count: head.spec.outputs.count)
            do {
                try probe.withUnsafeMutableBufferPointer { p throws(PluginError) in try plugin.postprocess(p, candidates: 1, outputs: head.spec.outputs) }
            } catch {
                throw RegistryError(.invalid, "plugin '\(plugin.name)' cannot post-process this head's outputs \(head.spec.outputs): \(error.message)")
            }
        }
        var full = record
        full.version = head.spec.version
        full.parent = head.spec.parent
        full.sha256 = head.contentHash
        let version = SceneVersion(scene: scene, head: head, plugin: plugin, backbone: w.backbone.spec, record: full)
        Self.warmUp(version, backbone: w.backbone)
        return version
    }

    /// One forward pass on canonical zeros, so the first request doesn't pay for page faults.
    static func warmUp(_ version: SceneVersion, backbone: Backbone) {
        let spec = backbone.spec, n = 16
        let ids = [UInt32](repeating: 1, count: n * max(spec.itemFields.count, spec.contextFields.count, 1))
        let dense = [Float](repeating: 0, count: n * max(spec.itemDense, spec.contextDense, 1))
        var out = [Float](repeating: 0, count: n * version.head.spec.outputs.count)
        ids.withUnsafeBytes { i in dense.withUnsafeBytes { d in
            let input = ScoringInput(candidates: n,
                                     contextIDs: UnsafeRawBufferPointer(rebasing: i[0..<(4 * spec.contextFields.count)]),
                                     contextDense: UnsafeRawBufferPointer(rebasing: d[0..<(4 * spec.contextDense)]),
                                     itemIDs: UnsafeRawBufferPointer(rebasing: i[0..<(4 * n * spec.itemFields.count)]),
                                     itemDense: UnsafeRawBufferPointer(rebasing: d[0..<(4 * n * spec.itemDense)]))
            out.withUnsafeMutableBufferPointer { Forward.score(input, backbone: backbone, head: version.head, workspace: ForwardWorkspace(), into: $0) }
        }}
    }

    /// Imports the model directory's heads as canonical scenes.
    private func seed(from headDirectory: String, writer w: Writer) throws(RegistryError) -> [SceneRecord] {
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: headDirectory)) ?? []).filter { $0.hasSuffix(".safetensors") }.sorted()
        var records: [SceneRecord] = []
        for file in files {
            guard let bytes = FileManager.default.contents(atPath: headDirectory + "/" + file) else {
                throw RegistryError(.unavailable, "cannot read \(headDirectory)/\(file)")
            }
            let head: AdapterHead
            do { head = try AdapterHead(path: headDirectory + "/" + file, backbone: w.backbone.spec) } catch {
                throw RegistryError(.invalid, "model directory head \(file): \(error)")
            }
            let scene = head.spec.scene
            let (version, staged) = try stageVersion(Array(bytes), scene: scene, plugin: nil, pluginConfig: "{}", existing: nil, writer: w)
            let record = SceneRecord(scene: scene, first: version.record)
            try w.store.commit(record, adding: staged, expectedGeneration: nil)
            records.append(record)
        }
        return records
    }
}
