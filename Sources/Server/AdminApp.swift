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
        metrics.update(registry.snapshot)
    }

    /// Refreshes the registry gauges after admin requests (the server also does it every second).
    func refreshMetrics() { metrics.update(registry.snapshot) }

    private enum Endpoint {
        case scenes
        case scene(String)
        case versions(String)
        case labels(String)
        case rollback(String)

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
        refreshMetrics()
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
            let response: H2Response
            do throws(RegistryError) {
                response = try write(parsed, head: head, body: body)
            } catch {
                response = problem(error)
                logger.info("admin.refused", metadata: ["method": "\(head.method)", "path": "\(head.path)", "detail": "\(error.message)"])
            }
            refreshMetrics()
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
            let object = try jsonObject(body, allowEmpty: false)
            var stable = try string(object, "stable")
            if object["promote_canary"] as? Bool == true {
                guard let canary = registry.record(scene)?.canary else { throw RegistryError(.notFound, "scene '\(scene)' has no canary to promote") }
                stable = canary
            }
            let canary: String?? = object.keys.contains("canary") ? .some(object["canary"] is NSNull ? nil : try string(object, "canary")) : .none
            let share = try number(object, "canary_share")
            let record = try registry.setLabels(scene: scene, stable: stable, canary: canary, canaryShare: share, expectedGeneration: expected)
            logger.info("admin.labels.set", metadata: ["scene": "\(scene)", "stable": "\(record.stable)", "canary": "\(record.canary ?? "-")"])
            return Responses.json(200, SceneViews.record(record))
        case (.rollback(let scene), "POST"):
            let object = try jsonObject(body, allowEmpty: true)
            let record = try registry.rollback(scene: scene, to: try string(object, "version"), expectedGeneration: expected)
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

    private func jsonObject(_ body: [UInt8], allowEmpty: Bool) throws(RegistryError) -> [String: Any] {
        if body.isEmpty && allowEmpty { return [:] }
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else {
            throw RegistryError(.invalid, "body must be a JSON object")
        }
        return object
    }

    private func string(_ object: [String: Any], _ key: String) throws(RegistryError) -> String? {
        guard let value = object[key], !(value is NSNull) else { return nil }
        guard let s = value as? String else { throw RegistryError(.invalid, "'\(key)' must be a string") }
        return s
    }

    private func number(_ object: [String: Any], _ key: String) throws(RegistryError) -> Double? {
        guard let value = object[key], !(value is NSNull) else { return nil }
        if let d = value as? Double { return d }
        if let i = value as? Int { return Double(i) }
        throw RegistryError(.invalid, "'\(key)' must be a number")
    }

    private func unknown(_ scene: String) -> H2Response { Responses.problem(.unknownScene(scene)) }

    private func problem(_ error: RegistryError) -> H2Response {
        switch error.kind {
        case .notFound: return Responses.problem(status: 404, slug: "not-found", error.message)
        case .conflict: return Responses.problem(status: 409, slug: "conflict", error.message)
        case .invalid: return Responses.problem(status: 422, slug: "invalid-head", error.message)
        case .forbidden: return Responses.problem(status: 403, slug: "forbidden", error.message)
        case .unavailable: return Responses.problem(status: 503, slug: "registry-unavailable", error.message)
        }
    }
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
