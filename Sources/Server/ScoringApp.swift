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

    /// Marks the server ready once the models are loaded and warmed.
    public func setReady(_ value: Bool) { ready.withLockedValue { $0 = value } }
    /// Shutdown has begun: /readyz turns 503 so balancers stop sending, while requests that
    /// still arrive (in-flight streams, stragglers before GOAWAY lands) are scored as usual.
    public func setDraining() { draining.withLockedValue { $0 = true } }
    private var isReady: Bool { ready.withLockedValue { $0 } && registry.snapshot != nil }
    private var isDraining: Bool { draining.withLockedValue { $0 } }

    // MARK: - Routing

    private enum Route {
        case score, scenes, live, readyz, metrics, modelReady(String)
        var allowed: String { self == .score ? "POST" : "GET, HEAD" }
        static func == (a: Route, b: Route) -> Bool {
            if case .score = a, case .score = b { return true }
            return false
        }
    }

    private func route(_ rawPath: String) -> Route? {
        let path = rawPath.firstIndex(of: "?").map { String(rawPath[..<$0]) } ?? rawPath
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
        let isScore = route == .score
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

    private func score(_ head: H2RequestHead, body: UnsafeRawBufferPointer) -> H2Response {
        let start = DispatchTime.now().uptimeNanoseconds
        guard let encoding = head.contentType.flatMap(WireEncoding.init(contentType:)) else {
            return countedProblem(.unsupportedMediaType(head.contentType))
        }
        guard let snapshot = registry.snapshot, isReady else { return notReady() }
        let request: ScoreRequest
        do {
            request = try WireCodec.decodeRequest(body, encoding: encoding, limits: limits)
        } catch {
            return countedProblem(error)
        }
        guard let scene = snapshot.scenes[request.scene] else {
            return countedProblem(.unknownScene(request.scene))
        }
        let spec = snapshot.backbone.spec
        let schema = WireSchema(contextIDs: spec.contextFields.count, contextDense: spec.contextDense,
                                itemIDs: spec.itemFields.count, itemDense: spec.itemDense)
        do {
            try request.check(against: schema)
        } catch {
            return countedProblem(error, scene: scene.name)
        }
        let head = scene.head
        let outputs = head.spec.outputs
        let n = request.candidates
        let workspace = workspaces.currentValue ?? {
            let w = ForwardWorkspace()
            workspaces.currentValue = w
            return w
        }()
        var responseBody: [UInt8] = []
        let inferenceStart = DispatchTime.now().uptimeNanoseconds
        withUnsafeTemporaryAllocation(of: Float.self, capacity: max(n * outputs.count, 1)) { scores in
            request.withSections(requestBody: body) { cids, cdense, iids, idense in
                let input = ScoringInput(candidates: n, contextIDs: cids, contextDense: cdense, itemIDs: iids, itemDense: idense)
                Forward.score(input, backbone: snapshot.backbone, head: head, workspace: workspace, into: scores)
            }
            metrics.inferenceDuration.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - inferenceStart))
            responseBody.reserveCapacity(64 + n * outputs.count * 4)
            WireCodec.encodeResponse(encoding, requestID: request.requestID, scene: scene.name, headVersion: head.spec.version,
                                     outputs: outputs, scores: UnsafeBufferPointer(scores), candidates: n, into: &responseBody)
        }
        metrics.candidatesScored.increment(by: n)
        metrics.countRequest(scene: scene.name, status: 200)
        metrics.requestDuration.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - start))
        return H2Response(status: 200, headers: [("content-type", encoding.contentType),
                                                 ("x-scenescore-head-version", WireCodec.headVersionHeader(head.spec.version))],
                          body: responseBody)
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
        return problem(error)
    }
}
