import Foundation
import H2
import Kernels
import Logging
import Model
import RegistryPostgres
import NIOCore
import NIOPosix
import Scenes
import ServiceLifecycle

/// The server as a swift-service-lifecycle service: load and warm the model, listen, serve
/// until graceful shutdown (SIGTERM/SIGINT), then GOAWAY, drain and return.
public final class ScoreServer: Service {
    private let config: ServerConfig
    private let logger: Logger
    private let renderMetrics: @Sendable () -> [UInt8]
    private let registryMetrics = RegistryMetrics()

    public init(config: ServerConfig, logger: Logger, renderMetrics: @escaping @Sendable () -> [UInt8]) {
        self.config = config
        self.logger = logger
        self.renderMetrics = renderMetrics
    }

    public func run() async throws {
        let registry = SceneRegistry()
        let app = ScoringApp(registry: registry, maxCandidates: config.maxCandidates, maxBodyBytes: config.limits.maxBodyBytes,
                             maxQueueDelayMicroseconds: config.maxQueueDelayMicroseconds, logger: logger, renderMetrics: renderMetrics)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: config.threads)
        let server = H2Server(group: group, handler: app, limits: config.limits, logger: logger)

        var tls: TLSContext?
        var adminTLS: TLSContext?
        var adminServer: H2Server?
        var metricsTick: RepeatedTask?
        var certPath = config.tlsCert
        if config.port > 0 {
            var cert = config.tlsCert, key = config.tlsKey
            if cert == nil || key == nil {
                let dev = try DevelopmentCertificate.ensure(in: "var/certs")
                cert = dev.cert; key = dev.key; certPath = dev.cert
                logger.info("tls.development_certificate", metadata: ["cert": "\(dev.cert)"])
            }
            tls = try TLSContext(server: TLSServerConfiguration(certificateChainPath: cert!, privateKeyPath: key!,
                                                                clientCAPath: config.tlsClientCA))
            if config.adminEnabled {
                adminTLS = try TLSContext(server: TLSServerConfiguration(certificateChainPath: cert!, privateKeyPath: key!,
                                                                         clientCAPath: config.adminClientCA))
            }
        }
        // Listen first so probes see a live process (/healthz) while models load (/readyz 503).
        var tlsPort = 0
        if let tls { tlsPort = try await server.bind(host: config.host, port: config.port, tls: tls) }
        if config.h2cPort > 0 { try await server.bind(host: config.host, port: config.h2cPort, tls: nil) }

        let backbone = try Backbone(path: config.modelDir + "/backbone.safetensors")
        let (store, failures) = try await openRegistry(registry, backbone: backbone)
        for failure in failures {
            logger.error("scene.load.failed", metadata: ["scene": "\(failure.scene)", "reason": "\(failure.reason)"])
        }
        if config.adminEnabled, let tls = adminTLS {
            let admin = AdminApp(registry: registry, auth: AdminAuth(token: try config.resolvedAdminToken()),
                                 maxUploadBytes: config.adminMaxUploadBytes, metrics: registryMetrics, logger: logger)
            var limits = config.limits
            limits.maxBodyBytes = config.adminMaxUploadBytes
            limits.streamTimeout = .seconds(max(60, limits.streamTimeout.nanoseconds / 1_000_000_000))
            adminServer = H2Server(group: group, handler: admin, limits: limits, logger: logger)
            let port = try await adminServer!.bind(host: config.adminHost ?? config.host, port: config.adminPort, tls: tls)
            logger.info("admin.listening", metadata: ["port": "\(port)", "token": "\(config.adminToken != nil || config.adminTokenFile != nil)",
                                                      "client_ca": "\(config.adminClientCA ?? "-")"])
        }
        // Retired versions are freed by the requests that held them: keep the gauges current.
        let registryMetrics = self.registryMetrics
        registryMetrics.updateAll(registry.snapshot)
        metricsTick = group.next().scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            registryMetrics.updateGauges()
        }
        // Ready only once every listener is up, the admin one included; with a shared registry,
        // also only once this replica serves every scene's committed stable version.
        let logger = self.logger
        let announceReady: @Sendable () -> Void = {
            app.setReady(true)
            logger.info("ready", metadata: ["scenes": "\(registry.snapshot?.scenes.count ?? 0)", "registry": "\(store.location)",
                                            "backbone.sha256": "\(backbone.contentHash.prefix(12))",
                                            "kernels": "\(KernelISA.active.rawValue) (\(KernelISA.selection.reason))"])
        }
        var synchronizer: RegistrySynchronizer?
        if let shared = store.shared, let url = config.registry {
            synchronizer = RegistrySynchronizer(registry: registry, metrics: registryMetrics, location: shared.location, logger: logger)
            synchronizer!.start(url: url, backboneHash: backbone.contentHash, converged: failures.isEmpty, onConverged: announceReady)
        } else {
            announceReady()
        }
        if tlsPort > 0, let certPath {
            let host = config.host == "0.0.0.0" || config.host == "::" ? "localhost" : (config.host == "127.0.0.1" ? "localhost" : config.host)
            FileHandle.standardOutput.write(Data("""
            SceneScore is serving https://\(host):\(tlsPort) (HTTP/2, TLS). Try:
              curl --http2 --cacert \(certPath) https://\(host):\(tlsPort)/v1/score \\
                -H 'content-type: application/json' -d @Proto/golden/request-1cand.json

            """.utf8))
        }

        try? await gracefulShutdown()
        logger.info("shutdown.begin")
        app.setDraining()
        synchronizer?.stop()
        metricsTick?.cancel()
        let adminToDrain = adminServer
        async let adminDrained: Void = { if let adminToDrain { await adminToDrain.shutdown(drainTimeout: .nanoseconds(Int64(config.drainTimeout * 1e9))) } }()
        await server.shutdown(drainTimeout: .nanoseconds(Int64(config.drainTimeout * 1e9)))
        await adminDrained
        try await group.shutdownGracefully()
        logger.info("shutdown.done")
    }

    /// The registry's store and its first load. The state directory by default; with
    /// `config.registry`, PostgreSQL: while it cannot be reached at start the replica waits
    /// (alive, not ready) and retries every second, since it has nothing to serve without it.
    private func openRegistry(_ registry: SceneRegistry, backbone: Backbone) async throws
        -> (store: OpenedStore, failures: [(scene: String, reason: String)]) {
        guard let url = config.registry else {
            let store = try StateDirectoryStore(root: config.stateDir, backboneHash: backbone.contentHash)
            let failures = try registry.open(store: store, backbone: backbone, pluginDirectory: config.pluginDir,
                                             keepVersions: config.keepVersions, seedDirectory: config.modelDir)
            return (OpenedStore(location: store.directory, shared: nil), failures)
        }
        var reported = false
        while true {
            switch openShared(url: url, registry, backbone: backbone) {
            case .success(let opened):
                return opened
            case .failure(let error) where error.kind == .unavailable:
                if !reported {
                    logger.error("registry.unreachable", metadata: ["registry": "\(PostgresSceneStore.redacted(url))", "reason": "\(error.message)",
                                                                    "effect": "not ready; retrying every second"])
                    reported = true
                }
                try await Task.sleep(nanoseconds: 1_000_000_000)
                if Task.isShuttingDownGracefully { throw error }
            case .failure(let error):
                throw error
            }
        }
    }

    private func openShared(url: String, _ registry: SceneRegistry, backbone: Backbone)
        -> Result<(store: OpenedStore, failures: [(scene: String, reason: String)]), RegistryError> {
        do throws(RegistryError) {
            let store = try PostgresSceneStore(url: url, backboneHash: backbone.contentHash)
            if !store.appliedMigrations.isEmpty {
                logger.info("registry.migrated", metadata: ["registry": "\(store.location)", "applied": "\(store.appliedMigrations)"])
            }
            let failures = try registry.open(store: store, backbone: backbone, pluginDirectory: config.pluginDir,
                                             keepVersions: config.keepVersions, seedDirectory: config.modelDir)
            return .success((OpenedStore(location: store.location, shared: store), failures))
        } catch {
            return .failure(error)
        }
    }

    struct OpenedStore {
        /// Where the registry lives, for logs.
        let location: String
        let shared: PostgresSceneStore?
    }
}
