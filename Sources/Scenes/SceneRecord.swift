import Foundation

/// What the store keeps of one scene: its labels and the versions kept for rollback. This is the
/// unit of durability: every admin change writes one record (optimistically, by `generation`).
public struct SceneRecord: Codable, Sendable, Equatable {
    public var scene: String
    /// Bumped by every change; a write that names an older generation is refused (409).
    public var generation: Int
    public var stable: String
    public var canary: String?
    /// Share of requests (by request id, see `CanaryRouting`) the canary answers, 0…1.
    public var canaryShare: Double
    /// Versions that were stable before, most recent last: what a bare rollback returns to.
    public var stableHistory: [String]
    /// The kept versions, oldest first.
    public var versions: [VersionRecord]

    public init(scene: String, first: VersionRecord) {
        self.scene = scene
        generation = 1
        stable = first.version
        canary = nil
        canaryShare = 0
        stableHistory = []
        versions = [first]
    }

    public func version(_ name: String) -> VersionRecord? { versions.first { $0.version == name } }

    /// The scene's plugin: the stable version's.
    public var plugin: String? { version(stable)?.plugin }

    public func labels(of version: String) -> [String] {
        (version == stable ? ["stable"] : []) + (version == canary ? ["canary"] : [])
    }

    /// Drops the oldest unlabelled versions beyond `keep`, and history entries no longer kept.
    mutating func trim(keep: Int) {
        while versions.count > max(keep, 1), let oldest = versions.firstIndex(where: { labels(of: $0.version).isEmpty }) {
            versions.remove(at: oldest)
        }
        let kept = Set(versions.map(\.version))
        stableHistory.removeAll { !kept.contains($0) }
    }
}

/// One head version of a scene: the head file and the plugin instance it is served with.
public struct VersionRecord: Codable, Sendable, Equatable {
    /// The head's `scenescore.spec.version`.
    public var version: String
    public var parent: String
    /// The head's `scenescore.sha256`.
    public var sha256: String
    /// Size of the head file.
    public var bytes: Int
    /// Plugin name (a library in the plugin directory), nil for the canonical schema.
    public var plugin: String?
    /// The JSON object the plugin instance is created with.
    public var pluginConfig: String
    /// ISO 8601, UTC.
    public var created: String
    /// The head file's name inside the store (not client-chosen: version names are free text).
    public var file: String

    public init(version: String, parent: String, sha256: String, bytes: Int, plugin: String?, pluginConfig: String,
                created: String, file: String) {
        self.version = version
        self.parent = parent
        self.sha256 = sha256
        self.bytes = bytes
        self.plugin = plugin
        self.pluginConfig = pluginConfig
        self.created = created
        self.file = file
    }
}
