import Metrics
import NIOConcurrencyHelpers

/// The application's metrics (the transport's live in H2). Handles are created once and cached:
/// creating a swift-metrics handle goes through the factory's lock, incrementing one does not.
final class ServerMetrics: Sendable {
    let requestDuration = Timer(label: "scenescore_request_duration_seconds", preferredDisplayUnit: .seconds)
    let inferenceDuration = Timer(label: "scenescore_inference_duration_seconds", preferredDisplayUnit: .seconds)
    let candidatesScored = Counter(label: "scenescore_candidates_scored_total")
    /// Requests per forward pass: how much dynamic batching is happening.
    let batchRequests = Recorder(label: "scenescore_batch_requests", aggregate: true)
    private struct RequestKey: Hashable { let scene: String; let status: Int }
    private let requestCounters = NIOLockedValueBox<[RequestKey: Counter]>([:])

    /// Counts one request. `scene` must be a known scene or a fixed placeholder, never raw
    /// client input: label values are a cardinality budget.
    func countRequest(scene: String, status: Int, count: Int = 1) {
        let key = RequestKey(scene: scene, status: status)
        let counter = requestCounters.withLockedValue { cache in
            if let c = cache[key] { return c }
            let c = Counter(label: "scenescore_requests_total", dimensions: [("scene", scene), ("status", String(status))])
            cache[key] = c
            return c
        }
        counter.increment(by: count)
    }
}
