import Foundation
import H2
import Logging
import NIOCore
import NIOPosix

/// A head file to push: its bytes and what its metadata says (Proto/MODEL-FORMAT.md).
struct SwapHead: Sendable {
    var path: String
    var bytes: [UInt8]
    var scene: String
    var version: String

    /// Reads `path` and its `scenescore.spec` (scene, version) from the safetensors header.
    static func load(_ path: String) throws(LoadError) -> SwapHead {
        guard let data = FileManager.default.contents(atPath: path) else { throw LoadError("cannot read head file \(path)") }
        let bytes = [UInt8](data)
        guard bytes.count >= 8 else { throw LoadError("\(path) is not a safetensors file (shorter than 8 bytes)") }
        var length: UInt64 = 0
        for i in 0..<8 { length |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        guard length <= UInt64(bytes.count - 8), length <= 100_000_000,
              let header = try? JSONSerialization.jsonObject(with: Data(bytes[8..<8 + Int(length)])) as? [String: Any],
              let metadata = header["__metadata__"] as? [String: String], let specText = metadata["scenescore.spec"],
              let spec = try? JSONSerialization.jsonObject(with: Data(specText.utf8)) as? [String: Any],
              let scene = spec["scene"] as? String, let version = spec["version"] as? String else {
            throw LoadError("\(path) is not a SceneScore head (safetensors with scenescore.spec naming its scene and version)")
        }
        return SwapHead(path: path, bytes: bytes, scene: scene, version: version)
    }
}

/// One swap: what was done, how the admin API answered, when (seconds from the start of measurement).
public struct SwapEvent: Sendable, Codable {
    public var at: Double
    public var version: String
    /// `upload` (a new version, made stable) or `label` (an existing version made stable again).
    public var action: String
    public var status: Int
    public var seconds: Double
    public var error: String?
}

/// Pushes heads through the admin API in turn (Proto/ADMIN.md): `POST …/versions?label=stable`
/// with the head's bytes; a version the server already keeps (409) is made stable with
/// `PUT …/labels {"stable": version}` instead — a real swap between two kept versions.
final class SwapDriver: Sendable {
    let spec: SwapSpec
    let heads: [SwapHead]
    private let tls: TLSContext?
    private let host: String
    private let port: Int
    private let authority: String

    init(spec: SwapSpec, fallbackCA: String?) throws(LoadError) {
        self.spec = spec
        var heads: [SwapHead] = []
        for path in spec.heads { heads.append(try SwapHead.load(path)) }
        let scenes = Set(heads.map(\.scene))
        guard scenes.count == 1 else { throw LoadError("--head files name different scenes (\(scenes.sorted().joined(separator: ", "))); swap one scene at a time") }
        self.heads = heads
        let admin = try LoadTarget.parse(spec.adminURL)
        host = admin.host
        port = admin.port
        authority = admin.authority
        if admin.tls {
            do {
                tls = try TLSContext(trustedCAPath: spec.adminCACert ?? fallbackCA)
            } catch {
                throw LoadError("cannot set up TLS for the admin API: \(error)")
            }
        } else {
            tls = nil
        }
    }

    var scene: String { heads[0].scene }

    /// Connects to the admin listener and checks the token and the scene (`GET /admin/v1/scenes/{scene}`).
    func connectAndCheck(group: any EventLoopGroup) async throws -> H2Client {
        let client: H2Client
        let response: H2ClientResponse
        do {
            client = try await H2Client.connect(host: host, port: port, tls: tls, group: group,
                                                logger: Logger(label: "scenescore.load.admin", factory: { _ in SwiftLogNoOpLogHandler() }))
            response = try await client.request(method: "GET", path: "/admin/v1/scenes/\(scene)", headers: authorization)
        } catch {
            throw LoadError("cannot reach the admin API at \(spec.adminURL): \(describeAdminError(error))")
        }
        guard response.status == 200 else {
            await client.close()
            let detail = (try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])?["detail"] as? String
            throw LoadError("the admin API at \(spec.adminURL) answered \(response.status) for scene '\(scene)': "
                            + (detail ?? String(decoding: response.body.prefix(200), as: UTF8.self)))
        }
        return client
    }

    private var authorization: [(name: String, value: String)] {
        spec.token.map { [("authorization", "Bearer " + $0)] } ?? []
    }

    /// Makes `head` the stable version; returns the event (never throws: a failed swap is reported).
    func swap(to head: SwapHead, client: H2Client, at: Double) async -> SwapEvent {
        let started = monotonicNanos()
        var headers: [(name: String, value: String)] = [("content-type", "application/octet-stream")] + authorization
        var event = SwapEvent(at: at, version: head.version, action: "upload", status: 0, seconds: 0, error: nil)
        do {
            var response = try await client.request(method: "POST", path: "/admin/v1/scenes/\(head.scene)/versions?label=stable",
                                                    headers: headers, body: head.bytes)
            if response.status == 409 {
                event.action = "label"
                headers[0] = ("content-type", "application/json")
                let body = try JSONSerialization.data(withJSONObject: ["stable": head.version])
                response = try await client.request(method: "PUT", path: "/admin/v1/scenes/\(head.scene)/labels",
                                                    headers: headers, body: Array(body))
            }
            event.status = response.status
            if response.status != 200 {
                let detail = (try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])?["detail"] as? String
                event.error = "\(response.status): \(detail ?? String(decoding: response.body.prefix(200), as: UTF8.self))"
            }
        } catch {
            event.error = describeAdminError(error)
        }
        event.seconds = Double(monotonicNanos() - started) / 1e9
        return event
    }
}

private func describeAdminError(_ error: any Error) -> String {
    if let e = error as? NIOConnectionError, let first = e.connectionErrors.first {
        if let io = first.error as? IOError { return String(cString: strerror(io.errnoCode)).lowercased() }
        return "\(first.error)"
    }
    return "\(error)"
}
