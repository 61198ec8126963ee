import Foundation
import H2
import Logging
import Scenes
import Synchronization
import Wire

/// The serving listener (Proto/WIRE.md §1, DESIGN.md "Serving"): routes, readiness and the ops
/// endpoints; scoring itself is the `Scorer`'s. Runs on the connections' event loops.
public final class ScoringApp: H2RequestHandler {
    private let registry: SceneRegistry
    private let maxBodyBytes: Int
    private let metrics: ServerMetrics
    private let scorer: Scorer
    /// Read by every request on every event loop: atomics, not locks.
    private let ready = AtomicFlag()
    private let draining = AtomicFlag()
    private let renderMetrics: @Sendable () -> [UInt8]
    /// Cross-connection batching; nil when the queue delay is 0 (the default).
    private let batchQueue: BatchQueue?

    public init(registry: SceneRegistry, maxCandidates: Int, maxBodyBytes: Int, maxQueueDelayMicroseconds: Int = 0,
                logger: Logger, renderMetrics: @escaping @Sendable () -> [UInt8]) {
        self.registry = registry
        self.maxBodyBytes = maxBodyBytes
        self.renderMetrics = renderMetrics
        let metrics = ServerMetrics()
        self.metrics = metrics
        let scorer = Scorer(registry: registry, limits: WireLimits(maxCandidates: maxCandidates), metrics: metrics, logger: logger)
        self.scorer = scorer
        let ready = self.ready
        self.batchQueue = maxQueueDelayMicroseconds > 0
            ? BatchQueue(delay: .microseconds(Int64(maxQueueDelayMicroseconds)), scorer: scorer,
                         isReady: { ready.isSet && registry.snapshot != nil })
            : nil
    }

    /// Marks the server ready once the models are loaded and warmed. Each scene's request
    /// counter is created at zero, so dashboards see the series before the first request.
    public func setReady(_ value: Bool) {
        if value, let snapshot = registry.snapshot {
            for scene in snapshot.sortedSceneNames { metrics.countRequest(scene: scene, status: 200, count: 0) }
        }
        ready.set(value)
    }
    /// Shutdown has begun: /readyz turns 503 so balancers stop sending, while requests that
    /// still arrive (in-flight streams, stragglers before GOAWAY lands) are scored as usual.
    public func setDraining() { draining.set(true) }
    private var isReady: Bool { ready.isSet && registry.snapshot != nil }
    private var isDraining: Bool { draining.isSet }

    public func precheck(_ head: H2RequestHead) -> H2Response? {
        var head = head
        return precheck(tagging: &head)
    }

    /// Routes the request and, for scoring, reads its content type, once: both go in `head.tag`
    /// (`RequestTag`) for `respond`.
    public func precheck(tagging head: inout H2RequestHead) -> H2Response? {
        guard let route = Route(path: head.path) else { return Responses.problem(.notFound(path: head.path)) }
        head.tag = RequestTag(route: route).raw
        guard route.allows(head.method) else {
            var r = Responses.problem(.methodNotAllowed(method: head.method, path: head.path, allowed: route.allowed))
            r.headers.append(("allow", route.allowed))
            return r
        }
        guard route == .score else { return nil }
        guard let encoding = head.contentType.flatMap(WireEncoding.init(contentType:)) else {
            return scorer.countedProblem(.unsupportedMediaType(head.contentType))
        }
        head.tag = RequestTag(route: route, encoding: encoding).raw
        guard isReady else { return Responses.notReady() }
        if let length = head.contentLength, length > maxBodyBytes {
            return scorer.countedProblem(.bodyTooLarge(limit: maxBodyBytes))
        }
        return nil
    }

    public func bodyTooLarge(_ head: H2RequestHead, limit: Int) -> H2Response {
        scorer.countedProblem(.bodyTooLarge(limit: limit))
    }

    public func respond(to head: H2RequestHead, body: UnsafeRawBufferPointer) -> H2Response {
        guard let route = Route(of: head) else { return Responses.problem(.notFound(path: head.path)) }
        return respond(route, head, body: body)
    }

    private func respond(_ route: Route, _ head: H2RequestHead, body: UnsafeRawBufferPointer) -> H2Response {
        var response: H2Response
        switch route {
        case .score:
            let snapshot = registry.snapshot
            switch scorer.prepare(head, body: body, snapshot: snapshot, ready: isReady) {
            case .answered(let r): return r
            case .job(let job): return scorer.score(job, body: body, backbone: snapshot!.backbone)  // a job implies a snapshot
            }
        case .scenes:
            let scenes = registry.snapshot.map { s in s.sortedSceneNames.map { SceneViews.served(s.scenes[$0]!) } } ?? []
            response = Responses.json(200, ["scenes": scenes])
        case .live:
            response = H2Response(status: 200, headers: Responses.jsonHeaders, body: Self.liveBody)
        case .readyz:
            response = isReady && !isDraining ? H2Response(status: 200, headers: Responses.jsonHeaders, body: Self.readyBody) : Responses.notReady()
        case .metrics:
            metrics.flush()  // every thread's pending records, so the scrape sees every request answered before it
            response = H2Response(status: 200, headers: [("content-type", "text/plain; version=0.0.4; charset=utf-8")], body: renderMetrics())
        case .modelReady(let scene):
            if !isReady {
                response = Responses.notReady()
            } else if registry.snapshot?.scenes[scene] != nil {
                response = Responses.json(200, ["name": scene, "ready": true])
            } else {
                response = Responses.problem(.unknownScene(scene))
            }
        }
        if head.method == "HEAD" { response.body = [] }
        return response
    }

    /// Every request that completed in one read. Small binary scoring requests are scored
    /// together (dynamic batching across scenes: one GEMM per backbone layer for all of them,
    /// then each head on its rows); everything else is answered one by one.
    public func respond(toBatch requests: [H2CompletedRequest]) -> [H2Response] {
        if requests.count == 1 { return [respond(to: requests[0].head, body: requests[0].body)] }
        var responses = [H2Response?](repeating: nil, count: requests.count)
        var scoring: [(index: Int, head: H2RequestHead, body: UnsafeRawBufferPointer)] = []
        for (i, r) in requests.enumerated() {
            guard let route = Route(of: r.head) else {
                responses[i] = Responses.problem(.notFound(path: r.head.path))
                continue
            }
            if route == .score && r.head.method == "POST" { scoring.append((i, r.head, r.body)) } else { responses[i] = respond(route, r.head, body: r.body) }
        }
        if !scoring.isEmpty { scorer.score(scoring, bodies: requests.map(\.body), ready: isReady, into: &responses) }
        return responses.map { $0! }
    }

    public func recycle(responseBody: [UInt8]) { scorer.recycle(responseBody) }

    public func answersLater(_ head: H2RequestHead) -> Bool {
        batchQueue != nil && head.method == "POST" && Route(of: head) == .score
    }

    public func respond(to head: H2RequestHead, body: [UInt8], responder: H2Responder) {
        guard let batchQueue else { return responder.complete(body.withUnsafeBytes { respond(to: head, body: $0) }) }
        batchQueue.enqueue(head, body: body, responder: responder)
    }

    // Probes run every few seconds from every balancer: their bodies are constants.
    private static let liveBody = Array(#"{"status":"live"}"#.utf8)
    private static let readyBody = Array(#"{"status":"ready"}"#.utf8)
}

/// A Bool that any thread reads and writes without a lock.
final class AtomicFlag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .acquiring) }
    func set(_ newValue: Bool) { value.store(newValue, ordering: .releasing) }
}
