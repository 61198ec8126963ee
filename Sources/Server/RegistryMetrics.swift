import Metrics
import NIOConcurrencyHelpers
import Scenes

/// The registry's series in /metrics: which version each scene serves under which label, head
/// loads (and failures) with their duration, live versions and resident head bytes.
final class RegistryMetrics: Sendable {
    let loads = Counter(label: "scenescore_head_loads_total", dimensions: [("result", "ok")])
    let loadFailures = Counter(label: "scenescore_head_loads_total", dimensions: [("result", "failed")])
    let loadDuration = Timer(label: "scenescore_head_load_seconds", preferredDisplayUnit: .seconds)
    private let liveVersions = Meter(label: "scenescore_live_head_versions")
    private let residentBytes = Meter(label: "scenescore_resident_head_bytes")
    private struct Labelled: Hashable { let scene: String, version: String, label: String }
    /// `scenescore_scene_head_info{scene,version,label} 1` for each labelled version.
    private let info = NIOLockedValueBox<[Labelled: Meter]>([:])

    init() {}

    /// Brings the gauges in line with what `snapshot` serves.
    func update(_ snapshot: SceneSnapshot?) {
        liveVersions.set(SceneVersion.live)
        residentBytes.set(SceneVersion.residentBytes)
        var wanted = Set<Labelled>()
        for scene in snapshot?.scenes.values ?? [:].values {
            wanted.insert(Labelled(scene: scene.name, version: scene.stable.version, label: "stable"))
            if let canary = scene.canary { wanted.insert(Labelled(scene: scene.name, version: canary.version, label: "canary")) }
        }
        info.withLockedValue { meters in
            for (key, meter) in meters where !wanted.contains(key) {
                meter.destroy()
                meters.removeValue(forKey: key)
            }
            for key in wanted where meters[key] == nil {
                let meter = Meter(label: "scenescore_scene_head_info", dimensions: [("scene", key.scene), ("version", key.version), ("label", key.label)])
                meter.set(1)
                meters[key] = meter
            }
        }
    }
}
