import Foundation
import H2
import NIOCore

/// Everything `scenescore serve` can be told. Precedence: defaults < config file (JSON, keys as
/// below) < environment (`SCENESCORE_` + the key in UPPER_SNAKE case) < command-line flags.
public struct ServerConfig: Sendable {
    public var host = "127.0.0.1"
    public var port = 8443
    /// Cleartext h2c (prior knowledge) listener; 0 = off.
    public var h2cPort = 0
    public var tlsCert: String?
    public var tlsKey: String?
    public var tlsClientCA: String?
    public var modelDir = "var/models/default"
    public var threads = System.coreCount
    public var maxCandidates = 1024
    /// Cross-connection batching: how long a scoring request may wait for others on its event
    /// loop (µs); 0 = off, batch only what arrives in one read.
    public var maxQueueDelayMicroseconds = 0
    public var drainTimeout = 10.0
    public var logLevel = "info"
    public var limits = H2Limits()
    /// The scene registry's state directory (Proto/ADMIN.md); with `registry` set, only uploads
    /// being validated stay here.
    public var stateDir = "var/state"
    /// The shared registry for several replicas: a PostgreSQL URL (`postgres://user:pass@host:5432/db`,
    /// libpq's syntax). Nil: the state directory is the registry.
    public var registry: String?
    /// Scene plugins are loaded from here only.
    public var pluginDir = "var/plugins"
    /// Versions kept per scene for rollback.
    public var keepVersions = 5
    /// The admin listener (TLS, h2): on only when a token or a client CA is configured.
    public var adminHost: String?
    public var adminPort = 8444
    public var adminToken: String?
    public var adminTokenFile: String?
    public var adminClientCA: String?
    public var adminMaxUploadBytes = 64 * 1024 * 1024

    public init() {}

    /// Every settable key, camelCase as in the config file.
    public static let keys = ["host", "port", "h2cPort", "tlsCert", "tlsKey", "tlsClientCA", "modelDir", "threads",
                              "maxCandidates", "maxQueueDelayMicroseconds", "drainTimeout", "logLevel", "maxConcurrentStreams",
                              "maxHeaderListBytes", "maxHeaderFields", "maxBodyBytes", "handshakeTimeout",
                              "idleTimeout", "streamTimeout", "streamResetBurst", "streamResetRate", "maxContinuations",
                              "maxConnections", "maxConnectionsPerAddress",
                              "stateDir", "registry", "pluginDir", "keepVersions", "adminHost", "adminPort", "adminToken", "adminTokenFile",
                              "adminClientCA", "adminMaxUploadBytes"]

    public struct Invalid: Error, CustomStringConvertible { public let description: String }

    /// Sets one key from its text form; `source` names where it came from, for the error.
    public mutating func set(_ key: String, _ value: String, source: String) throws {
        func int(min: Int = 0) throws -> Int {
            guard let v = Int(value.trimmingCharacters(in: .whitespaces)), v >= min else {
                throw Invalid(description: "\(source): \(key) must be an integer ≥ \(min), got '\(value)'")
            }
            return v
        }
        func seconds() throws -> TimeAmount {
            guard let v = Double(value.trimmingCharacters(in: .whitespaces)), v > 0, v < 1e6 else {
                throw Invalid(description: "\(source): \(key) must be a positive number of seconds, got '\(value)'")
            }
            return .nanoseconds(Int64(v * 1e9))
        }
        switch key {
        case "host": host = value
        case "port": port = try int(min: 0)
        case "h2cPort": h2cPort = try int(min: 0)
        case "tlsCert": tlsCert = value
        case "tlsKey": tlsKey = value
        case "tlsClientCA": tlsClientCA = value
        case "modelDir": modelDir = value
        case "threads": threads = try int(min: 1)
        case "maxCandidates": maxCandidates = try int(min: 1)
        case "maxQueueDelayMicroseconds": maxQueueDelayMicroseconds = try int(min: 0)
        case "drainTimeout": drainTimeout = Double(try seconds().nanoseconds) / 1e9
        case "logLevel": logLevel = value
        case "maxConcurrentStreams": limits.maxConcurrentStreams = try int(min: 1)
        case "maxHeaderListBytes": limits.maxHeaderListBytes = try int(min: 256)
        case "maxHeaderFields": limits.maxHeaderFields = try int(min: 8)
        case "maxBodyBytes": limits.maxBodyBytes = try int(min: 32)
        case "handshakeTimeout": limits.handshakeTimeout = try seconds()
        case "idleTimeout": limits.idleTimeout = try seconds()
        case "streamTimeout": limits.streamTimeout = try seconds()
        case "streamResetBurst": limits.streamResetBurst = try int(min: 1)
        case "streamResetRate": limits.streamResetRate = try int(min: 1)
        case "maxContinuations": limits.maxContinuations = try int(min: 1)
        case "maxConnections": limits.maxConnections = try int(min: 1)
        case "maxConnectionsPerAddress": limits.maxConnectionsPerAddress = try int(min: 1)
        case "stateDir": stateDir = value
        case "registry":
            guard value.hasPrefix("postgres://") || value.hasPrefix("postgresql://") || value.contains("=") else {
                throw Invalid(description: "\(source): registry must be a PostgreSQL URL (postgres://user@host:5432/db) or libpq key=value string, got '\(value.prefix(40))'")
            }
            registry = value
        case "pluginDir": pluginDir = value
        case "keepVersions": keepVersions = try int(min: 1)
        case "adminHost": adminHost = value
        case "adminPort": adminPort = try int(min: 0)
        case "adminToken": adminToken = value
        case "adminTokenFile": adminTokenFile = value
        case "adminClientCA": adminClientCA = value
        case "adminMaxUploadBytes": adminMaxUploadBytes = try int(min: 1024)
        default: throw Invalid(description: "\(source): unknown setting '\(key)' (known: \(Self.keys.joined(separator: ", ")))")
        }
    }

    /// The admin token: `adminToken` (config file or SCENESCORE_ADMIN_TOKEN), else the first line
    /// of `adminTokenFile`. Nil when neither is set.
    public func resolvedAdminToken() throws -> String? {
        if let adminToken, !adminToken.isEmpty { return adminToken }
        guard let adminTokenFile else { return nil }
        guard let text = try? String(contentsOfFile: adminTokenFile, encoding: .utf8) else {
            throw Invalid(description: "admin token file \(adminTokenFile): cannot read")
        }
        let token = text.split(whereSeparator: \.isNewline).first.map(String.init)?.trimmingCharacters(in: .whitespaces) ?? ""
        guard token.utf8.count >= 16 else { throw Invalid(description: "admin token file \(adminTokenFile): the token must be at least 16 characters") }
        return token
    }

    /// The admin listener is on when a token or a client CA is configured and its port is not 0.
    public var adminEnabled: Bool { adminPort > 0 && (adminToken?.isEmpty == false || adminTokenFile != nil || adminClientCA != nil) }

    /// Applies a JSON config file.
    public mutating func apply(configFile path: String) throws {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw Invalid(description: "config file \(path): cannot read (\(error.localizedDescription))")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw Invalid(description: "config file \(path): not a JSON object")
        }
        for (key, value) in object.sorted(by: { $0.key < $1.key }) {
            let text: String
            switch value {
            case let s as String: text = s
            case let n as NSNumber: text = n.stringValue
            default: throw Invalid(description: "config file \(path): \(key) must be a string or a number")
            }
            try set(key, text, source: "config file \(path)")
        }
    }

    /// Applies `SCENESCORE_*` environment variables.
    public mutating func apply(environment: [String: String]) throws {
        for key in Self.keys {
            if let value = environment[Self.environmentName(key)] {
                try set(key, value, source: "environment \(Self.environmentName(key))")
            }
        }
    }

    public static func environmentName(_ key: String) -> String {
        var out = "SCENESCORE_"
        for c in key {
            if c.isUppercase { out += "_" }
            out += c.uppercased()
        }
        return out.replacingOccurrences(of: "C_A", with: "CA")
    }
}
