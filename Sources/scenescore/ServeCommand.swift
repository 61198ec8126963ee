import ArgumentParser
import Foundation
import Logging
import Model
import Server
import Training
import ServiceLifecycle

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve POST /v1/score over HTTP/2 + TLS (and optionally h2c).",
        discussion: """
        Settings come from defaults, then --config (a JSON object with the camelCase keys below),
        then SCENESCORE_* environment variables (e.g. SCENESCORE_MAX_CANDIDATES), then flags.
        """)

    @Option(help: "JSON config file.") var config: String?
    @Option(help: "Address to bind.") var host: String?
    @Option(help: "TLS port (HTTP/2 via ALPN h2).") var port: Int?
    @Option(help: "Cleartext h2c (prior knowledge) port; off unless given.") var h2cPort: Int?
    @Option(help: "PEM certificate chain (default: a self-signed development certificate in var/certs).") var tlsCert: String?
    @Option(help: "PEM private key.") var tlsKey: String?
    @Option(name: .customLong("tls-client-ca"), help: "PEM CA bundle: require and verify client certificates.") var tlsClientCA: String?
    @Option(help: "Model directory (default var/models/default, built on first run).") var modelDir: String?
    @Option(help: "Event loop threads (default: one per core).") var threads: Int?
    @Option(help: "Maximum candidates per request (1024).") var maxCandidates: Int?
    @Option(name: .customLong("max-queue-delay-us"), help: "Cross-connection batching: µs a scoring request may wait for others on its event loop (0 = off).") var maxQueueDelayMicroseconds: Int?
    @Option(help: "Seconds to let in-flight streams finish on shutdown (10).") var drainTimeout: Double?
    @Option(help: "trace, debug, info, notice, warning, error, critical.") var logLevel: String?
    @Option(help: "SETTINGS_MAX_CONCURRENT_STREAMS (100).") var maxConcurrentStreams: Int?
    @Option(help: "Decoded header bytes per request (16384).") var maxHeaderListBytes: Int?
    @Option(help: "Header fields per request (128).") var maxHeaderFields: Int?
    @Option(help: "Request body bytes (8388608).") var maxBodyBytes: Int?
    @Option(help: "Seconds for the TLS handshake and HTTP/2 preface (10).") var handshakeTimeout: Double?
    @Option(help: "Seconds a connection may sit with no open stream (60).") var idleTimeout: Double?
    @Option(help: "Seconds for a request's headers and body to arrive (10).") var streamTimeout: Double?
    @Option(help: "Rapid-reset token bucket size (1000).") var streamResetBurst: Int?
    @Option(help: "Rapid-reset refill per second (33).") var streamResetRate: Int?
    @Option(help: "CONTINUATION frames per header block (8).") var maxContinuations: Int?
    @Option(help: "Open connections per listener; above it new ones are closed at once (1024).") var maxConnections: Int?
    @Option(help: "Open connections per client IP address (256).") var maxConnectionsPerAddress: Int?
    @Option(help: "Scene registry state directory (var/state).") var stateDir: String?
    @Option(help: "Shared scene registry for several replicas: a PostgreSQL URL, postgres://user:pass@host:5432/db (or SCENESCORE_REGISTRY). Default: the state directory.") var registry: String?
    @Option(help: "Directory scene plugins are loaded from, and only from (var/plugins).") var pluginDir: String?
    @Option(help: "Head versions kept per scene for rollback (5).") var keepVersions: Int?
    @Option(help: "Admin listener address (default: --host).") var adminHost: String?
    @Option(help: "Admin listener port, TLS + h2 (8444); on only with a token or client CA.") var adminPort: Int?
    @Option(help: "File whose first line is the admin bearer token (or SCENESCORE_ADMIN_TOKEN).") var adminTokenFile: String?
    @Option(name: .customLong("admin-client-ca"), help: "PEM CA bundle: admin clients must present a certificate it signed.") var adminClientCA: String?
    @Option(help: "Largest head upload in bytes (67108864).") var adminMaxUploadBytes: Int?

    /// The flags that were given, by config key.
    private var flagOverrides: [(String, String)] {
        let all: [(String, String?)] = [
            ("host", host), ("port", port.map(String.init)), ("h2cPort", h2cPort.map(String.init)),
            ("tlsCert", tlsCert), ("tlsKey", tlsKey), ("tlsClientCA", tlsClientCA), ("modelDir", modelDir),
            ("threads", threads.map(String.init)), ("maxCandidates", maxCandidates.map(String.init)),
            ("maxQueueDelayMicroseconds", maxQueueDelayMicroseconds.map(String.init)),
            ("drainTimeout", drainTimeout.map { String($0) }), ("logLevel", logLevel),
            ("maxConcurrentStreams", maxConcurrentStreams.map(String.init)),
            ("maxHeaderListBytes", maxHeaderListBytes.map(String.init)), ("maxHeaderFields", maxHeaderFields.map(String.init)),
            ("maxBodyBytes", maxBodyBytes.map(String.init)), ("handshakeTimeout", handshakeTimeout.map { String($0) }),
            ("idleTimeout", idleTimeout.map { String($0) }), ("streamTimeout", streamTimeout.map { String($0) }),
            ("streamResetBurst", streamResetBurst.map(String.init)), ("streamResetRate", streamResetRate.map(String.init)),
            ("maxContinuations", maxContinuations.map(String.init)),
            ("maxConnections", maxConnections.map(String.init)),
            ("maxConnectionsPerAddress", maxConnectionsPerAddress.map(String.init)),
            ("stateDir", stateDir), ("registry", registry), ("pluginDir", pluginDir), ("keepVersions", keepVersions.map(String.init)),
            ("adminHost", adminHost), ("adminPort", adminPort.map(String.init)), ("adminTokenFile", adminTokenFile),
            ("adminClientCA", adminClientCA), ("adminMaxUploadBytes", adminMaxUploadBytes.map(String.init)),
        ]
        return all.compactMap { key, value in value.map { (key, $0) } }
    }

    func resolvedConfig() throws -> ServerConfig {
        var settings = ServerConfig()
        if let config { try settings.apply(configFile: config) }
        try settings.apply(environment: ProcessInfo.processInfo.environment)
        for (key, value) in flagOverrides { try settings.set(key, value, source: "flag --\(key)") }
        guard Logger.Level(rawValue: settings.logLevel) != nil else {
            throw ValidationError("log level '\(settings.logLevel)' is not one of trace, debug, info, notice, warning, error, critical")
        }
        guard settings.port > 0 || settings.h2cPort > 0 else { throw ValidationError("no listener: set port or h2cPort") }
        return settings
    }

    func run() async throws {
        let settings: ServerConfig
        do { settings = try resolvedConfig() } catch let error as ServerConfig.Invalid {
            throw ValidationError(error.description)
        }
        let level = Logger.Level(rawValue: settings.logLevel)!
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let registry = MetricsBackend.bootstrapPrometheus()
        let logger = Logger(label: "scenescore")

        if settings.modelDir == ServerConfig().modelDir,
           !FileManager.default.fileExists(atPath: settings.modelDir + "/backbone.safetensors") {
            logger.info("model.default.train", metadata: ["dir": "\(settings.modelDir)"])
            try DefaultTraining.train(to: settings.modelDir)
        }
        let server = ScoreServer(config: settings, logger: logger, renderMetrics: MetricsBackend.renderer(registry))
        let group = ServiceGroup(configuration: .init(services: [.init(service: server)],
                                                      gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
