import Dispatch
import Foundation
import Logging
import Metrics
import NIOConcurrencyHelpers
import RegistryPostgres
import Scenes

/// Keeps this replica serving what the shared registry holds: a `RegistryListener` says when
/// another replica committed (or the database came back) and this runs
/// `SceneRegistry.synchronize` on a serial queue of its own, coalescing bursts into one pass.
/// While the database is unreachable the replica keeps serving what it has; the gauge
/// `scenescore_registry_reachable` and a log line say so.
final class RegistrySynchronizer: Sendable {
    private let registry: SceneRegistry
    private let metrics: RegistryMetrics
    private let logger: Logger
    private let location: String
    private let queue = DispatchQueue(label: "scenescore.registry.sync")
    private struct State {
        var pending = false
        var onConverged: (@Sendable () -> Void)?
    }
    private let state = NIOLockedValueBox(State())
    private let listener = NIOLockedValueBox<RegistryListener?>(nil)

    private let reachable = Meter(label: "scenescore_registry_reachable")
    private let synced = Counter(label: "scenescore_registry_syncs_total", dimensions: [("result", "ok")])
    private let syncFailed = Counter(label: "scenescore_registry_syncs_total", dimensions: [("result", "failed")])
    private let syncDuration = Timer(label: "scenescore_registry_sync_seconds", preferredDisplayUnit: .seconds)

    init(registry: SceneRegistry, metrics: RegistryMetrics, location: String, logger: Logger) {
        self.registry = registry
        self.metrics = metrics
        self.location = location
        self.logger = logger
        reachable.set(1)
    }

    /// Starts following the database. `onConverged` runs once, the first time every scene in the
    /// store is served at its committed generation (readiness); pass `converged: true` when the
    /// registry's open already got there.
    func start(url: String, backboneHash: String, converged: Bool, onConverged: @escaping @Sendable () -> Void) {
        state.withLockedValue { $0.onConverged = converged ? nil : onConverged }
        if converged { onConverged() } else { requestSync() }
        let listener = RegistryListener(url: url, backboneHash: backboneHash) { [self] event in handle(event) }
        self.listener.withLockedValue { $0 = listener }
        listener.start()
    }

    func stop() {
        listener.withLockedValue { $0 }?.stop()
    }

    private func handle(_ event: RegistryListener.Event) {
        switch event {
        case .reachable:
            reachable.set(1)
            logger.info("registry.reachable", metadata: ["registry": "\(location)"])
            requestSync()
        case .unreachable(let reason):
            reachable.set(0)
            logger.error("registry.unreachable", metadata: ["registry": "\(location)", "reason": "\(reason)",
                                                            "effect": "serving the versions loaded; admin writes answer 503"])
        case .changed:
            requestSync()
        }
    }

    /// One pass soon; a request during a pass queues exactly one more.
    func requestSync() {
        let first = state.withLockedValue { s in
            defer { s.pending = true }
            return !s.pending
        }
        guard first else { return }
        queue.async { [self] in
            state.withLockedValue { $0.pending = false }
            synchronize()
        }
    }

    private func synchronize() {
        let start = DispatchTime.now().uptimeNanoseconds
        let result: SceneRegistry.Synchronization
        do { result = try registry.synchronize() } catch {
            syncFailed.increment()
            logger.warning("registry.sync.failed", metadata: ["reason": "\(error.message)"])
            return  // the listener reports the outage, and asks again when the database is back
        }
        syncDuration.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - start))
        for scene in result.updated {
            metrics.update(scene: scene.name, scene)
            logger.info("registry.synced", metadata: ["scene": "\(scene.name)", "generation": "\(scene.generation)",
                                                      "stable": "\(scene.stable.version)", "canary": "\(scene.canary?.version ?? "-")"])
        }
        for name in result.removed {
            metrics.update(scene: name, nil)
            logger.info("registry.synced", metadata: ["scene": "\(name)", "removed": "true"])
        }
        metrics.updateGauges()
        for failure in result.failures {
            logger.error("scene.sync.failed", metadata: ["scene": "\(failure.scene)", "reason": "\(failure.reason)"])
        }
        if result.converged {
            synced.increment()
            let callback = state.withLockedValue { s -> (@Sendable () -> Void)? in
                defer { s.onConverged = nil }
                return s.onConverged
            }
            callback?()
        } else {
            syncFailed.increment()
            // Retried until every scene loads here (e.g. a plugin library still missing on this replica).
            queue.asyncAfter(deadline: .now() + 2) { [self] in requestSync() }
        }
    }
}
