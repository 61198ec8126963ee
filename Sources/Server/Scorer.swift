import Foundation
import H2
import Logging
import Model
import NIOPosix
import Scenes
import Wire

/// POST /v1/score (Proto/WIRE.md): decode, pick the scene's version for the request id, map a
/// plugin scene's raw fields onto the canonical ones, batch, score, encode.
///
/// Runs on the connections' event loops; each loop thread has its own workspace (forward
/// scratch and the arena plugin transforms write into), so a request allocates no scratch.
final class Scorer: Sendable {
    private let registry: SceneRegistry
    private let limits: WireLimits
    private let metrics: ServerMetrics
    private let logger: Logger
    /// Thread-specific storage is what makes sharing the non-Sendable workspace type safe here.
    nonisolated(unsafe) private let workspaces = ThreadSpecificVariable<ScoringWorkspace>()

    /// Requests up to this many candidates are batched with others.
    static let batchableCandidates = 32
    /// Candidates per batched forward pass: bounds the latency a batch adds to its members.
    static let maxBatchCandidates = 256

    init(registry: SceneRegistry, limits: WireLimits, metrics: ServerMetrics, logger: Logger) {
        self.registry = registry
        self.limits = limits
        self.metrics = metrics
        self.logger = logger
    }

    /// A decoded request, validated against the version that will answer it.
    struct Job {
        let request: ScoreRequest
        let encoding: WireEncoding
        let version: SceneVersion
        let start: UInt64
        var scene: String { version.scene }
        var outputs: Int { version.head.spec.outputs.count }
    }

    enum Prepared {
        case answered(H2Response)
        case job(Job)
    }

    private var workspace: ScoringWorkspace {
        if let w = workspaces.currentValue { return w }
        let w = ScoringWorkspace()
        workspaces.currentValue = w
        return w
    }

    /// Decodes and validates one request (WIRE.md §5 order) against `snapshot`.
    func prepare(_ head: H2RequestHead, body: UnsafeRawBufferPointer, snapshot: SceneSnapshot?, ready: Bool) -> Prepared {
        let start = DispatchTime.now().uptimeNanoseconds
        guard let encoding = RequestTag(head.tag).encoding ?? head.contentType.flatMap(WireEncoding.init(contentType:)) else {
            return .answered(countedProblem(.unsupportedMediaType(head.contentType)))
        }
        guard let snapshot, ready else { return .answered(Responses.notReady()) }
        let request: ScoreRequest
        do {
            request = try WireCodec.decodeRequest(body, encoding: encoding, limits: limits)
        } catch {
            return .answered(countedProblem(error))
        }
        guard let scene = snapshot.scenes[request.scene] else {
            return .answered(countedProblem(.unknownScene(request.scene)))
        }
        let version = scene.version(for: request.requestID)
        let s = version.schema
        do {
            try request.check(against: WireSchema(contextIDs: s.contextIDs.count, contextDense: s.contextDense.count,
                                                  itemIDs: s.itemIDs.count, itemDense: s.itemDense.count))
        } catch {
            return .answered(countedProblem(error, scene: scene.name))
        }
        return .job(Job(request: request, encoding: encoding, version: version, start: start))
    }

    /// One request, scored alone (JSON, large, or the only one in its read).
    func score(_ job: Job, body: UnsafeRawBufferPointer, backbone: Backbone) -> H2Response {
        let n = job.request.candidates, k = job.outputs
        let workspace = self.workspace
        return withUnsafeTemporaryAllocation(of: Float.self, capacity: max(n * k, 1)) { scores in
            let inferenceStart = DispatchTime.now().uptimeNanoseconds
            let failure: H2Response? = job.request.withSections(requestBody: body) { cids, cdense, iids, idense in
                let raw = ScoringInput(candidates: n, contextIDs: cids, contextDense: cdense, itemIDs: iids, itemDense: idense)
                workspace.arena.reset(for: CollectionOfOne(job), spec: backbone.spec)
                let input: ScoringInput
                switch canonical(raw, job: job, spec: backbone.spec, arena: workspace.arena) {
                case .success(let i): input = i
                case .failure(let problem): return problem
                }
                Forward.score(input, backbone: backbone, head: job.version.head, workspace: workspace.forward, into: scores)
                return nil
            }
            if let failure { return failure }
            metrics.recordForwardPass(nanoseconds: DispatchTime.now().uptimeNanoseconds - inferenceStart, candidates: n, requests: 1)
            let response = finish(job, scores: scores, workspace: workspace)
            if response.status == 200 { metrics.countRequest(scene: job.scene, status: 200) }
            return response
        }
    }

    /// Scoring requests that arrived together: each is decoded and checked, small binary ones are
    /// batched (`score(batch:)`), the rest scored alone. Answers `responses[i]` for each index.
    func score(_ requests: [(index: Int, head: H2RequestHead, body: UnsafeRawBufferPointer)], bodies: [UnsafeRawBufferPointer],
               ready: Bool, into responses: inout [H2Response?]) {
        let snapshot = registry.snapshot
        var batch: [(index: Int, job: Job)] = []
        for r in requests {
            switch prepare(r.head, body: r.body, snapshot: snapshot, ready: ready) {
            case .answered(let response): responses[r.index] = response
            case .job(let job) where job.encoding == .binary && job.request.candidates <= Self.batchableCandidates:
                batch.append((r.index, job))
            case .job(let job): responses[r.index] = score(job, body: r.body, backbone: snapshot!.backbone)  // a job implies a snapshot
            }
        }
        if !batch.isEmpty { score(batch: batch, bodies: bodies, backbone: snapshot!.backbone, into: &responses) }
    }

    /// Jobs that arrived together (binary, small): the backbone runs once for all of them,
    /// whatever their scenes, and each version's head on its own rows. Answers `responses[i]`.
    func score(batch jobs: [(index: Int, job: Job)], bodies: [UnsafeRawBufferPointer], backbone: Backbone,
               into responses: inout [H2Response?]) {
        // Requests of one version next to each other: each head then runs once per chunk.
        let ordered = jobs.sorted { ObjectIdentifier($0.job.version) < ObjectIdentifier($1.job.version) }
        var chunk: [(index: Int, job: Job)] = []
        var candidates = 0
        for member in ordered {
            if candidates + member.job.request.candidates > Self.maxBatchCandidates {
                scoreChunk(chunk, bodies: bodies, backbone: backbone, into: &responses)
                chunk.removeAll(keepingCapacity: true)
                candidates = 0
            }
            chunk.append(member)
            candidates += member.job.request.candidates
        }
        scoreChunk(chunk, bodies: bodies, backbone: backbone, into: &responses)
    }

    private func scoreChunk(_ members: [(index: Int, job: Job)], bodies: [UnsafeRawBufferPointer], backbone: Backbone,
                            into responses: inout [H2Response?]) {
        guard let first = members.first else { return }
        if members.count == 1 {
            responses[first.index] = score(first.job, body: bodies[first.index], backbone: backbone)
            return
        }
        let workspace = self.workspace
        workspace.arena.reset(for: members.lazy.map(\.job), spec: backbone.spec)
        // Binary sections alias the request bodies, which stay valid for the whole batch call.
        var inputs: [ScoringInput] = [], scored: [(index: Int, job: Job)] = [], runs: [HeadRun] = []
        inputs.reserveCapacity(members.count)
        for m in members {
            let raw = m.job.request.withSections(requestBody: bodies[m.index]) { cids, cdense, iids, idense in
                ScoringInput(candidates: m.job.request.candidates, contextIDs: cids, contextDense: cdense, itemIDs: iids, itemDense: idense)
            }
            switch canonical(raw, job: m.job, spec: backbone.spec, arena: workspace.arena) {
            case .failure(let problem): responses[m.index] = problem
            case .success(let input):
                inputs.append(input)
                if let last = runs.last, last.head === m.job.version.head {
                    runs[runs.count - 1] = HeadRun(head: last.head, requests: last.requests + 1)
                } else {
                    runs.append(HeadRun(head: m.job.version.head, requests: 1))
                }
                scored.append(m)
            }
        }
        let total = scored.reduce(0) { $0 + $1.job.request.candidates * $1.job.outputs }
        let candidates = inputs.reduce(0) { $0 + $1.candidates }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: max(total, 1)) { scores in
            let inferenceStart = DispatchTime.now().uptimeNanoseconds
            Forward.score(batch: inputs, runs: runs, backbone: backbone, workspace: workspace.forward, into: scores)
            metrics.recordForwardPass(nanoseconds: DispatchTime.now().uptimeNanoseconds - inferenceStart, candidates: candidates,
                                      requests: scored.count)
            var offset = 0, run = (scene: "", ok: 0)
            for m in scored {
                let count = m.job.request.candidates * m.job.outputs
                let response = finish(m.job, scores: UnsafeMutableBufferPointer(rebasing: scores[offset..<(offset + count)]), workspace: workspace)
                responses[m.index] = response
                offset += count
                // Requests are ordered by version, so one scene's are consecutive: one count each.
                if m.job.scene != run.scene {
                    if run.ok > 0 { metrics.countRequest(scene: run.scene, status: 200, count: run.ok) }
                    run = (m.job.scene, 0)
                }
                if response.status == 200 { run.ok += 1 }
            }
            if run.ok > 0 { metrics.countRequest(scene: run.scene, status: 200, count: run.ok) }
        }
    }

    /// The canonical input of a job: the raw one, or what its plugin makes of it (in the arena).
    private enum Canonical {
        case success(ScoringInput)
        case failure(H2Response)
    }

    private func canonical(_ raw: ScoringInput, job: Job, spec: BackboneSpec, arena: CanonicalArena) -> Canonical {
        guard let plugin = job.version.plugin else { return .success(raw) }
        let n = raw.candidates
        let cids = arena.ids(spec.contextFields.count), cdense = arena.floats(spec.contextDense)
        let iids = arena.ids(n * spec.itemFields.count), idense = arena.floats(n * spec.itemDense)
        do {
            try plugin.transform(raw, contextIDs: cids, contextDense: cdense, itemIDs: iids, itemDense: idense)
        } catch {
            return .failure(countedProblem(WireError(status: 422, slug: "plugin-rejected",
                                                     detail: "scene '\(job.scene)' plugin '\(plugin.name)': \(error.message)"), scene: job.scene))
        }
        return .success(ScoringInput(candidates: n,
                                     contextIDs: UnsafeRawBufferPointer(start: cids, count: 4 * spec.contextFields.count),
                                     contextDense: UnsafeRawBufferPointer(start: cdense, count: 4 * spec.contextDense),
                                     itemIDs: UnsafeRawBufferPointer(start: iids, count: 4 * n * spec.itemFields.count),
                                     itemDense: UnsafeRawBufferPointer(start: idense, count: 4 * n * spec.itemDense)))
    }

    /// Post-processes (plugin), encodes a job's scores and records its latency; the caller counts
    /// the 200s (a failing plugin's problem is counted here).
    private func finish(_ job: Job, scores: UnsafeMutableBufferPointer<Float>, workspace: ScoringWorkspace) -> H2Response {
        let head = job.version.head
        let n = job.request.candidates
        // Finite but huge dense values can overflow the forward pass (inf − inf is NaN). That is
        // the request's doing, not the plugin's or the server's: a 422 naming the candidate.
        if let bad = NonFinite.firstIndex(in: UnsafeBufferPointer(scores)) {
            let outputs = head.spec.outputs.count
            return countedProblem(.unscorableValues(
                "candidate \(bad / outputs): the model's '\(head.spec.outputs[bad % outputs])' score is \(scores[bad]): "
                + "the request's dense values are too large for scene '\(job.scene)' to score"), scene: job.scene)
        }
        if let plugin = job.version.plugin, plugin.hasPostprocess {
            do { try plugin.postprocess(scores, candidates: n, outputs: head.spec.outputs) } catch {
                logger.error("plugin.postprocess.failed", metadata: ["scene": "\(job.scene)", "plugin": "\(plugin.name)", "error": "\(error.message)"])
                return countedProblem(WireError(status: 500, slug: "plugin-failed",
                                                detail: "scene '\(job.scene)' plugin '\(plugin.name)': \(error.message)"), scene: job.scene)
            }
        }
        var body = workspace.responseBodies.take()  // the encoder reserves the exact size
        WireCodec.encodeResponse(job.encoding, requestID: job.request.requestID, scene: job.scene,
                                 headVersion: head.spec.version, outputs: head.spec.outputs, scores: UnsafeBufferPointer(scores),
                                 candidates: n, into: &body)
        metrics.recordRequest(nanoseconds: DispatchTime.now().uptimeNanoseconds - job.start)
        return H2Response(status: 200, headers: workspace.responseHeaders.headers(for: job.version, encoding: job.encoding), body: body)
    }

    /// A sent response's body, kept by this thread's workspace to encode a later one into.
    func recycle(_ body: [UInt8]) { workspace.responseBodies.give(body) }

    /// A scoring error: counted under the scene when it is known, else under "_invalid".
    func countedProblem(_ error: WireError, scene: String = "_invalid") -> H2Response {
        metrics.countRequest(scene: scene, status: error.status)
        logger.debug("score.rejected", metadata: ["status": "\(error.status)", "detail": "\(error.detail)"])
        return Responses.problem(error)
    }
}

/// One event-loop thread's scratch: the forward pass's, and the canonical fields of plugin
/// scenes' requests.
final class ScoringWorkspace {
    let forward = ForwardWorkspace()
    let arena = CanonicalArena()
    let responseHeaders = ResponseHeaders()
    let responseBodies = ResponseBodies()
}

/// Response bodies the transport has sent, reused for the next responses on this thread, so
/// encoding a response allocates only when it is larger than every body kept.
final class ResponseBodies {
    private var spare: [[UInt8]] = []
    /// Enough for the streams one read usually completes; bodies over `largest` are dropped so
    /// a rare huge response does not pin its memory.
    static let kept = 8
    static let largest = 1 << 20

    func take() -> [UInt8] {
        guard var body = spare.popLast() else { return [] }
        body.removeAll(keepingCapacity: true)
        return body
    }

    func give(_ body: [UInt8]) {
        if spare.count < Self.kept && body.capacity <= Self.largest { spare.append(body) }
    }
}

/// A 200's header list, kept for the head version and encoding that last answered: consecutive
/// requests mostly share both, and then share one list instead of each building its own. Keyed
/// by the version's name, not the object: a weak reference would give every `SceneVersion` a
/// side table, and each retain and release of it would take the runtime's slow path.
final class ResponseHeaders {
    private var version = ""
    private var encoding = WireEncoding.binary
    private var headers: [(name: String, value: String)] = []

    func headers(for version: SceneVersion, encoding: WireEncoding) -> [(name: String, value: String)] {
        let name = version.head.spec.version
        if !headers.isEmpty && encoding == self.encoding && name == self.version { return headers }
        headers = [("content-type", encoding.contentType), (WireCodec.headVersionHeaderName, WireCodec.headVersionHeader(name))]
        self.version = name
        self.encoding = encoding
        return headers
    }
}

/// Bump allocation for plugin transforms' outputs: sized for a whole batch before any transform
/// writes, so the regions handed out stay valid (and distinct) until the batch is scored.
final class CanonicalArena {
    private var idStorage = UnsafeMutablePointer<UInt32>.allocate(capacity: 256)
    private var floatStorage = UnsafeMutablePointer<Float>.allocate(capacity: 1024)
    private var idCapacity = 256, floatCapacity = 1024
    private var idUsed = 0, floatUsed = 0

    deinit {
        idStorage.deallocate()
        floatStorage.deallocate()
    }

    /// Makes room for every plugin job of `jobs`, and starts handing out from the beginning.
    func reset<C: Sequence>(for jobs: C, spec: BackboneSpec) where C.Element == Scorer.Job {
        var ids = 0, floats = 0
        for job in jobs where job.version.plugin != nil {
            let n = job.request.candidates
            ids += spec.contextFields.count + n * spec.itemFields.count
            floats += spec.contextDense + n * spec.itemDense
        }
        if ids > idCapacity {
            idStorage.deallocate()
            idCapacity = max(ids, idCapacity * 2)
            idStorage = .allocate(capacity: idCapacity)
        }
        if floats > floatCapacity {
            floatStorage.deallocate()
            floatCapacity = max(floats, floatCapacity * 2)
            floatStorage = .allocate(capacity: floatCapacity)
        }
        idUsed = 0
        floatUsed = 0
    }

    func ids(_ count: Int) -> UnsafeMutablePointer<UInt32> {
        precondition(idUsed + count <= idCapacity, "CanonicalArena: not reserved")
        defer { idUsed += count }
        return idStorage + idUsed
    }

    func floats(_ count: Int) -> UnsafeMutablePointer<Float> {
        precondition(floatUsed + count <= floatCapacity, "CanonicalArena: not reserved")
        defer { floatUsed += count }
        return floatStorage + floatUsed
    }
}
