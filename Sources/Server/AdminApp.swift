internal import CShims
import Dispatch
import Foundation
import H2
import Logging
import Scenes
import Wire

/// The admin listener (Proto/ADMIN.md): register scenes, push head versions, move labels, roll
/// back, remove. Reads answer on the event loop; writes (loading and validating heads, plugin
/// instances, fsyncs) run on one serial queue off the event loops and answer once published.
public final class AdminApp: H2RequestHandler {
    private let registry: SceneRegistry
    private let auth: AdminAuth
    private let maxUploadBytes: Int
    private let logger: Logger
    private let metrics: RegistryMetrics
    private let writes = DispatchQueue(label: "scenescore.admin.writes")

    init(registry: SceneRegistry, auth: AdminAuth, maxUploadBytes: Int, metrics: RegistryMetrics, logger: Logger) {
        self.metrics = metrics
        self.registry = registry
        self.auth = auth
        self.maxUploadBytes = maxUploadBytes
        self.logger = logger
    }

    /// An admin app with registry metrics of its own, for tests and the fuzzer (the server's
    /// shares its set with the gauges it updates every second).
    public convenience init(registry: SceneRegistry, auth: AdminAuth, maxUploadBytes: Int, logger: Logger) {
        self.init(registry: registry, auth: auth, maxUploadBytes: maxUploadBytes, metrics: RegistryMetrics(), logger: logger)
    }

    private enum Endpoint {
        case scenes
        case scene(String)
        case versions(String)
        case labels(String)
        case rollback(String)

        var scene: String? {
            switch self {
            case .scenes: return nil
            case .scene(let s), .versions(let s), .labels(let s), .rollback(let s): return s
            }
        }

        var allowed: String {
            switch self {
            case .scenes: return "GET, HEAD"
            case .scene: return "GET, HEAD, PUT, DELETE"
            case .versions: return "GET, HEAD, POST"
            case .labels: return "PUT"
            case .rollback: return "POST"
            }
        }
    }

    private struct Parsed {
        let endpoint: Endpoint
        let query: [String: String]
    }

    private static func parse(_ path: String) -> Parsed? {
        let parts = path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let segments = parts[0].split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        var query: [String: String] = [:]
        if parts.count == 2 {
            for pair in parts[1].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let key = String(kv[0]).removingPercentEncoding ?? String(kv[0])
                query[key] = kv.count == 2 ? (String(kv[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(kv[1])) : ""
            }
        }
        guard segments.count >= 4, segments[0].isEmpty, segments[1] == "admin", segments[2] == "v1", segments[3] == "scenes" else { return nil }
        switch segments.count {
        case 4: return Parsed(endpoint: .scenes, query: query)
        case 5 where !segments[4].isEmpty: return Parsed(endpoint: .scene(segments[4]), query: query)
        case 6 where !segments[4].isEmpty:
            switch segments[5] {
            case "versions": return Parsed(endpoint: .versions(segments[4]), query: query)
            case "labels": return Parsed(endpoint: .labels(segments[4]), query: query)
            case "rollback": return Parsed(endpoint: .rollback(segments[4]), query: query)
            default: return nil
            }
        default: return nil
        }
    }

    private static func isWrite(_ method: String) -> Bool { method == "PUT" || method == "POST" || method == "DELETE" }

    // MARK: - H2RequestHandler

    public func precheck(_ head: H2RequestHead) -> H2Response? {
        guard auth.allows(head) else {
            var r = Responses.problem(status: 401, slug: "unauthorized", "missing or wrong bearer token")
            r.headers.append(("www-authenticate", #"Bearer realm="scenescore-admin""#))
            return r
        }
        guard let parsed = Self.parse(head.path) else { return Responses.problem(.notFound(path: head.path)) }
        guard parsed.endpoint.allowed.split(separator: ",").contains(where: { $0.trimmingCharacters(in: .whitespaces) == head.method }) else {
            var r = Responses.problem(.methodNotAllowed(method: head.method, path: head.path, allowed: parsed.endpoint.allowed))
            r.headers.append(("allow", parsed.endpoint.allowed))
            return r
        }
        if let length = head.contentLength, length > maxUploadBytes { return uploadTooLarge() }
        return nil
    }

    public func bodyTooLarge(_ head: H2RequestHead, limit: Int) -> H2Response { uploadTooLarge() }

    private func uploadTooLarge() -> H2Response {
        Responses.problem(status: 413, slug: "body-too-large", "upload exceeds the limit of \(maxUploadBytes) bytes (--admin-max-upload-bytes)")
    }

    public func answersLater(_ head: H2RequestHead) -> Bool { Self.isWrite(head.method) }

    /// Reads.
    public func respond(to head: H2RequestHead, body: UnsafeRawBufferPointer) -> H2Response {
        metrics.updateGauges()
        guard let parsed = Self.parse(head.path) else { return Responses.problem(.notFound(path: head.path)) }
        var response: H2Response
        switch parsed.endpoint {
        case .scenes:
            response = Responses.json(200, ["scenes": registry.records.map(SceneViews.record)])
        case .scene(let scene):
            response = registry.record(scene).map { Responses.json(200, SceneViews.record($0)) } ?? unknown(scene)
        case .versions(let scene):
            response = registry.record(scene).map { r in
                Responses.json(200, ["scene": scene, "versions": r.versions.map { SceneViews.version($0, in: r) }])
            } ?? unknown(scene)
        case .labels, .rollback:
            response = Responses.problem(.methodNotAllowed(method: head.method, path: head.path, allowed: parsed.endpoint.allowed))
        }
        if head.method == "HEAD" { response.body = [] }
        return response
    }

    /// Writes: run on the admin queue, answered when durable and published.
    public func respond(to head: H2RequestHead, body: [UInt8], responder: H2Responder) {
        guard let parsed = Self.parse(head.path) else { return responder.complete(Responses.problem(.notFound(path: head.path))) }
        writes.async { [self] in
            // Loading, hashing, packing and warming a head is background work: at a low priority
            // (nice 10: about a tenth of a contended core) the scoring loops keep their core.
            scenescore_lower_thread_priority(10)
            let response: H2Response
            do throws(RegistryError) {
                response = try write(parsed, head: head, body: body)
            } catch {
                response = problem(error)
                logger.info("admin.refused", metadata: ["method": "\(head.method)", "path": "\(head.path)", "detail": "\(error.message)"])
            }
            if let scene = parsed.endpoint.scene { metrics.update(scene: scene, registry.snapshot?.scenes[scene]) }
            // An upload's transient copies (body, staged bytes, unpacked tensors) leave holes in
            // the heap between resident heads; hand their pages back so memory tracks the heads.
            releaseFreeHeapPages()
            metrics.updateGauges()
            responder.complete(response)
        }
    }

    private func write(_ parsed: Parsed, head: H2RequestHead, body: [UInt8]) throws(RegistryError) -> H2Response {
        let expected = try ifMatch(head)
        let q = parsed.query
        switch (parsed.endpoint, head.method) {
        case (.scene(let scene), "PUT"):
            let config = try pluginConfig(head)
            let record = try timedLoad { () throws(RegistryError) -> SceneRecord in
                try registry.register(scene: scene, plugin: q["plugin"].flatMap { $0.isEmpty ? nil : $0 },
                                      pluginConfig: config, head: body)
            }
            logger.info("admin.scene.registered", metadata: ["scene": "\(scene)", "version": "\(record.stable)", "plugin": "\(record.plugin ?? "-")"])
            return Responses.json(201, SceneViews.record(record))
        case (.scene(let scene), "DELETE"):
            try registry.remove(scene: scene, expectedGeneration: expected)
            logger.info("admin.scene.removed", metadata: ["scene": "\(scene)"])
            return Responses.json(200, ["scene": scene, "removed": true])
        case (.versions(let scene), "POST"):
            guard let label = VersionLabel(rawValue: q["label"] ?? "stable") else {
                throw RegistryError(.invalid, "label '\(q["label"]!)' must be stable, canary or none")
            }
            let share = try q["share"].map { s throws(RegistryError) in
                guard let v = Double(s) else { throw RegistryError(.invalid, "share '\(s)' is not a number") }
                return v
            }
            let plugin = try q["plugin"].map { name throws(RegistryError) in (name: name.isEmpty ? nil : name, config: try pluginConfig(head)) }
            let record = try timedLoad { () throws(RegistryError) -> SceneRecord in
                try registry.push(scene: scene, head: body, label: label, canaryShare: share, plugin: plugin, expectedGeneration: expected)
            }
            logger.info("admin.version.pushed", metadata: ["scene": "\(scene)", "version": "\(record.versions.last?.version ?? "")", "label": "\(label.rawValue)"])
            return Responses.json(200, SceneViews.record(record))
        case (.labels(let scene), "PUT"):
            let change = try decode(LabelChange.self, body, allowEmpty: false)
            var stable = change.stable
            if change.promoteCanary == true {
                guard let canary = registry.record(scene)?.canary else { throw RegistryError(.notFound, "scene '\(scene)' has no canary to promote") }
                stable = canary
            }
            let record = try registry.setLabels(scene: scene, stable: stable, canary: change.canary, canaryShare: change.canaryShare,
                                                expectedGeneration: expected)
            logger.info("admin.labels.set", metadata: ["scene": "\(scene)", "stable": "\(record.stable)", "canary": "\(record.canary ?? "-")"])
            return Responses.json(200, SceneViews.record(record))
        case (.rollback(let scene), "POST"):
            let target = try decode(RollbackTarget.self, body, allowEmpty: true)
            let record = try registry.rollback(scene: scene, to: target.version, expectedGeneration: expected)
            logger.info("admin.rollback", metadata: ["scene": "\(scene)", "stable": "\(record.stable)"])
            return Responses.json(200, SceneViews.record(record))
        default:
            return Responses.problem(.methodNotAllowed(method: head.method, path: head.path, allowed: parsed.endpoint.allowed))
        }
    }

    private func timedLoad(_ body: () throws(RegistryError) -> SceneRecord) throws(RegistryError) -> SceneRecord {
        let start = DispatchTime.now().uptimeNanoseconds
        do {
            let record = try body()
            metrics.loads.increment()
            metrics.loadDuration.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - start))
            return record
        } catch {
            if error.kind == .invalid || error.kind == .forbidden { metrics.loadFailures.increment() }
            throw error
        }
    }

    // MARK: - Request parts

    private func ifMatch(_ head: H2RequestHead) throws(RegistryError) -> Int? {
        guard let value = head.ifMatch else { return nil }
        let trimmed = value.trimmingCharacters(in: CharacterSet(charactersIn: "\" W/"))
        guard let generation = Int(trimmed) else { throw RegistryError(.invalid, "if-match '\(value)' is not a scene generation (an integer)") }
        return generation
    }

    private func pluginConfig(_ head: H2RequestHead) throws(RegistryError) -> String {
        guard let config = head.extensionHeaders.first(where: { $0.name == "x-scenescore-plugin-config" })?.value, !config.isEmpty else { return "{}" }
        guard (try? JSONSerialization.jsonObject(with: Data(config.utf8))) is [String: Any] else {
            throw RegistryError(.invalid, "x-scenescore-plugin-config is not a JSON object")
        }
        return config
    }

    /// Decodes a JSON body strictly (JSONDecoder: a boolean is no number, unknown keys refused).
    private func decode<T: Decodable>(_ type: T.Type, _ body: [UInt8], allowEmpty: Bool) throws(RegistryError) -> T {
        let text = body.isEmpty && allowEmpty ? Data("{}".utf8) : Data(body)
        do { return try JSONDecoder().decode(T.self, from: text) } catch let error as AdminBodyError {
            throw RegistryError(.malformed, error.description)
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            throw RegistryError(.malformed, "body: '\(context.codingPath.map(\.stringValue).joined(separator: "."))': \(context.debugDescription)")
        } catch {
            throw RegistryError(.malformed, "body must be a JSON object (\(error))")
        }
    }

    private func unknown(_ scene: String) -> H2Response { Responses.problem(.unknownScene(scene)) }

    private func problem(_ error: RegistryError) -> H2Response {
        switch error.kind {
        case .notFound: return Responses.problem(status: 404, slug: "not-found", error.message)
        case .conflict: return Responses.problem(status: 409, slug: "conflict", error.message)
        case .invalid: return Responses.problem(status: 422, slug: "invalid-head", error.message)
        case .malformed: return Responses.problem(status: 400, slug: "malformed-request", error.message)
        case .forbidden: return Responses.problem(status: 403, slug: "forbidden", error.message)
        case .unavailable: return Responses.problem(status: 503, slug: "registry-unavailable", error.message)
        }
    }
}

private func releaseFreeHeapPages() {
    // Trimming walks the heap: only when the free part is worth it, 4 MiB or 5 % of the heads.
    _ = scenescore_malloc_trim_if_above(max(4 << 20, SceneVersion.residentBytes / 20))
}

/// Who may use the admin API: a bearer token (compared in constant time). A client CA, when
/// configured, is enforced by TLS itself: without a certificate it signed, no handshake.
public struct AdminAuth: Sendable {
    private let token: [UInt8]?

    public init(token: String?) {
        self.token = token.map { Array($0.trimmingCharacters(in: .whitespacesAndNewlines).utf8) }
    }

    func allows(_ head: H2RequestHead) -> Bool {
        guard let token else { return true }
        guard let header = head.authorization, header.utf8.count > 7,
              header.prefix(7).lowercased() == "bearer " else { return false }
        return Self.constantTimeEquals(Array(header.utf8.dropFirst(7)), token)
    }

    /// Time depends on the expected token's length only, never on where the bytes differ.
    static func constantTimeEquals(_ given: [UInt8], _ expected: [UInt8]) -> Bool {
        var difference: UInt8 = given.count == expected.count ? 0 : 1
        for i in 0..<expected.count {
            difference |= expected[i] ^ (i < given.count ? given[i] : 0)
        }
        return difference == 0
    }
}

/// `PUT …/labels`: each key optional; `"canary": null` stops the canary.
private struct LabelChange: Decodable {
    var stable: String?
    var canary: String??
    var canaryShare: Double?
    var promoteCanary: Bool?

    enum CodingKeys: String, CodingKey, CaseIterable { case stable, canary, canaryShare = "canary_share", promoteCanary = "promote_canary" }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try AdminBodyError.refuseUnknownKeys(decoder, known: CodingKeys.allCases.map(\.stringValue))
        stable = try c.decodeIfPresent(String.self, forKey: .stable)
        canary = c.contains(.canary) ? .some(try c.decodeNil(forKey: .canary) ? nil : try c.decode(String.self, forKey: .canary)) : .none
        canaryShare = try c.decodeIfPresent(Double.self, forKey: .canaryShare)
        promoteCanary = try c.decodeIfPresent(Bool.self, forKey: .promoteCanary)
    }
}

/// `POST …/rollback`: `{"version": "v"}` or empty.
private struct RollbackTarget: Decodable {
    var version: String?

    enum CodingKeys: String, CodingKey, CaseIterable { case version }

    init(from decoder: any Decoder) throws {
        try AdminBodyError.refuseUnknownKeys(decoder, known: CodingKeys.allCases.map(\.stringValue))
        version = try decoder.container(keyedBy: CodingKeys.self).decodeIfPresent(String.self, forKey: .version)
    }
}

private struct AdminBodyError: Error, CustomStringConvertible {
    let description: String

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    static func refuseUnknownKeys(_ decoder: any Decoder, known: [String]) throws {
        let keys = try decoder.container(keyedBy: AnyKey.self).allKeys.map(\.stringValue)
        if let unknown = keys.first(where: { !known.contains($0) }) {
            throw AdminBodyError(description: "body: unknown key '\(unknown)' (known: \(known.joined(separator: ", ")))")
        }
    }
}
