import Model
import NIOConcurrencyHelpers

/// What one scene serves: its head on the shared backbone.
public struct ServedScene: Sendable {
    public let name: String
    public let head: AdapterHead
}

/// An immutable view of everything servable. A request takes one snapshot when it starts and
/// scores with it to the end, so a head published meanwhile never mixes into a request, and
/// an old head is freed when the last snapshot holding it is released.
public final class SceneSnapshot: Sendable {
    public let backbone: Backbone
    public let scenes: [String: ServedScene]

    public init(backbone: Backbone, heads: [String: AdapterHead]) {
        self.backbone = backbone
        self.scenes = heads.mapValues { ServedScene(name: $0.spec.scene, head: $0) }
    }

    public var sortedSceneNames: [String] { scenes.keys.sorted() }
}

/// The registry of scenes: publishes snapshots atomically. Reading the current snapshot is one
/// lock-protected reference copy; scoring itself holds no lock.
public final class SceneRegistry: Sendable {
    private let current = NIOLockedValueBox<SceneSnapshot?>(nil)

    public init() {}

    /// The snapshot to score with, or nil while nothing is loaded.
    public var snapshot: SceneSnapshot? { current.withLockedValue { $0 } }

    /// Replaces everything at once.
    public func publish(_ snapshot: SceneSnapshot) {
        current.withLockedValue { $0 = snapshot }
    }

    /// Loads a model directory (backbone + heads) and publishes it.
    public func load(modelDirectory: String) throws -> SceneSnapshot {
        let set = try ModelSet(directory: modelDirectory)
        let snapshot = SceneSnapshot(backbone: set.backbone, heads: set.heads)
        publish(snapshot)
        return snapshot
    }
}
