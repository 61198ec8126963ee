import ArgumentParser
import Foundation
import H2
import NIOPosix

/// `scenescore scene …`: the admin API (Proto/ADMIN.md) from the command line, over the
/// project's own HTTP/2 client.
struct SceneCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scene",
        abstract: "Register scenes and push head versions on a running server (admin API).",
        discussion: """
        The admin URL, CA and token come from flags or SCENESCORE_ADMIN_URL, SCENESCORE_ADMIN_CACERT
        and SCENESCORE_ADMIN_TOKEN (or --token-file). Prints the server's JSON answer; exits 1 with
        the server's problem detail when it refuses.
        """,
        subcommands: [Register.self, Push.self, List.self, Rollback.self, Canary.self, Remove.self])

    struct Connection: ParsableArguments {
        @Option(help: "Admin listener (default $SCENESCORE_ADMIN_URL or https://localhost:8444).") var adminURL: String?
        @Option(help: "CA certificate to verify the server (default $SCENESCORE_ADMIN_CACERT or var/certs/dev-cert.pem).") var cacert: String?
        @Option(help: "File whose first line is the admin token (default $SCENESCORE_ADMIN_TOKEN).") var tokenFile: String?
        @Option(help: "Client certificate (PEM) for a server that requires one.") var cert: String?
        @Option(help: "Client private key (PEM).") var key: String?
        @Option(help: "Only if the scene is still at this generation (if-match).") var ifGeneration: Int?

        func send(_ method: String, _ path: String, headers: [(name: String, value: String)] = [], body: [UInt8] = []) async throws {
            let env = ProcessInfo.processInfo.environment
            let urlText = adminURL ?? env["SCENESCORE_ADMIN_URL"] ?? "https://localhost:8444"
            guard let url = URL(string: urlText), let scheme = url.scheme, let host = url.host, scheme == "https" || scheme == "http" else {
                throw ValidationError("admin URL '\(urlText)' must be https://HOST:PORT (or http:// for h2c)")
            }
            let port = url.port ?? (scheme == "https" ? 443 : 80)
            var all = headers
            if let ifGeneration { all.append(("if-match", String(ifGeneration))) }
            if let token = try token(env) { all.append(("authorization", "Bearer " + token)) }
            let tls: TLSContext? = scheme == "https"
                ? try TLSContext(trustedCAPath: cacert ?? env["SCENESCORE_ADMIN_CACERT"] ?? "var/certs/dev-cert.pem",
                                 certificatePath: cert, keyPath: key)
                : nil
            let group = MultiThreadedEventLoopGroup.singleton
            let response: H2ClientResponse
            do {
                let client = try await H2Client.connect(host: host, port: port, tls: tls, group: group)
                response = try await client.request(method: method, path: path, headers: all, body: body)
                await client.close()
            } catch {
                throw ValidationError("admin request to \(urlText) failed: \(error)")
            }
            let text = String(decoding: response.body, as: UTF8.self)
            guard (200..<300).contains(response.status) else {
                let detail = (try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])?["detail"] as? String
                FileHandle.standardError.write(Data("scenescore scene: \(response.status): \(detail ?? text)\n".utf8))
                throw ExitCode(1)
            }
            print(text)
        }

        private func token(_ env: [String: String]) throws -> String? {
            if let tokenFile {
                guard let text = try? String(contentsOfFile: tokenFile, encoding: .utf8) else { throw ValidationError("cannot read token file \(tokenFile)") }
                return text.split(whereSeparator: \.isNewline).first.map { $0.trimmingCharacters(in: .whitespaces) }
            }
            return env["SCENESCORE_ADMIN_TOKEN"]
        }
    }

    static func readHead(_ path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read head file \(path)") }
        return Array(data)
    }

    static func query(_ items: [(String, String?)]) -> String {
        let parts = items.compactMap { k, v in v.map { "\(k)=\($0.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? $0)" } }
        return parts.isEmpty ? "" : "?" + parts.joined(separator: "&")
    }

    static let octetStream = [(name: "content-type", value: "application/octet-stream")]
    static let json = [(name: "content-type", value: "application/json")]

    struct Register: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Register a new scene with its first head.")
        @Argument(help: "Scene name (1…64 of [a-z0-9_-]).") var scene: String
        @Option(help: "Head file (.safetensors) whose metadata names this scene.") var head: String
        @Option(help: "Plugin in the server's plugin directory (default: none, the canonical schema).") var plugin: String?
        @Option(help: "Plugin config, a JSON object.") var pluginConfig: String?
        @OptionGroup var connection: Connection

        func run() async throws {
            var headers = SceneCommand.octetStream
            if let pluginConfig { headers.append(("x-scenescore-plugin-config", pluginConfig)) }
            try await connection.send("PUT", "/admin/v1/scenes/\(scene)" + SceneCommand.query([("plugin", plugin)]),
                                      headers: headers, body: try SceneCommand.readHead(head))
        }
    }

    struct Push: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Upload a head version; it becomes stable unless --canary or --no-label.")
        @Argument var scene: String
        @Option(help: "Head file (.safetensors).") var head: String
        @Option(help: "Serve it as the canary to this share of requests (0…1) instead of making it stable.") var canary: Double?
        @Flag(help: "Keep it without a label (for a later label change or rollback).") var noLabel = false
        @Option(help: "Switch the scene to this plugin with this version.") var plugin: String?
        @Option(help: "Plugin config, a JSON object (with --plugin).") var pluginConfig: String?
        @OptionGroup var connection: Connection

        func run() async throws {
            let label = canary != nil ? "canary" : (noLabel ? "none" : "stable")
            var headers = SceneCommand.octetStream
            if let pluginConfig { headers.append(("x-scenescore-plugin-config", pluginConfig)) }
            try await connection.send("POST", "/admin/v1/scenes/\(scene)/versions"
                                      + SceneCommand.query([("label", label), ("share", canary.map { String($0) }), ("plugin", plugin)]),
                                      headers: headers, body: try SceneCommand.readHead(head))
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List scenes, or one scene's versions.")
        @Argument(help: "A scene (default: every scene).") var scene: String?
        @OptionGroup var connection: Connection

        func run() async throws {
            try await connection.send("GET", scene.map { "/admin/v1/scenes/\($0)/versions" } ?? "/admin/v1/scenes")
        }
    }

    struct Rollback: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make an earlier version stable again.")
        @Argument var scene: String
        @Option(help: "The version (default: the one stable before the current one).") var to: String?
        @OptionGroup var connection: Connection

        func run() async throws {
            let body = try JSONSerialization.data(withJSONObject: to.map { ["version": $0] } ?? [:])
            try await connection.send("POST", "/admin/v1/scenes/\(scene)/rollback", headers: SceneCommand.json, body: Array(body))
        }
    }

    struct Canary: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Set or clear a scene's canary version and share.")
        @Argument var scene: String
        @Option(help: "A kept version to serve as the canary.") var version: String?
        @Option(help: "Share of requests (0…1) the canary answers.") var share: Double?
        @Flag(help: "Stop the canary.") var off = false
        @Flag(help: "Promote the canary to stable.") var promote = false
        @OptionGroup var connection: Connection

        func validate() throws {
            guard off || promote || version != nil || share != nil else { throw ValidationError("give --version/--share, --off or --promote") }
        }

        func run() async throws {
            var object: [String: Any] = [:]
            if off { object["canary"] = NSNull() }
            if let version { object["canary"] = version }
            if let share { object["canary_share"] = share }
            if promote { object["promote_canary"] = true }
            let body = try JSONSerialization.data(withJSONObject: object)
            try await connection.send("PUT", "/admin/v1/scenes/\(scene)/labels", headers: SceneCommand.json, body: Array(body))
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a scene (in-flight requests finish).")
        @Argument var scene: String
        @OptionGroup var connection: Connection

        func run() async throws {
            try await connection.send("DELETE", "/admin/v1/scenes/\(scene)")
        }
    }
}
