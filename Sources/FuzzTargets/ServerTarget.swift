import Foundation
import H2
import Logging
import Model
import NIOConcurrencyHelpers
import NIOCore
import Scenes
import Server
import Wire

// The serving listener without TLS: the input is what a client sends on an h2c connection
// (preface, SETTINGS, HEADERS, DATA, …), fed to the real nghttp2 server session and the real
// ScoringApp, which scores with a real registry (the default model, canonical scenes and scenes
// behind each bundled plugin, one with a canary). Two connections per input:
//   A: one read, requests answered at once (batched when they complete together);
//   B: one read per client frame, with cross-request queueing (`--max-queue-delay-us`), so
//      every scoring request is answered later, through the deferred-response path.

/// The transport's limits, small enough that inputs the fuzzer's length limit allows reach
/// each of them (body, header list and fields, concurrent streams, CONTINUATION frames).
private let limits: H2Limits = {
    var limits = H2Limits()
    limits.maxBodyBytes = 4096
    limits.maxHeaderListBytes = 1024
    limits.maxHeaderFields = 16
    limits.maxConcurrentStreams = 8
    limits.maxContinuations = 2
    return limits
}()

/// The scoring apps and the registry behind them, made once.
private struct ServingFixture: Sendable {
    let immediate: ScoringApp
    let queued: ScoringApp

    static let shared: ServingFixture = {
        let modelDirectory = FuzzModels.servedModelDirectory
        let backbone = try! Backbone(path: modelDirectory + "/backbone.safetensors")
        let store = try! StateDirectoryStore(root: FuzzEnvironment.scratch + "/serving-state", backboneHash: backbone.contentHash)
        let registry = SceneRegistry()
        let failures = try! registry.open(store: store, backbone: backbone, pluginDirectory: FuzzEnvironment.pluginDirectory,
                                          keepVersions: 5, seedDirectory: modelDirectory)
        precondition(failures.isEmpty, "scenes failed to load: \(failures)")
        // A scene behind each plugin, and a canary taking half of apparel's requests.
        for (i, (scene, plugin)) in [("styles", "apparel"), ("gadgets", "electronics"), ("cosmetics", "beauty")].enumerated() {
            _ = try! registry.register(scene: scene, plugin: plugin, pluginConfig: "{}",
                                       head: headBytes(scene: scene, version: "\(scene)-1", seed: UInt64(40 + i), backbone: backbone.spec))
        }
        _ = try! registry.push(scene: "apparel", head: headBytes(scene: "apparel", version: "apparel-2", seed: 50, backbone: backbone.spec),
                               label: .canary, canaryShare: 0.5, plugin: nil, expectedGeneration: nil)
        let logger = Logger(label: "fuzz") { _ in SwiftLogNoOpLogHandler() }
        let immediate = ScoringApp(registry: registry, maxCandidates: 64, maxBodyBytes: limits.maxBodyBytes,
                                   logger: logger, renderMetrics: { Array("# metrics\n".utf8) })
        let queued = ScoringApp(registry: registry, maxCandidates: 64, maxBodyBytes: limits.maxBodyBytes,
                                maxQueueDelayMicroseconds: 50, logger: logger, renderMetrics: { Array("# metrics\n".utf8) })
        immediate.setReady(true)
        queued.setReady(true)
        return ServingFixture(immediate: immediate, queued: queued)
    }()

    static func headBytes(scene: String, version: String, seed: UInt64, backbone: BackboneSpec) -> [UInt8] {
        let path = FuzzEnvironment.scratch + "/\(version).safetensors"
        try! DefaultModel.writeHead(HeadSpec(scene: scene, version: version, input: backbone.outputWidth, bottleneck: 16,
                                             tower: [16], outputs: ["click", "purchase"]), seed: seed, to: path)
        return Array(FileManager.default.contents(atPath: path)!)
    }
}

/// `h2-server`: client bytes of one connection. Every request the application answered reaches
/// the client with the status and body it answered (unless the client reset the stream or the
/// connection failed); every request the client completed is answered; an answered scoring
/// request is 200 only for a body the wire decoder accepts, with a response that decodes to its
/// request id and candidate count, and otherwise a problem with a 4xx status; both connections
/// answer each request alike.
public func fuzzH2Server(_ data: UnsafeRawBufferPointer) {
    let input = Array(data)
    let fixture = ServingFixture.shared
    let client = ClientView(input)

    let a = serve(input, reads: [input.count], app: fixture.immediate, client: client)
    var reads = client.boundaries
    if reads.last ?? 0 < input.count { reads.append(input.count) }
    let b = serve(input, reads: reads, app: fixture.queued, client: client)

    // The same request gets the same answer whether it was scored alone, batched or queued.
    for (stream, first) in a.answers {
        guard let second = b.answers[stream], first.request.body == second.request.body else { continue }
        require(first.response.status == second.response.status,
                "stream \(stream): \(first.response.status) on one connection, \(second.response.status) on the other")
        if first.response.status == 200, let x = decodedScores(first), let y = decodedScores(second) {
            require(x.count == y.count && zip(x, y).allSatisfy { abs($0 - $1) <= 1e-4 },
                    "stream \(stream): scores differ between the connections")
        } else if first.response.status != 200 {
            require(first.response.body == second.response.body, "stream \(stream): problem bodies differ between the connections")
        }
    }
}

private struct Answer {
    var request: (head: H2RequestHead, body: [UInt8])
    var response: H2Response
}

private struct Served {
    var answers: [Int32: Answer]
}

/// One connection: feeds the reads, waits for deferred answers, checks both sides.
private func serve(_ input: [UInt8], reads: [Int], app: ScoringApp, client: ClientView) -> Served {
    let recorder = RecordingHandler(app)
    let connection = try! InMemoryServerConnection(handler: recorder, limits: limits, eventLoop: FuzzEnvironment.eventLoop)
    var start = 0
    for end in reads where end > start {
        guard try! connection.receive(Array(input[start..<end])) else { break }
        start = end
    }
    require(try! connection.waitForDeferredResponses(timeout: .seconds(10)), "a deferred response never came")
    let output = try! connection.takeOutput()
    let failed = try! connection.protocolFailure != nil
    let server = ServerView(output)
    require(server.unreadable == nil, "server output is not HTTP/2 frames: \(server.unreadable!)")
    let answers = recorder.answers
    for (stream, answer) in answers.sorted(by: { $0.key < $1.key }) {
        trace("stream \(stream): \(answer.request.head.method) \(answer.request.head.path) → \(answer.response.status) "
              + String(decoding: answer.response.body.prefix(120), as: UTF8.self))
    }
    trace("client completed \(client.completed.sorted()), reset \(client.reset.sorted()); server reset \(server.reset.sorted()), "
          + "GOAWAY error \(server.goAwayError.map(String.init) ?? "none"), failure \(try! connection.protocolFailure ?? "none")")
    let lost = failed || server.goAwayError != nil

    for (stream, answer) in answers {
        checkApplication(answer, stream: stream)
        guard let sent = server.responses[stream], sent.status != nil else {
            require(lost || client.reset.contains(stream) || server.reset.contains(stream),
                    "stream \(stream): answered \(answer.response.status) but nothing was sent")
            continue
        }
        require(sent.status == answer.response.status, "stream \(stream): answered \(answer.response.status), sent \(sent.status!)")
        if sent.ended {
            require(sent.body == answer.response.body,
                    "stream \(stream): sent \(sent.body.count) body bytes of the \(answer.response.body.count) answered")
        }
    }
    if !lost {
        for stream in client.completed where !client.reset.contains(stream) && !server.reset.contains(stream) {
            require(answers[stream] != nil && server.responses[stream]?.status != nil,
                    "stream \(stream): the client completed its request and got no answer")
        }
    }
    return Served(answers: answers)
}

/// What the application answered, judged by the request alone.
private func checkApplication(_ answer: Answer, stream: Int32) {
    let (head, body) = answer.request
    let response = answer.response
    require(response.status >= 200 && response.status < 500 || response.status == 503,
            "stream \(stream): status \(response.status) for \(head.method) \(head.path): \(String(decoding: response.body, as: UTF8.self))")
    let contentType = response.headers.first { $0.name == "content-type" }?.value
    if response.status >= 400 {
        require(contentType == WireError.problemContentType, "stream \(stream): a \(response.status) that is no problem+json")
        if head.method != "HEAD" {
            let problem = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]
            require(problem?["status"] as? Int == response.status, "stream \(stream): problem body does not carry its status")
        }
    }
    guard head.method == "POST", head.path.split(separator: "?", maxSplits: 1).first == "/v1/score" else { return }
    let encoding = head.contentType.flatMap(WireEncoding.init(contentType:))
    let request = encoding.flatMap { e in body.withUnsafeBytes { try? WireCodec.decodeRequest($0, encoding: e, limits: WireLimits(maxCandidates: 64)) } }
    guard response.status == 200 else { return }
    guard let encoding, let request else {
        require(false, "stream \(stream): 200 for a body the wire decoder refuses")
        return
    }
    require(contentType == encoding.contentType, "stream \(stream): answered \(contentType ?? "nothing") to \(encoding.contentType)")
    let version = response.headers.first { $0.name == WireCodec.headVersionHeaderName }?.value
    switch encoding {
    case .binary:
        guard let decoded = try? response.body.withUnsafeBytes({ try WireCodec.decodeBinaryResponse($0) }) else {
            require(false, "stream \(stream): 200 with a binary response that does not decode")
            return
        }
        require(decoded.requestID == request.requestID && decoded.scene == request.scene
                && decoded.candidates == request.candidates && decoded.scores.count == request.candidates * decoded.outputs.count,
                "stream \(stream): response does not answer its request")
        require(version == WireCodec.headVersionHeader(decoded.headVersion), "stream \(stream): head-version header differs from the body")
    case .json:
        let object = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]
        // (request_id is compared only where a double holds it exactly: Foundation may parse it as one.)
        let id = (object?["request_id"] as? NSNumber)?.uint64Value
        require(object?["scene"] as? String == request.scene && (request.requestID >= 1 << 53 || id == request.requestID)
                && (object?["scores"] as? [Any])?.count == request.candidates,
                "stream \(stream): JSON response does not answer its request")
    }
}

/// The scores of a 200 response, either encoding.
private func decodedScores(_ answer: Answer) -> [Float]? {
    if answer.response.headers.contains(where: { $0.name == "content-type" && $0.value == WireEncoding.binary.contentType }) {
        return try? answer.response.body.withUnsafeBytes { try WireCodec.decodeBinaryResponse($0) }.scores
    }
    guard let object = try? JSONSerialization.jsonObject(with: Data(answer.response.body)) as? [String: Any],
          let scores = object["scores"] as? [[Double]] else { return nil }
    return scores.flatMap { $0.map(Float.init) }
}

/// Passes everything to the application and records each request with its answer, by stream.
private final class RecordingHandler: H2RequestHandler {
    private let app: any H2RequestHandler
    private let recorded = NIOLockedValueBox<[Int32: Answer]>([:])

    init(_ app: any H2RequestHandler) { self.app = app }

    var answers: [Int32: Answer] { recorded.withLockedValue { $0 } }

    private func record(_ head: H2RequestHead, _ body: [UInt8], _ response: H2Response) {
        recorded.withLockedValue { answers in
            require(answers[head.streamID] == nil, "stream \(head.streamID) answered twice")
            answers[head.streamID] = Answer(request: (head, body), response: response)
        }
    }

    func precheck(_ head: H2RequestHead) -> H2Response? {
        var head = head
        return precheck(tagging: &head)
    }

    func precheck(tagging head: inout H2RequestHead) -> H2Response? {
        let early = app.precheck(tagging: &head)
        if let early { record(head, [], early) }
        return early
    }

    func respond(to head: H2RequestHead, body: UnsafeRawBufferPointer) -> H2Response {
        let response = app.respond(to: head, body: body)
        record(head, Array(body), response)
        return response
    }

    func bodyTooLarge(_ head: H2RequestHead, limit: Int) -> H2Response {
        let response = app.bodyTooLarge(head, limit: limit)
        record(head, [], response)
        return response
    }

    func respond(toBatch requests: [H2CompletedRequest]) -> [H2Response] {
        let responses = app.respond(toBatch: requests)
        require(responses.count == requests.count, "\(responses.count) answers to a batch of \(requests.count)")
        for (request, response) in zip(requests, responses) { record(request.head, Array(request.body), response) }
        return responses
    }

    func answersLater(_ head: H2RequestHead) -> Bool { app.answersLater(head) }

    func respond(to head: H2RequestHead, body: [UInt8], responder: H2Responder) {
        app.respond(to: head, body: body, responder: H2Responder { [self] response in
            record(head, body, response)
            responder.complete(response)
        })
    }
}
