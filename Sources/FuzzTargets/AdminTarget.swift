import Dispatch
import Foundation
import H2
import Logging
import Model
import Scenes
import Server

// The admin API's request handling (Proto/ADMIN.md) against a registry on a fresh state
// directory, seeded with the small model's three scenes, for each input. The bundled plugins
// are in its plugin directory. Requests go straight to the AdminApp (the HTTP/2 layer under it
// is the h2-server target's), writes through its deferred path on its own queue.
//
// Input: up to 8 requests separated by a line "--" (CRLF line ends: "\r\n--\r\n"), each
//   METHOD PATH\n
//   name: value\n        (any number of header lines: authorization, if-match,
//   \n                    content-length, x-scenescore-plugin-config, …)
//   body bytes            (a head upload is a safetensors file; labels and rollback take JSON)

private let adminToken = "fuzz-token"
private let separator = Array("\r\n--\r\n".utf8)
/// Names each input's state directory. The fuzzer runs inputs one at a time, on one thread.
nonisolated(unsafe) private var iteration = 0

/// `admin`: every answer is a status the API documents (no 5xx but 503), a refusal is a
/// problem+json carrying its status, a refused write changes nothing (record and served
/// versions), a 2xx write leaves the record's labels on kept versions and the served scene on
/// those labels, and what is committed is what a restarted server reads back.
public func fuzzAdmin(_ data: UnsafeRawBufferPointer) {
    iteration += 1
    let root = FuzzEnvironment.scratch + "/admin-\(iteration)"
    defer { try? FileManager.default.removeItem(atPath: root) }
    // A copy of a state directory seeded once (seeding stages, hashes and fsyncs every head).
    try! FileManager.default.copyItem(atPath: seededState, toPath: root)
    let backbone = FuzzModels.smallBackbone
    let registry = SceneRegistry()
    let store = try! StateDirectoryStore(root: root, backboneHash: backbone.contentHash)
    let failures = try! registry.open(store: store, backbone: backbone, pluginDirectory: FuzzEnvironment.pluginDirectory,
                                      keepVersions: 3, seedDirectory: FuzzModels.smallModelDirectory)
    require(failures.isEmpty && registry.records.count == DefaultModel.scenes.count, "seed scenes failed to load: \(failures)")
    var changed = false
    let app = AdminApp(registry: registry, auth: AdminAuth(token: adminToken), maxUploadBytes: 1 << 20,
                       logger: Logger(label: "fuzz") { _ in SwiftLogNoOpLogHandler() })

    for (i, request) in split(Array(data)).prefix(8).enumerated() {
        guard let (head, body) = parseRequest(request, streamID: Int32(2 * i + 1)) else { continue }
        let scene = sceneOf(head.path)
        let recordBefore = scene.flatMap(registry.record)
        let servedBefore = scene.flatMap { registry.snapshot?.scenes[$0] }
        guard let response = answer(app, head, body) else { continue }
        trace("\(head.method) \(head.path): \(response.status) \(String(decoding: response.body.prefix(160), as: UTF8.self))")
        checkAnswer(response, head)
        let isWrite = ["PUT", "POST", "DELETE"].contains(head.method)
        if isWrite && (200..<300).contains(response.status) { changed = true }
        if let scene, isWrite, !(200..<300).contains(response.status) {
            require(registry.record(scene) == recordBefore, "a refused \(head.method) changed scene '\(scene)''s record")
            let served = registry.snapshot?.scenes[scene]
            require(served?.stable === servedBefore?.stable && served?.canary === servedBefore?.canary,
                    "a refused \(head.method) changed what scene '\(scene)' serves")
        }
        checkConsistency(registry)
    }

    // What is committed is what a restarted server reads back.
    guard changed else { return }
    let reopened = SceneRegistry()
    let reopenedStore = try! StateDirectoryStore(root: root, backboneHash: backbone.contentHash)
    let reloadFailures = try! reopened.open(store: reopenedStore, backbone: backbone, pluginDirectory: FuzzEnvironment.pluginDirectory,
                                            keepVersions: 3, seedDirectory: FuzzModels.smallModelDirectory)
    require(reloadFailures.isEmpty, "committed scenes fail to load after a restart: \(reloadFailures)")
    require(reopened.records == registry.records, "the state directory holds other records than were published")
    checkConsistency(reopened)
}

/// The state directory of a registry opened on the small model (its three scenes seeded).
private let seededState: String = {
    let root = FuzzEnvironment.scratch + "/admin-seeded"
    let store = try! StateDirectoryStore(root: root, backboneHash: FuzzModels.smallBackbone.contentHash)
    _ = try! SceneRegistry().open(store: store, backbone: FuzzModels.smallBackbone, pluginDirectory: FuzzEnvironment.pluginDirectory,
                                  keepVersions: 3, seedDirectory: FuzzModels.smallModelDirectory)
    return root
}()

private func split(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
    var parts: [ArraySlice<UInt8>] = []
    var start = 0, i = 0
    while i + separator.count <= bytes.count {
        if bytes[i] == separator[0], bytes[i..<(i + separator.count)].elementsEqual(separator) {
            parts.append(bytes[start..<i])
            i += separator.count
            start = i
        } else {
            i += 1
        }
    }
    parts.append(bytes[start...])
    return parts
}

/// The request line, header lines, an empty line, then the body. Nil without a request line.
private func parseRequest(_ bytes: ArraySlice<UInt8>, streamID: Int32) -> (H2RequestHead, [UInt8])? {
    var head = H2RequestHead()
    head.streamID = streamID
    head.authority = "localhost"
    var lineStart = bytes.startIndex
    var first = true
    while let newline = bytes[lineStart...].firstIndex(of: UInt8(ascii: "\n")) {
        let line = String(decoding: bytes[lineStart..<newline], as: UTF8.self)
        lineStart = newline + 1
        if first {
            let parts = line.split(separator: " ", maxSplits: 1)
            guard parts.count == 2 else { return nil }
            head.method = String(parts[0])
            head.path = String(parts[1])
            first = false
            continue
        }
        if line.isEmpty { break }
        guard let colon = line.firstIndex(of: ":") else { continue }
        let name = line[..<colon].lowercased()
        let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        switch name {
        case "authorization": head.authorization = value
        case "if-match": head.ifMatch = value
        case "content-type": head.contentType = value
        case "content-length": head.contentLength = Int(value)
        default: if name.hasPrefix("x-") { head.extensionHeaders.append((name, value)) }
        }
    }
    guard !first else { return nil }
    return (head, Array(bytes[lineStart...]))
}

/// As the transport does: precheck, then a read on the spot or a write answered later. Nil
/// when the transport would reset the stream instead (a body that contradicts content-length).
private func answer(_ app: AdminApp, _ head: H2RequestHead, _ body: [UInt8]) -> H2Response? {
    if let early = app.precheck(head) { return early }
    if let length = head.contentLength, length != body.count { return nil }
    guard app.answersLater(head) else { return body.withUnsafeBytes { app.respond(to: head, body: $0) } }
    let done = DispatchSemaphore(value: 0)
    let box = ResponseBox()
    app.respond(to: head, body: body, responder: H2Responder { response in
        box.response = response
        done.signal()
    })
    require(done.wait(timeout: .now() + 30) == .success, "a write was not answered within 30 s")
    return box.response!
}

private final class ResponseBox: @unchecked Sendable {
    // Written once by the responder before the semaphore is signalled, read after the wait.
    var response: H2Response?
}

private func sceneOf(_ path: String) -> String? {
    let segments = path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0]
        .split(separator: "/", omittingEmptySubsequences: false)
    guard segments.count >= 5, segments[1] == "admin", segments[2] == "v1", segments[3] == "scenes", !segments[4].isEmpty else { return nil }
    return String(segments[4])
}

private func checkAnswer(_ response: H2Response, _ head: H2RequestHead) {
    let documented: Set<Int> = [200, 201, 400, 401, 403, 404, 405, 409, 413, 422, 503]
    let text = String(decoding: response.body.prefix(300), as: UTF8.self)
    require(documented.contains(response.status), "\(head.method) \(head.path): status \(response.status): \(text)")
    guard response.status >= 400, head.method != "HEAD" else { return }
    require(response.headers.contains { $0.name == "content-type" && $0.value == "application/problem+json" },
            "\(head.method) \(head.path): a \(response.status) that is no problem+json")
    let problem = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]
    require(problem?["status"] as? Int == response.status, "\(head.method) \(head.path): problem body does not carry its status: \(text)")
}

/// Labels point at kept versions; the snapshot serves exactly the records' labelled versions.
private func checkConsistency(_ registry: SceneRegistry) {
    let records = registry.records
    let served = registry.snapshot?.scenes ?? [:]
    require(Set(served.keys) == Set(records.map(\.scene)), "served scenes \(served.keys.sorted()) are not the registered \(records.map(\.scene))")
    for record in records {
        let kept = Set(record.versions.map(\.version))
        require(kept.count == record.versions.count, "scene '\(record.scene)' keeps a version twice")
        require(kept.contains(record.stable), "scene '\(record.scene)': stable '\(record.stable)' is not kept")
        if let canary = record.canary {
            require(kept.contains(canary) && canary != record.stable, "scene '\(record.scene)': canary '\(canary)' is not a kept other version")
        }
        require(record.canaryShare >= 0 && record.canaryShare <= 1, "scene '\(record.scene)': canary share \(record.canaryShare)")
        guard let scene = served[record.scene] else { continue }
        require(scene.generation == record.generation && scene.stable.version == record.stable
                && scene.canary?.version == record.canary,
                "scene '\(record.scene)' serves generation \(scene.generation) \(scene.stable.version)/\(scene.canary?.version ?? "-"), "
                + "its record is \(record.generation) \(record.stable)/\(record.canary ?? "-")")
        require(scene.stable.record == record.version(record.stable), "scene '\(record.scene)': the served stable version is not the kept one")
    }
}
