import Foundation
import Model
import Testing
@testable import RegistryPostgres
@testable import Scenes

/// The shared registry against a real PostgreSQL server (a private cluster, `PostgresCluster`):
/// two registries in one process stand for two replicas; each test has a database of its own.
@Suite(.serialized, .enabled(if: PostgresCluster.available, "needs PostgreSQL's server binaries (Debian: postgresql)"))
struct PostgresStoreTests {
    static let spec = BackboneSpec(contextFields: [FieldSpec(name: "user", vocab: 97, dim: 4)], contextDense: 2,
                                   itemFields: [FieldSpec(name: "item", vocab: 101, dim: 4)], itemDense: 3, hidden: [24, 16])

    /// A model directory (backbone + one head) and a database.
    final class World {
        let root = NSTemporaryDirectory() + "scenescore-pgstore-" + UUID().uuidString
        let url: String
        let backbone: Backbone

        init() throws {
            url = try PostgresCluster.database()
            try FileManager.default.createDirectory(atPath: root + "/model/heads", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: root + "/plugins", withIntermediateDirectories: true)
            try DefaultModel.writeBackbone(PostgresStoreTests.spec, seed: 1, to: root + "/model/backbone.safetensors")
            try DefaultModel.writeHead(DefaultModel.headSpec(scene: "apparel", input: 16), seed: 2, to: root + "/model/heads/apparel.safetensors")
            backbone = try Backbone(path: root + "/model/backbone.safetensors")
        }

        deinit { try? FileManager.default.removeItem(atPath: root) }

        /// One replica: a store of its own on the shared database, and its registry.
        func replica() throws -> (SceneRegistry, PostgresSceneStore) {
            let store = try PostgresSceneStore(url: url, backboneHash: backbone.contentHash)
            let registry = SceneRegistry()
            let failures = try registry.open(store: store, backbone: backbone, pluginDirectory: root + "/plugins",
                                             keepVersions: 3, seedDirectory: root + "/model")
            #expect(failures.isEmpty)
            return (registry, store)
        }

        func head(_ version: String, seed: UInt64) throws -> [UInt8] {
            var spec = DefaultModel.headSpec(scene: "apparel", input: 16)
            spec.version = version
            let path = root + "/head-\(UUID().uuidString).safetensors"
            try DefaultModel.writeHead(spec, seed: seed, to: path)
            defer { unlink(path) }
            return Array(FileManager.default.contents(atPath: path)!)
        }

        func psql(_ sql: String) throws {
            let connection = try PostgresConnection(url: url)
            try connection.executeScript(sql)
        }
    }

    @Test func migratesOnceSeedsOnceAndRefusesANewerSchema() throws {
        let world = try World()
        let first = try PostgresSceneStore(url: world.url, backboneHash: world.backbone.contentHash)
        #expect(first.appliedMigrations.count == Migrations.latest)
        let second = try PostgresSceneStore(url: world.url, backboneHash: world.backbone.contentHash)
        #expect(second.appliedMigrations.isEmpty)

        let (a, _) = try world.replica()
        let (b, _) = try world.replica()
        #expect(a.records.map(\.scene) == ["apparel"])
        #expect(b.records == a.records)  // the second replica found it seeded, and seeded nothing again

        try world.psql("INSERT INTO scenescore_schema_migrations (version, name) VALUES (\(Migrations.latest + 1), 'from the future')")
        do throws(RegistryError) {
            _ = try PostgresSceneStore(url: world.url, backboneHash: world.backbone.contentHash)
            Issue.record("a database with a newer schema was accepted")
        } catch {
            #expect(error.kind == .unavailable)
            #expect(error.message.contains("newer than this server's"))
        }
    }

    @Test func aPushOnOneReplicaIsServedByTheOtherAfterSynchronize() throws {
        let world = try World()
        let (a, _) = try world.replica()
        let (b, _) = try world.replica()
        let pushed = try a.push(scene: "apparel", head: try world.head("apparel-2", seed: 3), label: .stable, canaryShare: nil,
                                plugin: nil, expectedGeneration: nil)
        #expect(b.snapshot?.scenes["apparel"]?.stable.version != "apparel-2")
        let sync = try b.synchronize()
        #expect(sync.updated.map(\.name) == ["apparel"])
        #expect(sync.converged)
        #expect(b.snapshot?.scenes["apparel"]?.stable.version == "apparel-2")
        #expect(b.record("apparel") == pushed)
        // The head B serves is byte for byte the head A validated.
        #expect(b.snapshot?.scenes["apparel"]?.stable.head.contentHash == a.snapshot?.scenes["apparel"]?.stable.head.contentHash)
        // Nothing more to do.
        #expect(try b.synchronize().updated.isEmpty)

        // Labels and removal travel the same way.
        _ = try a.setLabels(scene: "apparel", stable: nil, canary: .some("apparel-2"), canaryShare: 0.25, expectedGeneration: nil)
        _ = try a.rollback(scene: "apparel", to: nil, expectedGeneration: nil)
        _ = try b.synchronize()
        #expect(b.record("apparel") == a.record("apparel"))
        try a.remove(scene: "apparel", expectedGeneration: nil)
        let removal = try b.synchronize()
        #expect(removal.removed == ["apparel"])
        #expect(b.snapshot?.scenes["apparel"] == nil)
    }

    @Test func aStaleIfMatchIsAConflictAndAnUnconditionalWriteCatchesUp() throws {
        let world = try World()
        let (a, _) = try world.replica()
        let (b, _) = try world.replica()
        let generation = a.record("apparel")!.generation
        _ = try a.push(scene: "apparel", head: try world.head("from-a", seed: 3), label: .stable, canaryShare: nil,
                       plugin: nil, expectedGeneration: generation)
        // B has not heard of A's push: its if-match names the generation both started from.
        let fromB = try world.head("from-b", seed: 4)
        do throws(RegistryError) {
            _ = try b.push(scene: "apparel", head: fromB, label: .stable, canaryShare: nil,
                           plugin: nil, expectedGeneration: generation)
            Issue.record("a stale generation was accepted")
        } catch {
            #expect(error.kind == .conflict)
            #expect(error.message.contains("another replica"))
        }
        // Without if-match, B catches up and lands on top: no version is lost.
        let record = try b.push(scene: "apparel", head: fromB, label: .stable, canaryShare: nil,
                                plugin: nil, expectedGeneration: nil)
        #expect(record.versions.map(\.version).suffix(2) == ["from-a", "from-b"])
        #expect(record.generation == generation + 2)
        _ = try a.synchronize()
        #expect(a.record("apparel") == record)
    }

    @Test func concurrentCommitsFromOneGenerationLetExactlyOneThrough() throws {
        let world = try World()
        let stores = try (0..<4).map { _ in try PostgresSceneStore(url: world.url, backboneHash: world.backbone.contentHash) }
        _ = try world.replica()
        let base = try stores[0].loadAll()[0]
        let outcomes = Locked<[RegistryError.Kind?]>([])
        DispatchQueue.concurrentPerform(iterations: stores.count) { i in
            var record = base
            record.generation += 1
            record.canaryShare = Double(i) / 10
            do throws(RegistryError) { try stores[i].commit(record, adding: nil, expectedGeneration: base.generation); outcomes.mutate { $0.append(nil) } }
            catch { outcomes.mutate { $0.append(error.kind) } }
        }
        let all = outcomes.value
        #expect(all.filter { $0 == nil }.count == 1)
        #expect(all.filter { $0 == .conflict }.count == stores.count - 1)
        #expect(try stores[0].loadAll()[0].generation == base.generation + 1)
    }

    @Test func aHeadStoredIsReadBackIdenticalAndLabelsNeverDangle() throws {
        let world = try World()
        let (a, store) = try world.replica()
        let bytes = try world.head("apparel-2", seed: 5)
        let record = try a.push(scene: "apparel", head: bytes, label: .none, canaryShare: nil, plugin: nil, expectedGeneration: nil)
        let version = record.version("apparel-2")!
        guard case .bytes(let stored, _) = try store.head(scene: "apparel", version: version) else {
            Issue.record("a PostgreSQL head is not bytes"); return
        }
        #expect(stored == bytes)
        // The schema itself refuses a label naming a version that is not kept.
        #expect(throws: (any Error).self) {
            try world.psql("UPDATE scenescore_labels SET version = 'nope' WHERE scene = 'apparel'")
        }
    }

    @Test func theListenerHearsCommitsAndAnUnreachableDatabaseIsUnavailable() throws {
        let world = try World()
        let (a, _) = try world.replica()
        let events = Locked<[String]>([])
        let listener = RegistryListener(url: world.url, backboneHash: world.backbone.contentHash) { event in
            switch event {
            case .reachable: events.mutate { $0.append("reachable") }
            case .unreachable: events.mutate { $0.append("unreachable") }
            case .changed(let scene, let generation): events.mutate { $0.append("\(scene):\(generation)") }
            }
        }
        listener.start()
        defer { listener.stop() }
        #expect(waitUntil { events.value.contains("reachable") })
        let record = try a.push(scene: "apparel", head: try world.head("apparel-2", seed: 3), label: .stable, canaryShare: nil,
                                plugin: nil, expectedGeneration: nil)
        #expect(waitUntil { events.value.contains("apparel:\(record.generation)") })

        let closed = "postgres://scenescore@127.0.0.1:\(PostgresCluster.freePort())/postgres"
        do throws(RegistryError) {
            _ = try PostgresSceneStore(url: closed, backboneHash: world.backbone.contentHash)
            Issue.record("a store on a closed port opened")
        } catch {
            #expect(error.kind == .unavailable)
            #expect(error.message.contains("unreachable"))
            #expect(!error.message.contains("\n"))
        }
    }

    @Test func urlsAreRedactedForLogs() {
        #expect(PostgresSceneStore.redacted("postgres://u:secret@db.example:5433/reg?sslmode=require") == "db.example:5433/reg")
        #expect(PostgresSceneStore.redacted("host=db port=5432 dbname=reg password=secret") == "db:5432/reg")
    }

    private func waitUntil(seconds: Double = 5, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            Thread.sleep(forTimeInterval: 0.01)
        }
        return condition()
    }
}

final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    var value: Value { lock.withLock { stored } }
    func mutate(_ body: (inout Value) -> Void) { lock.withLock { body(&stored) } }
}
