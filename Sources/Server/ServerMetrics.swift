import Metrics
import NIOConcurrencyHelpers
import NIOPosix

/// The application's metrics (the transport's live in H2).
///
/// The scoring path records into a shard of the calling thread (`MetricShard`): plain counts
/// and buffered observations behind a lock only that thread takes per request, so event loops
/// never contend for the swift-metrics handles (each Prometheus histogram has one lock shared by
/// every thread). A shard is flushed into the handles when its buffers fill, and every shard
/// before /metrics is rendered (`flush`), so a scrape sees every request answered before it.
final class ServerMetrics: Sendable {
    let requestDuration = Timer(label: "scenescore_request_duration_seconds", preferredDisplayUnit: .seconds)
    let inferenceDuration = Timer(label: "scenescore_inference_duration_seconds", preferredDisplayUnit: .seconds)
    let candidatesScored = Counter(label: "scenescore_candidates_scored_total")
    /// Requests per forward pass: how much dynamic batching is happening.
    let batchRequests = Recorder(label: "scenescore_batch_requests", aggregate: true)
    fileprivate struct RequestKey: Hashable { let scene: String; let status: Int }
    /// Handles are created once and cached: creating one goes through the factory's lock.
    private let requestCounters = NIOLockedValueBox<[RequestKey: Counter]>([:])
    private let threadShard = ThreadSpecificVariable<MetricShard>()
    private let shards = NIOLockedValueBox<[MetricShard]>([])

    private var shard: MetricShard {
        if let shard = threadShard.currentValue { return shard }
        let shard = MetricShard()
        threadShard.currentValue = shard
        shards.withLockedValue { $0.append(shard) }
        return shard
    }

    /// Counts `count` requests. `scene` must be a known scene or a fixed placeholder, never raw
    /// client input: label values are a cardinality budget.
    func countRequest(scene: String, status: Int, count: Int = 1) {
        record { $0.requests[RequestKey(scene: scene, status: status), default: 0] += count }
    }

    /// One request's time from its decoding to its encoded response.
    func recordRequest(nanoseconds: UInt64) { record { $0.requestNanoseconds.append(nanoseconds) } }

    /// One forward pass: its time, the candidates it scored and the requests it served.
    func recordForwardPass(nanoseconds: UInt64, candidates: Int, requests: Int) {
        record { shard in
            shard.inferenceNanoseconds.append(nanoseconds)
            shard.batchRequests.append(requests)
            shard.candidates += candidates
        }
    }

    /// Moves every shard's records into the swift-metrics handles.
    func flush() {
        for shard in shards.withLockedValue({ $0 }) { shard.withLock { publish(&$0) } }
    }

    private func record(_ update: (inout MetricShard.Records) -> Void) {
        shard.withLock { records in
            update(&records)
            if records.isFull { publish(&records) }
        }
    }

    private func publish(_ records: inout MetricShard.Records) {
        for (key, count) in records.requests where count > 0 || !records.seen.contains(key) {
            counter(key).increment(by: count)
            records.seen.insert(key)
        }
        var i = records.requests.values.startIndex  // zeroed in place: the keys' storage is kept
        while i != records.requests.values.endIndex {
            records.requests.values[i] = 0
            records.requests.values.formIndex(after: &i)
        }
        for ns in records.requestNanoseconds { requestDuration.recordNanoseconds(Int64(clamping: ns)) }
        for ns in records.inferenceNanoseconds { inferenceDuration.recordNanoseconds(Int64(clamping: ns)) }
        for n in records.batchRequests { batchRequests.record(n) }
        if records.candidates > 0 { candidatesScored.increment(by: records.candidates) }
        records.clearObservations()
    }

    private func counter(_ key: RequestKey) -> Counter {
        requestCounters.withLockedValue { cache in
            if let c = cache[key] { return c }
            let c = Counter(label: "scenescore_requests_total", dimensions: [("scene", key.scene), ("status", String(key.status))])
            cache[key] = c
            return c
        }
    }
}

/// One thread's pending metric records. Its lock is taken per request by its own thread and,
/// rarely, by a flush from another; the buffers keep their capacity, so recording allocates
/// nothing once a thread has seen its scenes and statuses.
final class MetricShard: @unchecked Sendable {
    struct Records {
        static let capacity = 512
        /// Counts since the last publish, per scene and status; entries stay (at 0) once made.
        fileprivate var requests: [ServerMetrics.RequestKey: Int] = [:]
        /// Keys already published once (a count of 0 still creates its series).
        fileprivate var seen: Set<ServerMetrics.RequestKey> = []
        var requestNanoseconds: [UInt64] = []
        var inferenceNanoseconds: [UInt64] = []
        var batchRequests: [Int] = []
        var candidates = 0

        init() {
            requestNanoseconds.reserveCapacity(Self.capacity)
            inferenceNanoseconds.reserveCapacity(Self.capacity)
            batchRequests.reserveCapacity(Self.capacity)
        }

        var isFull: Bool {
            requestNanoseconds.count >= Self.capacity || inferenceNanoseconds.count >= Self.capacity
        }

        mutating func clearObservations() {
            requestNanoseconds.removeAll(keepingCapacity: true)
            inferenceNanoseconds.removeAll(keepingCapacity: true)
            batchRequests.removeAll(keepingCapacity: true)
            candidates = 0
        }
    }

    private let lock = NIOLock()
    private var records = Records()

    func withLock<R>(_ body: (inout Records) -> R) -> R {
        lock.withLock { body(&records) }
    }
}
