import Foundation
import H2
import Logging
import Model
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Scenes
import Wire

/// The HTTP routes of SceneScore over the H2 transport (Proto/WIRE.md §1, DESIGN.md "Serving").
/// Runs on the connections' event loops; each loop thread has its own forward workspace.
public final class ScoringApp: H2RequestHandler {
    private let registry: SceneRegistry
    private let limits: WireLimits
    private let maxBodyBytes: Int
    private let metrics = ServerMetrics()
    private let ready = NIOLockedValueBox(false)
    private let draining = NIOLockedValueBox(false)
    private let renderMetrics: @Sendable () -> [UInt8]
    private let logger: Logger
    /// One workspace per event-loop thread: thread-specific storage is what makes sharing the
    /// non-Sendable workspace type safe here.
    nonisolated(unsafe) private let workspaces = ThreadSpecificVariable<ForwardWorkspace>()

    public init(registry: SceneRegistry, maxCandidates: Int, maxBodyBytes: Int, logger: Logger,
                renderMetrics: @escaping @Sendable () -> [UInt8]) {
        self.registry = registry
        self.limits = WireLimits(maxCandidates: maxCandidates)
        self.maxBodyBytes = maxBodyBytes
        self.logger = logger
        self.renderMetrics = renderMetrics
    }

    /// Marks the server ready once the models are loaded and warmed. Each scene's request
    /// counter is created at zero, so dashboards see the series before the first request.
    public func setReady(_ value: Bool) {
        if value, let snapshot = registry.snapshot {
            for scene in snapshot.sortedSceneNames { metrics.countRequest(scene: scene, status: 200, count: 0) }
        }
        ready.withLockedValue { $0 = value }
    }
    /// Shutdown has begun: /readyz turns 503 so balancers stop sending, while requests that
    /// still arrive (in-flight streams, stragglers before GOAWAY lands) are scored as usual.
    public func setDraining() { draining.withLockedValue { $0 = true } }
    private var isReady: Bool { ready.withLockedValue { $0 } && registry.snapshot != nil }
    private var isDraining: Bool { draining.withLockedValue { $0 } }

    // MARK: - Routing

    private enum Route {
        case score, scenes, live, readyz, metrics, modelReady(String)
        var isScore: Bool {
            if case .score = self { return true }
            return false
        }
        var allowed: String { isScore ? "POST" : "GET, HEAD" }
    }

    private func route(_ rawPath: String) -> Route? {
        let path = rawPath.utf8.firstIndex(of: UInt8(ascii: "?")).map { String(rawPath[..<$0]) } ?? rawPath
        switch path {
        case "/v1/score": return .score
        case "/v1/scenes": return .scenes
        case "/healthz", "/v2/health/live": return .live
        case "/readyz", "/v2/health/ready": return .readyz
        case "/metrics": return .metrics
        default:
            let parts = path.split(separator: "/", omittingEmptySubsequences: false)
            if parts.count == 5, parts[1] == "v2", parts[2] == "models", parts[4] == "ready", !parts[3].isEmpty {
                return .modelReady(String(parts[3]))
            }
            return nil
        }
    }

    public func precheck(_ head: H2RequestHead) -> H2Response? {
        guard let route = route(head.path) else { return problem(.notFound(path: head.path)) }
        let isScore = route.isScore
        let methodOK = isScore ? head.method == "POST" : (head.method == "GET" || head.method == "HEAD")
        guard methodOK else {
            var r = problem(.methodNotAllowed(method: head.method, path: head.path, allowed: route.allowed))
            r.headers.append(("allow", route.allowed))
            return r
        }
        guard isScore else { return nil }
        guard let type = head.contentType, WireEncoding(contentType: type) != nil else {
            return countedProblem(.unsupportedMediaType(head.contentType))
        }
        guard isReady else { return notReady() }
        if let length = head.contentLength, length > maxBodyBytes {
            return countedProblem(.bodyTooLarge(limit: maxBodyBytes))
        }
        return nil
    }

    public func bodyTooLarge(_ head: H2RequestHead, limit: Int) -> H2Response {
        countedProblem(.bodyTooLarge(limit: limit))
    }

    public func respond(to head: H2RequestHead, body: UnsafeRawBufferPointer) -> H2Response {
        guard let route = route(head.path) else { return problem(.notFound(path: head.path)) }
        var response: H2Response
        switch route {
        case .score: return score(head, body: body)
        case .scenes: response = scenesJSON()
        case .live: response = H2Response(status: 200, headers: Self.jsonHeaders, body: Self.liveBody)
        case .readyz:
            response = isReady && !isDraining ? H2Response(status: 200, headers: Self.jsonHeaders, body: Self.readyBody) : notReady()
        case .metrics:
            response = H2Response(status: 200, headers: [("content-type", "text/plain; version=0.0.4; charset=utf-8")], body: renderMetrics())
        case .modelReady(let scene):
            if let snapshot = registry.snapshot, isReady, snapshot.scenes[scene] != nil {
                response = json(200, ["name": scene, "ready": true])
            } else if registry.snapshot?.scenes[scene] == nil && isReady {
                response = problem(.unknownScene(scene))
            } else {
                response = notReady()
            }
        }
        if head.method == "HEAD" { response.body = [] }
        return response
    }

    // MARK: - POST /v1/score

    /// A decoded, validated scoring request, ready for the forward pass.
    private struct ScoringJob {
        let request: ScoreRequest
        let encoding: WireEncoding
        let scene: ServedScene
        let start: UInt64
    }

    private enum Prepared {
        case answered(H2Response)
        case job(ScoringJob)
    }

    /// Decodes and validates one request (WIRE.md §5 order) against `snapshot`.
    private func prepare(_ head: H2RequestHead, body: UnsafeRawBufferPointer, snapshot: SceneSnapshot?) -> Prepared {
        let start = DispatchTime.now().uptimeNanoseconds
        guard let encoding = head.contentType.flatMap(WireEncoding.init(contentType:)) else {
            return .answered(countedProblem(.unsupportedMediaType(head.contentType)))
        }
        guard let snapshot, isReady else { return .answered(notReady()) }
        let request: ScoreRequest
        do {
            request = try WireCodec.decodeRequest(body, encoding: encoding, limits: limits)
        } catch {
            return .answered(countedProblem(error))
        }
        guard let scene = snapshot.scenes[request.scene] else {
            return .answered(countedProblem(.unknownScene(request.scene)))
        }
        let spec = snapshot.backbone.spec
        let schema = WireSchema(contextIDs: spec.contextFields.count, contextDense: spec.contextDense,
                                itemIDs: spec.itemFields.count, itemDense: spec.itemDense)
        do {
            try request.check(against: schema)
        } catch {
            return .answered(countedProblem(error, scene: scene.name))
        }
        return .job(ScoringJob(request: request, encoding: encoding, scene: scene, start: start))
    }

    /// Encodes a job's scores and records its latency (callers count requests and candidates).
    private func finish(_ job: ScoringJob, scores: UnsafeBufferPointer<Float>) -> H2Response {
        let head = job.scene.head
        let n = job.request.candidates
        var body: [UInt8] = []
        body.reserveCapacity(64 + n * head.spec.outputs.count * 4)
        WireCodec.encodeResponse(job.encoding, requestID: job.request.requestID, scene: job.scene.name,
                                 headVersion: head.spec.version, outputs: head.spec.outputs, scores: scores,
                                 candidates: n, into: &body)
        metrics.requestDuration.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - job.start))
        return H2Response(status: 200, headers: [("content-type", job.encoding.contentType),
                                                 ("x-scenescore-head-version", WireCodec.headVersionHeader(head.spec.version))],
                          body: body)
    }

    private var workspace: ForwardWorkspace {
        if let w = workspaces.currentValue { return w }
        let w = ForwardWorkspace()
        workspaces.currentValue = w
        return w
    }

    private func score(_ head: H2RequestHead, body: UnsafeRawBufferPointer) -> H2Response {
        let snapshot = registry.snapshot
        switch prepare(head, body: body, snapshot: snapshot) {
        case .answered(let response): return response
        case .job(let job): return scoreAlone(job, body: body, backbone: snapshot!.backbone)  // a job implies a snapshot
        }
    }

    private func scoreAlone(_ job: ScoringJob, body: UnsafeRawBufferPointer, backbone: Backbone) -> H2Response {
        let n = job.request.candidates, k = job.scene.head.spec.outputs.count
        let workspace = self.workspace
        return withUnsafeTemporaryAllocation(of: Float.self, capacity: max(n * k, 1)) { scores in
            let inferenceStart = DispatchTime.now().uptimeNanoseconds
            job.request.withSections(requestBody: body) { cids, cdense, iids, idense in
                let input = ScoringInput(candidates: n, contextIDs: cids, contextDense: cdense, itemIDs: iids, itemDense: idense)
                Forward.score(input, backbone: backbone, head: job.scene.head, workspace: workspace, into: scores)
            }
            metrics.inferenceDuration.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - inferenceStart))
            metrics.candidatesScored.increment(by: n)
            metrics.countRequest(scene: job.scene.name, status: 200)
            metrics.batchRequests.record(1)
            return finish(job, scores: UnsafeBufferPointer(scores))
        }
    }

    /// Requests up to this many candidates are batched with others of the same scene.
    private static let batchableCandidates = 32
    /// Candidates per batched forward pass: bounds the latency a batch adds to its members.
    private static let maxBatchCandidates = 256

    /// Every request that completed in one read. Small binary scoring requests for the same
    /// scene are scored together (dynamic batching: one GEMM per layer for all of them, instead
    /// of one bandwidth-bound GEMV chain each); everything else is answered one by one.
    public func respond(toBatch requests: [H2CompletedRequest]) -> [H2Response] {
        if requests.count == 1 { return [respond(to: requests[0].head, body: requests[0].body)] }
        var responses = [H2Response?](repeating: nil, count: requests.count)
        var groups: [String: [(index: Int, job: ScoringJob)]] = [:]
        let snapshot = registry.snapshot
        for (i, r) in requests.enumerated() {
            guard r.head.method == "POST", case .score? = route(r.head.path) else {
                responses[i] = respond(to: r.head, body: r.body)
                continue
            }
            switch prepare(r.head, body: r.body, snapshot: snapshot) {
            case .answered(let response):
                responses[i] = response
            case .job(let job) where job.encoding == .binary && job.request.candidates <= Self.batchableCandidates:
                groups[job.scene.name, default: []].append((i, job))
            case .job(let job):
                responses[i] = scoreAlone(job, body: r.body, backbone: snapshot!.backbone)
            }
        }
        for (_, members) in groups {
            var chunk: [(index: Int, job: ScoringJob)] = []
            var candidates = 0
            for member in members {
                if candidates + member.job.request.candidates > Self.maxBatchCandidates {
                    scoreTogether(chunk, requests: requests, backbone: snapshot!.backbone, into: &responses)
                    chunk.removeAll(keepingCapacity: true)
                    candidates = 0
                }
                chunk.append(member)
                candidates += member.job.request.candidates
            }
            scoreTogether(chunk, requests: requests, backbone: snapshot!.backbone, into: &responses)
        }
        return responses.map { $0! }
    }

    /// One forward pass for `members` (same scene, binary encoding: their sections are views of
    /// request bodies that stay valid for the whole batch call).
    private func scoreTogether(_ members: [(index: Int, job: ScoringJob)], requests: [H2CompletedRequest],
                               backbone: Backbone, into responses: inout [H2Response?]) {
        guard let first = members.first else { return }
        if members.count == 1 {
            responses[first.index] = scoreAlone(first.job, body: requests[first.index].body, backbone: backbone)
            return
        }
        let head = first.job.scene.head, k = head.spec.outputs.count
        let inputs = members.map { m in
            m.job.request.withSections(requestBody: requests[m.index].body) { cids, cdense, iids, idense in
                ScoringInput(candidates: m.job.request.candidates, contextIDs: cids, contextDense: cdense, itemIDs: iids, itemDense: idense)
            }
        }
        let total = inputs.reduce(0) { $0 + $1.candidates }
        let workspace = self.workspace
        withUnsafeTemporaryAllocation(of: Float.self, capacity: max(total * k, 1)) { scores in
            let inferenceStart = DispatchTime.now().uptimeNanoseconds
            Forward.score(batch: inputs, backbone: backbone, head: head, workspace: workspace, into: scores)
            metrics.inferenceDuration.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - inferenceStart))
            metrics.candidatesScored.increment(by: total)
            metrics.countRequest(scene: first.job.scene.name, status: 200, count: members.count)
            metrics.batchRequests.record(members.count)
            var row = 0
            for (m, input) in zip(members, inputs) {
                let slice = UnsafeBufferPointer(rebasing: scores[(row * k)..<((row + input.candidates) * k)])
                responses[m.index] = finish(m.job, scores: slice)
                row += input.candidates
            }
        }
    }

    // MARK: - Other routes

    private func scenesJSON() -> H2Response {
        guard let snapshot = registry.snapshot else { return json(200, ["scenes": [Any]()]) }
        let spec = snapshot.backbone.spec
        let scenes: [[String: Any]] = snapshot.sortedSceneNames.map { name in
            let head = snapshot.scenes[name]!.head
            return ["scene": name, "head_version": head.spec.version, "parent_version": head.spec.parent,
                    "outputs": head.spec.outputs, "content_sha256": head.contentHash,
                    "context_ids": spec.contextFields.count, "context_dense": spec.contextDense,
                    "item_ids": spec.itemFields.count, "item_dense": spec.itemDense]
        }
        return json(200, ["scenes": scenes])
    }

    // Probes run every few seconds from every balancer: their bodies are constants.
    private static let jsonHeaders = [(name: "content-type", value: "application/json")]
    private static let liveBody = Array(#"{"status":"live"}"#.utf8)
    private static let readyBody = Array(#"{"status":"ready"}"#.utf8)

    private func json(_ status: Int, _ object: [String: Any]) -> H2Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return H2Response(status: status, headers: [("content-type", "application/json")], body: Array(data))
    }

    private func notReady() -> H2Response {
        var r = problem(.notReady("models are loading"))
        r.headers.append(("retry-after", "1"))
        return r
    }

    private func problem(_ error: WireError) -> H2Response {
        H2Response(status: error.status, headers: [("content-type", "application/problem+json")], body: error.problemJSON())
    }

    /// A scoring error: counted under the scene when it is known, else under "_invalid".
    private func countedProblem(_ error: WireError, scene: String = "_invalid") -> H2Response {
        metrics.countRequest(scene: scene, status: error.status)
        logger.debug("score.rejected", metadata: ["status": "\(error.status)", "detail": "\(error.detail)"])
        return problem(error)
    }
}
