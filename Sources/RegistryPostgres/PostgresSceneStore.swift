import Foundation
import Scenes

/// The shared store for several replicas: scenes, versions (with their head bytes) and labels in
/// PostgreSQL (schema: `Migrations`). Every change is one transaction that first moves the
/// scene's generation on with `UPDATE … WHERE generation = expected`, so of two replicas writing
/// from the same generation one commits and the other gets `.conflict` (409); the transaction
/// ends with `pg_notify`, delivered to every replica's `RegistryListener` only if it commits.
///
/// Uploads are staged in memory: nothing is visible to other replicas before the commit, and a
/// process killed mid-publish leaves the database at its last committed state.
public final class PostgresSceneStore: SceneStore, @unchecked Sendable {
    /// The channel every change is announced on; the payload is `<backbone prefix>:<scene>:<generation>`.
    public static let channel = "scenescore_registry"

    public let backbone: String
    /// The database, for logs and errors: host, port and database name, never the password.
    public let location: String
    private let url: String
    /// Guards `connection`; recursive so `exclusively` can hold it around the calls it makes.
    private let lock = NSRecursiveLock()
    private var connection: PostgresConnection?
    /// The migrations this process applied when it opened the store (usually none).
    public private(set) var appliedMigrations: [String] = []

    /// Connects, brings the schema to the latest migration and registers the backbone.
    /// Throws `.unavailable` when the database cannot be reached or migrated.
    public init(url: String, backboneHash: String) throws(RegistryError) {
        self.url = url
        backbone = backboneHash
        location = Self.redacted(url)
        try run { c throws in
            appliedMigrations = try Migrations.apply(on: c).map { "\($0.version): \($0.name)" }
            try c.execute("INSERT INTO scenescore_registries (backbone) VALUES ($1) ON CONFLICT DO NOTHING", [.text(backbone)])
        }
    }

    /// The schema version this server migrates to.
    public static var schemaVersion: Int { Migrations.latest }

    // MARK: - SceneStore

    public func loadAll() throws(RegistryError) -> [SceneRecord] {
        try run { c throws in
            // One snapshot of all three tables.
            try c.transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") { () throws -> [SceneRecord] in
                let scenes = try c.execute("""
                    SELECT scene, generation, canary_share, stable_history::text FROM scenescore_scenes
                    WHERE backbone = $1 ORDER BY scene
                    """, [.text(backbone)])
                let versions = try c.execute("""
                    SELECT scene, version, parent, sha256, bytes, plugin, plugin_config, created, file FROM scenescore_versions
                    WHERE backbone = $1 ORDER BY scene, seq
                    """, [.text(backbone)])
                let labels = try c.execute("SELECT scene, label, version FROM scenescore_labels WHERE backbone = $1", [.text(backbone)])
                var versionsByScene: [String: [VersionRecord]] = [:]
                for row in 0..<versions.rows {
                    let record = VersionRecord(version: versions.string(row, 1)!, parent: versions.string(row, 2)!,
                                               sha256: versions.string(row, 3)!, bytes: versions.int(row, 4)!,
                                               plugin: versions.string(row, 5), pluginConfig: versions.string(row, 6)!,
                                               created: versions.string(row, 7)!, file: versions.string(row, 8)!)
                    versionsByScene[versions.string(row, 0)!, default: []].append(record)
                }
                var labelsByScene: [String: [String: String]] = [:]
                for row in 0..<labels.rows {
                    labelsByScene[labels.string(row, 0)!, default: [:]][labels.string(row, 1)!] = labels.string(row, 2)!
                }
                var records: [SceneRecord] = []
                for row in 0..<scenes.rows {
                    let scene = scenes.string(row, 0)!
                    guard let kept = versionsByScene[scene], let first = kept.first,
                          let stable = labelsByScene[scene]?["stable"] else {
                        throw RegistryError(.unavailable, "registry database (\(location)): scene '\(scene)' has no stable version")
                    }
                    var record = SceneRecord(scene: scene, first: first)
                    record.versions = kept
                    record.generation = scenes.int(row, 1)!
                    record.canaryShare = scenes.double(row, 2)!
                    record.stableHistory = try Self.decodeList(scenes.string(row, 3)!)
                    record.stable = stable
                    record.canary = labelsByScene[scene]?["canary"]
                    records.append(record)
                }
                return records
            }
        }
    }

    public func needsSeeding() throws(RegistryError) -> Bool {
        try run { c throws in
            try c.execute("SELECT seeded_at IS NULL FROM scenescore_registries WHERE backbone = $1", [.text(backbone)]).string(0, 0) != "f"
        }
    }

    public func markSeeded() throws(RegistryError) {
        try run { c throws in
            try c.execute("UPDATE scenescore_registries SET seeded_at = now() WHERE backbone = $1", [.text(backbone)])
        }
    }

    /// Holds a session advisory lock on this backbone's registry while `body` runs, so replicas
    /// starting at once load and seed one after another.
    public func exclusively<T>(_ body: () throws(RegistryError) -> T) throws(RegistryError) -> T {
        lock.lock()
        defer { lock.unlock() }
        let key = "scenescore.registry." + backbone
        try run { c throws in try c.execute("SELECT pg_advisory_lock(hashtext($1))", [.text(key)]) }
        defer { _ = try? run { c throws in try c.execute("SELECT pg_advisory_unlock(hashtext($1))", [.text(key)]) } }
        return try body()
    }

    public func stage(_ bytes: [UInt8]) throws(RegistryError) -> StagedHead {
        let file = StagedHead.newFileName()
        return StagedHead(source: .bytes(bytes, name: file), bytes: bytes.count, file: file)
    }

    public func discard(_ staged: StagedHead) {}

    public func head(scene: String, version: VersionRecord) throws(RegistryError) -> HeadSource {
        let bytes = try run { c throws in
            try c.execute("SELECT head FROM scenescore_versions WHERE backbone = $1 AND scene = $2 AND version = $3",
                          [.text(backbone), .text(scene), .text(version.version)], binaryResult: true).bytes(0, 0)
        }
        guard let bytes else {
            throw RegistryError(.unavailable, "registry database (\(location)): no head bytes for \(scene) \(version.version)")
        }
        return .bytes(bytes, name: "\(scene)/\(version.file)")
    }

    public func commit(_ record: SceneRecord, adding staged: StagedHead?, expectedGeneration: Int?) throws(RegistryError) {
        let scene = record.scene
        let added = try staged.map { staged throws(RegistryError) -> (VersionRecord, [UInt8]) in
            guard let version = record.versions.first(where: { $0.file == staged.file }),
                  case .bytes(let bytes, _) = staged.source else {
                throw RegistryError(.unavailable, "registry: the staged head \(staged.file) is not part of \(scene)'s record")
            }
            return (version, bytes)
        }
        let history = Self.encodeList(record.stableHistory)
        let kept = Self.encodeList(record.versions.map(\.version))
        try run { c throws in
            try c.transaction {
                if let expected = expectedGeneration {
                    let moved = try c.execute("""
                        UPDATE scenescore_scenes SET generation = $3, canary_share = $4, stable_history = $5::jsonb, updated_at = now()
                        WHERE backbone = $1 AND scene = $2 AND generation = $6
                        """, [.text(backbone), .text(scene), .text(String(record.generation)), .text(String(record.canaryShare)),
                              .text(history), .text(String(expected))])
                    if moved.affectedRows == 0 { throw try staleOrMissing(c, scene: scene, expected: expected) }
                } else {
                    let created = try c.execute("""
                        INSERT INTO scenescore_scenes (backbone, scene, generation, canary_share, stable_history)
                        VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT DO NOTHING
                        """, [.text(backbone), .text(scene), .text(String(record.generation)), .text(String(record.canaryShare)), .text(history)])
                    if created.affectedRows == 0 { throw RegistryError(.conflict, "scene '\(scene)' exists already") }
                }
                if let (version, bytes) = added {
                    try c.execute("""
                        INSERT INTO scenescore_versions (backbone, scene, version, parent, sha256, bytes, plugin, plugin_config, created, file, head)
                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                        """, [.text(backbone), .text(scene), .text(version.version), .text(version.parent), .text(version.sha256),
                              .text(String(version.bytes)), .text(version.plugin), .text(version.pluginConfig), .text(version.created),
                              .text(version.file), .bytes(bytes)])
                }
                try c.execute("DELETE FROM scenescore_labels WHERE backbone = $1 AND scene = $2", [.text(backbone), .text(scene)])
                try c.execute("INSERT INTO scenescore_labels (backbone, scene, label, version) VALUES ($1, $2, 'stable', $3)",
                              [.text(backbone), .text(scene), .text(record.stable)])
                if let canary = record.canary {
                    try c.execute("INSERT INTO scenescore_labels (backbone, scene, label, version) VALUES ($1, $2, 'canary', $3)",
                                  [.text(backbone), .text(scene), .text(canary)])
                }
                try c.execute("""
                    DELETE FROM scenescore_versions WHERE backbone = $1 AND scene = $2
                    AND version NOT IN (SELECT jsonb_array_elements_text($3::jsonb))
                    """, [.text(backbone), .text(scene), .text(kept)])
                try announce(c, scene: scene, generation: record.generation)
            }
        }
    }

    public func remove(scene: String, expectedGeneration: Int) throws(RegistryError) {
        try run { c throws in
            try c.transaction {
                let removed = try c.execute("DELETE FROM scenescore_scenes WHERE backbone = $1 AND scene = $2 AND generation = $3",
                                            [.text(backbone), .text(scene), .text(String(expectedGeneration))])
                if removed.affectedRows == 0 { throw try staleOrMissing(c, scene: scene, expected: expectedGeneration) }
                try announce(c, scene: scene, generation: 0)
            }
        }
    }

    // MARK: - Internals

    /// Runs `body` on the connection (connecting first if there is none or it went bad) and maps
    /// failures: an unreachable database is `.unavailable` (503, nothing changed), a unique
    /// violation `.conflict`; `RegistryError`s thrown by `body` pass through.
    @discardableResult
    private func run<T>(_ body: (PostgresConnection) throws -> T) throws(RegistryError) -> T {
        lock.lock()
        defer { lock.unlock() }
        do {
            return try body(try liveConnection())
        } catch let error as RegistryError {
            throw error
        } catch let error as PostgresError {
            if error.isConnectionFailure { connection = nil }
            if error.isUniqueViolation { throw RegistryError(.conflict, "registry database: \(error.message)") }
            throw error.isConnectionFailure
                ? RegistryError(.unavailable, "the shared registry (PostgreSQL at \(location)) is unreachable: \(error.message)")
                : RegistryError(.unavailable, "registry database (\(location)): \(error)")
        } catch {
            throw RegistryError(.unavailable, "registry database (\(location)): \(error)")
        }
    }

    /// The open connection after a round trip proves it alive (a database restarted since the
    /// last call leaves a connection that only fails on use), else a new one.
    private func liveConnection() throws(PostgresError) -> PostgresConnection {
        if let connection, connection.isHealthy, (try? connection.execute("SELECT 1")) != nil { return connection }
        connection = nil
        let fresh = try PostgresConnection(url: url)
        connection = fresh
        return fresh
    }

    private func staleOrMissing(_ c: PostgresConnection, scene: String, expected: Int) throws -> RegistryError {
        let current = try c.execute("SELECT generation FROM scenescore_scenes WHERE backbone = $1 AND scene = $2",
                                    [.text(backbone), .text(scene)])
        guard current.rows > 0, let generation = current.int(0, 0) else { return RegistryError(.notFound, "unknown scene '\(scene)'") }
        return RegistryError(.conflict, "scene '\(scene)' is at generation \(generation), not \(expected) (changed by another replica)")
    }

    /// Queued by PostgreSQL and delivered at commit only.
    private func announce(_ c: PostgresConnection, scene: String, generation: Int) throws {
        try c.execute("SELECT pg_notify($1, $2)", [.text(Self.channel), .text("\(backbone.prefix(16)):\(scene):\(generation)")])
    }

    private static func encodeList(_ list: [String]) -> String {
        String(decoding: (try? JSONEncoder().encode(list)) ?? Data("[]".utf8), as: UTF8.self)
    }

    private static func decodeList(_ json: String) throws(RegistryError) -> [String] {
        do { return try JSONDecoder().decode([String].self, from: Data(json.utf8)) } catch {
            throw RegistryError(.unavailable, "registry database: a stable history is not a JSON list of strings: \(json.prefix(80))")
        }
    }

    /// `postgres://user:secret@host:5432/db?x=y` → `host:5432/db`; a key=value string → its host and dbname.
    public static func redacted(_ url: String) -> String {
        if let components = URLComponents(string: url), components.scheme?.hasPrefix("postgres") == true {
            let host = components.host.map { $0.isEmpty ? "localhost" : $0 } ?? "localhost"
            return host + (components.port.map { ":\($0)" } ?? "") + (components.path.isEmpty ? "" : components.path)
        }
        let pairs = url.split(separator: " ").compactMap { pair -> (String, String)? in
            let kv = pair.split(separator: "=", maxSplits: 1)
            return kv.count == 2 ? (String(kv[0]), String(kv[1])) : nil
        }
        let values = Dictionary(pairs, uniquingKeysWith: { a, _ in a })
        return (values["host"] ?? "localhost") + (values["port"].map { ":" + $0 } ?? "") + "/" + (values["dbname"] ?? "")
    }
}
