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
    private struct Labelled: Hashable { let version: String, label: String }
    /// `scenescore_scene_head_info{scene,version,label} 1` for each labelled version, by scene,
    /// so a change to one scene touches only that scene's series.
    private let info = NIOLockedValueBox<[String: [Labelled: Meter]]>([:])

    init() {}

    /// Live versions and resident bytes: O(1), run every second and after each admin request.
    func updateGauges() {
        liveVersions.set(SceneVersion.live)
        residentBytes.set(SceneVersion.residentBytes)
    }

    /// Every scene's series, once at start.
    func updateAll(_ snapshot: SceneSnapshot?) {
        for (name, scene) in snapshot?.scenes ?? [:] { update(scene: name, scene) }
        updateGauges()
    }

    /// One scene's series after a change (`served` nil: the scene is gone).
    func update(scene name: String, _ served: ServedScene?) {
        var wanted = Set<Labelled>()
        if let served {
            wanted.insert(Labelled(version: served.stable.version, label: "stable"))
            if let canary = served.canary { wanted.insert(Labelled(version: canary.version, label: "canary")) }
        }
        info.withLockedValue { all in
            var meters = all[name] ?? [:]
            for (key, meter) in meters where !wanted.contains(key) {
                meter.destroy()
                meters.removeValue(forKey: key)
            }
            for key in wanted where meters[key] == nil {
                let meter = Meter(label: "scenescore_scene_head_info", dimensions: [("scene", name), ("version", key.version), ("label", key.label)])
                meter.set(1)
                meters[key] = meter
            }
            all[name] = meters.isEmpty ? nil : meters
        }
    }
}
