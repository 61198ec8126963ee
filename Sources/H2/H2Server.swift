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
    private let connections = NIOLockedValueBox(OpenConnections())
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
                let address = channel.remoteAddress?.ipAddress ?? "unknown"
                let refusal = connections.withLockedValue { $0.admit(channel, id: id, address: address, limits: limits) }
                if let refusal {
                    (refusal == .serverLimit ? metrics.rejectedAtServerCap : metrics.rejectedAtAddressCap).increment()
                    logger.debug("connection.refused", metadata: ["peer": "\(address)", "reason": "\(refusal)"])
                    return channel.close()
                }
                channel.closeFuture.whenComplete { [self] _ in connections.withLockedValue { $0.remove(id, address: address) } }
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

    public var openConnections: Int { connections.withLockedValue { $0.channels.count } }

    /// Graceful shutdown: stop accepting, GOAWAY every connection so in-flight streams finish,
    /// wait up to `drainTimeout` for them to close, then close whatever is left.
    public func shutdown(drainTimeout: TimeAmount) async {
        draining.withLockedValue { $0 = true }
        for listener in listeners.withLockedValue({ $0 }) { try? await listener.close() }
        let open = connections.withLockedValue { Array($0.channels.values) }
        logger.info("draining", metadata: ["connections": "\(open.count)"])
        for channel in open { channel.pipeline.fireUserInboundEventTriggered(H2GracefulShutdownEvent()) }
        let deadline = NIODeadline.now() + drainTimeout
        while openConnections > 0 && NIODeadline.now() < deadline {
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
        let left = connections.withLockedValue { Array($0.channels.values) }
        if !left.isEmpty { logger.warning("drain.timeout", metadata: ["closing": "\(left.count)"]) }
        for channel in left { try? await channel.close() }
    }
}

/// The open connections of one `H2Server`, and how many each client address holds.
private struct OpenConnections {
    enum Refusal { case serverLimit, addressLimit }

    var channels: [ObjectIdentifier: any Channel] = [:]
    var perAddress: [String: Int] = [:]

    /// Records a new connection, or says which cap it would exceed.
    mutating func admit(_ channel: any Channel, id: ObjectIdentifier, address: String, limits: H2Limits) -> Refusal? {
        if channels.count >= limits.maxConnections { return .serverLimit }
        let held = perAddress[address, default: 0]
        if held >= limits.maxConnectionsPerAddress { return .addressLimit }
        channels[id] = channel
        perAddress[address] = held + 1
        return nil
    }

    mutating func remove(_ id: ObjectIdentifier, address: String) {
        guard channels.removeValue(forKey: id) != nil else { return }
        let held = perAddress[address, default: 1] - 1
        perAddress[address] = held > 0 ? held : nil
    }
}
