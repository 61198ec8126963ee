import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// An HTTP/2 client connection (TLS with ALPN h2, or h2c prior knowledge) on the same
/// transport as the server: the load tool and tests stand on it. Requests may be issued from
/// any thread; they are multiplexed on the one connection.
public final class H2Client: Sendable {
    private let channel: any Channel
    private let session: NIOLoopBound<ClientSession>
    private let authority: String
    private let scheme: String

    private init(channel: any Channel, session: NIOLoopBound<ClientSession>, authority: String, scheme: String) {
        self.channel = channel
        self.session = session
        self.authority = authority
        self.scheme = scheme
    }

    /// Connects and completes the TLS handshake lazily with the first bytes. `tls` nil = h2c.
    public static func connect(host: String, port: Int, tls: TLSContext?, serverName: String? = nil,
                               group: any EventLoopGroup, limits: H2Limits = H2Limits(),
                               logger: Logger = Logger(label: "scenescore.h2client")) async throws -> H2Client {
        let eventLoop = group.next()
        let metrics = TransportMetrics()
        // Session and TLS state are created on the loop that will own them; the box carries
        // the session out, to be used only on that loop.
        let sessionBox = NIOLockedValueBox<NIOLoopBound<ClientSession>?>(nil)
        let channel = try await ClientBootstrap(group: eventLoop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let tlsConnection = try tls.map { try TLSConnection(context: $0, server: false, serverName: serverName ?? host) }
                    let session = try ClientSession(limits: limits)
                    sessionBox.withLockedValue { $0 = NIOLoopBound(session, eventLoop: channel.eventLoop) }
                    let handler = H2ConnectionHandler(tls: tlsConnection, session: session, limits: limits,
                                                      logger: logger, metrics: metrics)
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .connect(host: host, port: port).get()
        guard let session = sessionBox.withLockedValue({ $0 }) else { throw H2ClientError.connectionClosed }
        return H2Client(channel: channel, session: session, authority: "\(serverName ?? host):\(port)",
                        scheme: tls == nil ? "http" : "https")
    }
    /// Sends one request and waits for its complete response.
    public func request(method: String, path: String, headers: [(name: String, value: String)] = [],
                        body: [UInt8] = []) async throws -> H2ClientResponse {
        let promise = channel.eventLoop.makePromise(of: H2ClientResponse.self)
        let (authority, scheme, session, channel) = (self.authority, self.scheme, self.session, self.channel)
        channel.eventLoop.execute {
            session.value.submit(method: method, path: path, authority: authority, scheme: scheme, headers: headers,
                                 body: body) { result in
                switch result {
                case .success(let response): promise.succeed(response)
                case .failure(let error): promise.fail(error)
                }
            }
            channel.pipeline.fireUserInboundEventTriggered(H2FlushEvent())
        }
        return try await promise.futureResult.get()
    }

    /// GOAWAY and close.
    public func close() async {
        let session = self.session, channel = self.channel
        try? await channel.eventLoop.submit {
            session.value.goAway()
            channel.pipeline.fireUserInboundEventTriggered(H2FlushEvent())
        }.get()
        try? await channel.close()
    }
}
