import Foundation
import Scenes

/// The JSON shapes of scenes: `GET /v1/scenes` for clients, and the admin API's records.
enum SceneViews {
    /// What a client needs to score a scene: its raw schema (what to send), outputs and versions.
    static func served(_ scene: ServedScene) -> [String: Any] {
        let stable = scene.stable, schema = stable.schema
        return ["scene": scene.name, "head_version": stable.version, "parent_version": stable.head.spec.parent,
                "outputs": stable.head.spec.outputs, "content_sha256": stable.head.contentHash,
                "plugin": stable.plugin?.name as Any? ?? NSNull(),
                "plugin_description": stable.plugin?.summary as Any? ?? NSNull(),
                "context_ids": schema.contextIDs.count, "context_dense": schema.contextDense.count,
                "item_ids": schema.itemIDs.count, "item_dense": schema.itemDense.count,
                "schema": ["context_ids": schema.contextIDs, "context_dense": schema.contextDense,
                           "item_ids": schema.itemIDs, "item_dense": schema.itemDense],
                "canary": scene.canary.map { ["version": $0.version, "share": scene.canaryShare] as [String: Any] } as Any? ?? NSNull()]
    }

    static func record(_ r: SceneRecord) -> [String: Any] {
        ["scene": r.scene, "generation": r.generation, "plugin": r.plugin as Any? ?? NSNull(),
         "stable": r.stable, "canary": r.canary as Any? ?? NSNull(), "canary_share": r.canary == nil ? 0 : r.canaryShare,
         "versions": r.versions.map { version($0, in: r) }]
    }

    static func version(_ v: VersionRecord, in r: SceneRecord) -> [String: Any] {
        ["version": v.version, "parent": v.parent, "sha256": v.sha256, "bytes": v.bytes,
         "plugin": v.plugin as Any? ?? NSNull(), "labels": r.labels(of: v.version), "created": v.created]
    }
}

