import Model
import NIOConcurrencyHelpers

/// One servable version of a scene: its head on the shared backbone and its plugin instance.
/// Immutable; a request holds the version it started with until it ends, so a version retired
/// meanwhile is freed (head weights released, plugin instance destroyed) when its last request
/// finishes. `live` counts the versions in memory.
public final class SceneVersion: Sendable {
    public let scene: String
    public let head: AdapterHead
    /// nil: the scene's raw fields are the backbone's canonical fields.
    public let plugin: ScenePlugin?
    /// What clients send for this version (the plugin's raw schema, or the canonical one).
    public let schema: PluginSchema
    public let record: VersionRecord

    public var version: String { head.spec.version }

    public init(scene: String, head: AdapterHead, plugin: ScenePlugin?, backbone: BackboneSpec, record: VersionRecord) {
        self.scene = scene
        self.head = head
        self.plugin = plugin
        self.schema = plugin?.raw ?? PluginSchema(canonical: backbone)
        self.record = record
        let bytes = head.byteCount
        Self.counters.withLockedValue { $0.versions += 1; $0.bytes += bytes }
    }

    deinit {
        let bytes = head.byteCount
        Self.counters.withLockedValue { $0.versions -= 1; $0.bytes -= bytes }
    }

    private static let counters = NIOLockedValueBox((versions: 0, bytes: 0))
    /// Versions in memory: labelled ones plus retired ones that requests still hold.
    public static var live: Int { counters.withLockedValue { $0.versions } }
    /// Packed head weight bytes held by live versions.
    public static var residentBytes: Int { counters.withLockedValue { $0.bytes } }
}

extension PluginSchema {
    /// The backbone's own fields, for scenes without a plugin.
    public init(canonical spec: BackboneSpec) {
        self.init(contextIDs: spec.contextFields.map(\.name),
                  contextDense: (0..<spec.contextDense).map { "context_dense_\($0)" },
                  itemIDs: spec.itemFields.map(\.name),
                  itemDense: (0..<spec.itemDense).map { "item_dense_\($0)" })
    }
}

/// A scene as served: its labelled versions.
public struct ServedScene: Sendable {
    public let name: String
    public let generation: Int
    public let stable: SceneVersion
    public let canary: SceneVersion?
    public let canaryShare: Double

    public init(name: String, generation: Int, stable: SceneVersion, canary: SceneVersion? = nil, canaryShare: Double = 0) {
        self.name = name
        self.generation = generation
        self.stable = stable
        self.canary = canary
        self.canaryShare = canaryShare
    }

    /// The version that answers the request with this id.
    @inline(__always)
    public func version(for requestID: UInt64) -> SceneVersion {
        if let canary, CanaryRouting.choosesCanary(requestID: requestID, share: canaryShare) { return canary }
        return stable
    }
}

/// An immutable view of everything servable. A request takes one snapshot when it starts and
/// scores with it to the end, so a publish never mixes into a request.
public final class SceneSnapshot: Sendable {
    public let backbone: Backbone
    public let scenes: [String: ServedScene]

    public init(backbone: Backbone, scenes: [String: ServedScene]) {
        self.backbone = backbone
        self.scenes = scenes
    }

    public var sortedSceneNames: [String] { scenes.keys.sorted() }

    func replacing(_ name: String, with scene: ServedScene?) -> SceneSnapshot {
        var scenes = self.scenes
        scenes[name] = scene
        return SceneSnapshot(backbone: backbone, scenes: scenes)
    }
}
