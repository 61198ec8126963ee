/// The registry's schema, as numbered migrations applied in order, each in its own transaction,
/// recorded in `scenescore_schema_migrations`. Replicas that start together take a transaction-
/// scoped advisory lock first, so each migration runs exactly once. A migration, once released,
/// is never edited: a change is a new migration.
enum Migrations {
    struct Migration {
        let version: Int
        let name: String
        let sql: String
    }

    static let all: [Migration] = [
        Migration(version: 1, name: "registry: scenes, versions with head bytes, labels", sql: """
            -- Heads belong to the backbone they were trained on: each backbone (by its sha256)
            -- has a registry of its own, like the state directory's backbone-<hash> folders.
            CREATE TABLE scenescore_registries (
                backbone   text PRIMARY KEY,
                seeded_at  timestamptz          -- the model directory's heads were imported
            );
            CREATE TABLE scenescore_scenes (
                backbone        text NOT NULL REFERENCES scenescore_registries ON DELETE CASCADE,
                scene           text NOT NULL,
                generation      bigint NOT NULL CHECK (generation > 0),
                canary_share    double precision NOT NULL CHECK (canary_share >= 0 AND canary_share <= 1),
                stable_history  jsonb NOT NULL,  -- versions stable before, most recent last
                updated_at      timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (backbone, scene)
            );
            CREATE TABLE scenescore_versions (
                backbone       text NOT NULL,
                scene          text NOT NULL,
                version        text NOT NULL,
                seq            bigint GENERATED ALWAYS AS IDENTITY,  -- keeps versions oldest first
                parent         text NOT NULL,
                sha256         text NOT NULL,
                bytes          integer NOT NULL,
                plugin         text,
                plugin_config  text NOT NULL,
                created        text NOT NULL,
                file           text NOT NULL,
                head           bytea NOT NULL CHECK (octet_length(head) = bytes),
                PRIMARY KEY (backbone, scene, version),
                FOREIGN KEY (backbone, scene) REFERENCES scenescore_scenes ON DELETE CASCADE
            );
            -- A label always names a kept version of its scene (checked at commit).
            CREATE TABLE scenescore_labels (
                backbone  text NOT NULL,
                scene     text NOT NULL,
                label     text NOT NULL CHECK (label IN ('stable', 'canary')),
                version   text NOT NULL,
                PRIMARY KEY (backbone, scene, label),
                FOREIGN KEY (backbone, scene) REFERENCES scenescore_scenes ON DELETE CASCADE,
                FOREIGN KEY (backbone, scene, version) REFERENCES scenescore_versions DEFERRABLE INITIALLY DEFERRED
            );
            """),
    ]

    static var latest: Int { all.last!.version }

    /// Brings the database to `latest`. Refuses a database a newer server has migrated further.
    static func apply(on connection: PostgresConnection) throws -> [Migration] {
        try connection.transaction { () throws -> [Migration] in
            // Serialises replicas starting at once; released with the transaction.
            try connection.execute("SELECT pg_advisory_xact_lock(hashtext('scenescore.migrations'))")
            try connection.execute("""
                CREATE TABLE IF NOT EXISTS scenescore_schema_migrations (
                    version     integer PRIMARY KEY,
                    name        text NOT NULL,
                    applied_at  timestamptz NOT NULL DEFAULT now()
                )
                """)
            let current = try connection.execute("SELECT coalesce(max(version), 0) FROM scenescore_schema_migrations").int(0, 0) ?? 0
            guard current <= latest else {
                throw PostgresError(sqlState: "55000", message: "the registry database is at schema version \(current), newer than this server's \(latest): upgrade the server")
            }
            let pending = all.filter { $0.version > current }
            for migration in pending {
                try connection.executeScript(migration.sql)
                try connection.execute("INSERT INTO scenescore_schema_migrations (version, name) VALUES ($1, $2)",
                                       [.text(String(migration.version)), .text(migration.name)])
            }
            return pending
        }
    }
}
