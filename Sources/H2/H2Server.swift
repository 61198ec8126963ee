import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Listeners and their connections: binds TLS (ALPN h2) and, optionally, h2c listeners on a
/// shared event loop group, tracks every open connection, and drains them on shutdown.
public final class H2Server: Sendable {
    private let group: any EventLoopGroup
    private let handler: any H2RequestHandler
    private let limits: H2Limits
    private let logger: Logger
    private let metrics = TransportMetrics()
    private let listeners = NIOLockedValueBox<[any Channel]>([])
    private let connections = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])
    private let draining = NIOLockedValueBox(false)
    /// The last connection id handed out, for log metadata.
    private let lastConnectionID = NIOLockedValueBox<UInt64>(0)

    public init(group: any EventLoopGroup, handler: any H2RequestHandler, limits: H2Limits, logger: Logger) {
        self.group = group
        self.handler = handler
        self.limits = limits
        self.logger = logger
    }

    /// Binds a listener; `tls` nil means cleartext h2c with prior knowledge. Returns the bound port.
    @discardableResult
    public func bind(host: String, port: Int, tls: TLSContext?) async throws -> Int {
        let handler = self.handler, limits = self.limits, logger = self.logger, metrics = self.metrics
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 4)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 64 * 1024, high: 256 * 1024))
            .childChannelInitializer { [self] channel in
                if draining.withLockedValue({ $0 }) { return channel.close() }
                let id = ObjectIdentifier(channel)
                connections.withLockedValue { $0[id] = channel }
                channel.closeFuture.whenComplete { [self] _ in _ = connections.withLockedValue { $0.removeValue(forKey: id) } }
                var connectionLogger = logger
                connectionLogger[metadataKey: "connection.id"] = "\(lastConnectionID.withLockedValue { $0 += 1; return $0 })"
                return channel.eventLoop.makeCompletedFuture {
                    let h = H2ConnectionHandler(tls: try tls.map { try TLSConnection(context: $0, server: true) },
                                                session: try ServerSession(handler: handler, limits: limits),
                                                limits: limits, logger: connectionLogger, metrics: metrics)
                    try channel.pipeline.syncOperations.addHandler(h)
                }
            }
            .bind(host: host, port: port).get()
        listeners.withLockedValue { $0.append(channel) }
        let bound = channel.localAddress?.port ?? port
        logger.info("listening", metadata: ["address": "\(host):\(bound)", "protocol": "\(tls == nil ? "h2c" : "h2 over TLS")"])
        return bound
    }

    public var openConnections: Int { connections.withLockedValue { $0.count } }

    /// Graceful shutdown: stop accepting, GOAWAY every connection so in-flight streams finish,
    /// wait up to `drainTimeout` for them to close, then close whatever is left.
    public func shutdown(drainTimeout: TimeAmount) async {
        draining.withLockedValue { $0 = true }
        for listener in listeners.withLockedValue({ $0 }) { try? await listener.close() }
        let open = connections.withLockedValue { Array($0.values) }
        logger.info("draining", metadata: ["connections": "\(open.count)"])
        for channel in open { channel.pipeline.fireUserInboundEventTriggered(H2GracefulShutdownEvent()) }
        let deadline = NIODeadline.now() + drainTimeout
        while openConnections > 0 && NIODeadline.now() < deadline {
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
        let left = connections.withLockedValue { Array($0.values) }
        if !left.isEmpty { logger.warning("drain.timeout", metadata: ["closing": "\(left.count)"]) }
        for channel in left { try? await channel.close() }
    }
}
