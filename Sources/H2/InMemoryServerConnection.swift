import NIOCore

/// An HTTP/2 server connection without a socket or TLS: client bytes in, server bytes out,
/// through the same nghttp2 session and request dispatch as a listener's connections
/// (`ServerSession`). For fuzzing and tests, where a socket only adds cost and nondeterminism.
///
/// Each `receive` is one read of an h2c connection, as `H2ConnectionHandler` handles it: the
/// bytes go into nghttp2, the requests that completed are dispatched together (so batching
/// happens as on a real connection), and everything nghttp2 wants to send is serialised into
/// `output`. A protocol error ends the connection after nghttp2's GOAWAY, as on a socket.
/// Deferred responses (`H2RequestHandler.answersLater`) are serialised when they complete;
/// `waitForDeferredResponses` waits for them. Not modelled: timers (stream, idle and handshake
/// timeouts) and socket backpressure.
///
/// The session lives on `eventLoop`, where deferred responses arrive. Every method runs there
/// and waits for the result, so call them from outside that loop (a test's or fuzzer's thread).
public final class InMemoryServerConnection: @unchecked Sendable {
    // @unchecked: `session`, `output`, `closed` and `failure` are only touched on `eventLoop`.
    private let eventLoop: any EventLoop
    private let session: ServerSession
    private var output: [UInt8] = []
    private var closed = false
    private var failure: String?

    /// Starts a connection (the server's SETTINGS are the first output).
    public init(handler: any H2RequestHandler, limits: H2Limits = H2Limits(), eventLoop: any EventLoop) throws {
        self.eventLoop = eventLoop
        session = try ServerSession(handler: handler, limits: limits)
        try onLoop { [self] in
            session.attach(to: eventLoop) { [weak self] in self?.flush() }
            flush()
        }
    }

    /// Feeds bytes as one read. False when the connection is closed: it was before, or these
    /// bytes broke the protocol. nghttp2 reports that either by failing the read
    /// (`protocolFailure` says how) or by ending the session with a GOAWAY.
    @discardableResult
    public func receive(_ bytes: [UInt8]) throws -> Bool {
        try onLoop { [self] in
            guard !closed else { return false }
            do {
                try bytes.withUnsafeBytes { try session.receive($0) }
            } catch {
                failure = "\(error)"
                session.dispatchCompleted()  // what completed before the error is still answered
                flush()                      // with nghttp2's GOAWAY last
                closed = true
                return false
            }
            session.dispatchCompleted()
            flush()
            return !closed
        }
    }

    /// Waits until every deferred request has been answered, polling every millisecond.
    /// False if some are still outstanding after `timeout`.
    public func waitForDeferredResponses(timeout: TimeAmount) throws -> Bool {
        let deadline = NIODeadline.now() + timeout
        while try onLoop({ [self] in session.deferredInFlight }) > 0 {
            if NIODeadline.now() > deadline { return false }
            try eventLoop.scheduleTask(in: .milliseconds(1)) {}.futureResult.wait()
        }
        return true
    }

    /// The bytes the server has sent since the last call.
    public func takeOutput() throws -> [UInt8] {
        try onLoop { [self] in
            defer { output = [] }
            return output
        }
    }

    /// True once the session wants neither to read nor to write (or failed): a real
    /// connection would be closed.
    public var isClosed: Bool { get throws { try onLoop { [self] in closed } } }

    /// The protocol error that closed the connection, if one did.
    public var protocolFailure: String? { get throws { try onLoop { [self] in failure } } }

    /// Streams open in the session.
    public var openStreams: Int { get throws { try onLoop { [self] in session.openStreams } } }

    /// Serialises what nghttp2 has to send; marks the connection closed when it is done.
    private func flush() {
        guard !closed else { return }
        do {
            while try session.produceOutput(limit: 1 << 20, { output.append(contentsOf: $0) }) > 0 {}
        } catch {
            failure = "\(error)"
            closed = true
            return
        }
        if !session.wantsRead && !session.wantsWrite { closed = true }
    }

    private func onLoop<T: Sendable>(_ body: @escaping @Sendable () throws -> T) throws -> T {
        try eventLoop.submit(body).wait()
    }
}
