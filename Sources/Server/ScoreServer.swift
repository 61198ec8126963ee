import Foundation
import H2
import Logging
import Model
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

    public init(config: ServerConfig, logger: Logger, renderMetrics: @escaping @Sendable () -> [UInt8]) {
        self.config = config
        self.logger = logger
        self.renderMetrics = renderMetrics
    }

    public func run() async throws {
        let registry = SceneRegistry()
        let app = ScoringApp(registry: registry, maxCandidates: config.maxCandidates, maxBodyBytes: config.limits.maxBodyBytes,
                             logger: logger, renderMetrics: renderMetrics)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: config.threads)
        let server = H2Server(group: group, handler: app, limits: config.limits, logger: logger)

        var tls: TLSContext?
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
        }
        // Listen first so probes see a live process (/healthz) while models load (/readyz 503).
        var tlsPort = 0
        if let tls { tlsPort = try await server.bind(host: config.host, port: config.port, tls: tls) }
        if config.h2cPort > 0 { try await server.bind(host: config.host, port: config.h2cPort, tls: nil) }

        let snapshot = try registry.load(modelDirectory: config.modelDir)
        warmUp(snapshot)
        app.setReady(true)
        logger.info("ready", metadata: ["scenes": "\(snapshot.sortedSceneNames.joined(separator: ","))",
                                        "backbone.sha256": "\(snapshot.backbone.contentHash.prefix(12))"])
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
        await server.shutdown(drainTimeout: .nanoseconds(Int64(config.drainTimeout * 1e9)))
        try await group.shutdownGracefully()
        logger.info("shutdown.done")
    }

    /// Scores one request per scene so first requests don't pay for page faults and lazy setup.
    private func warmUp(_ snapshot: SceneSnapshot) {
        let spec = snapshot.backbone.spec
        let ws = ForwardWorkspace()
        let ids = [UInt32](repeating: 1, count: 64 * max(spec.itemFields.count, spec.contextFields.count, 1))
        let dense = [Float](repeating: 0, count: 64 * max(spec.itemDense, spec.contextDense, 1))
        for scene in snapshot.scenes.values {
            var out = [Float](repeating: 0, count: 64 * scene.head.spec.outputs.count)
            ids.withUnsafeBytes { i in dense.withUnsafeBytes { d in
                let input = ScoringInput(candidates: 64,
                                         contextIDs: UnsafeRawBufferPointer(rebasing: i[0..<(4 * spec.contextFields.count)]),
                                         contextDense: UnsafeRawBufferPointer(rebasing: d[0..<(4 * spec.contextDense)]),
                                         itemIDs: UnsafeRawBufferPointer(rebasing: i[0..<(4 * 64 * spec.itemFields.count)]),
                                         itemDense: UnsafeRawBufferPointer(rebasing: d[0..<(4 * 64 * spec.itemDense)]))
                out.withUnsafeMutableBufferPointer { Forward.score(input, backbone: snapshot.backbone, head: scene.head, workspace: ws, into: $0) }
            }}
        }
    }
}
