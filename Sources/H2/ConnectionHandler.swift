internal import CNGHTTP2
import Logging
import Metrics
import NIOCore

/// Sent down a connection's pipeline to start a graceful shutdown (GOAWAY, drain, close).
public struct H2GracefulShutdownEvent: Sendable { public init() {} }

/// Sent down a connection's pipeline after frames were queued outside a read (client requests).
struct H2FlushEvent: Sendable {}

/// Transport metrics, shared by every connection of a server.
struct TransportMetrics: Sendable {
    let connectionsOpen = Meter(label: "scenescore_connections_open")
    let streamsInFlight = Meter(label: "scenescore_streams_in_flight")
    let handshakeFailures = Counter(label: "scenescore_tls_handshake_failures_total")
    let protocolErrors = Counter(label: "scenescore_h2_protocol_errors_total")
    let streamsTimedOut = Counter(label: "scenescore_h2_streams_timed_out_total")
    let rejectedAtServerCap = Counter(label: "scenescore_connections_rejected_total", dimensions: [("reason", "server_limit")])
    let rejectedAtAddressCap = Counter(label: "scenescore_connections_rejected_total", dimensions: [("reason", "address_limit")])
}

/// One HTTP/2 connection: TLS (memory BIOs, optional) → nghttp2 session → application.
///
/// The loop is nghttp2's example server's: after every read, send; close when the session
/// wants neither to read nor to write. Backpressure: while the channel is not writable, no
/// frames are serialised and no further reads are issued, so a client that stops reading stops
/// being read, and what is buffered stays bounded by the open streams' responses.
final class H2ConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = Never
    typealias OutboundIn = Never
    typealias OutboundOut = ByteBuffer

    private let tls: TLSConnection?
    private let session: any H2Session
    private let limits: H2Limits
    private var logger: Logger
    private let metrics: TransportMetrics
    /// Plaintext frames of one flush, handed to TLS in one SSL_write (fewer, fuller records).
    private var plaintextOut: [UInt8] = []
    private var pendingRead = false
    private var closing = false
    private var timer: RepeatedTask?
    private var handshakeDeadline: NIODeadline
    /// The session's open streams as last added to the in-flight gauge (`syncStreamsGauge`).
    private var streamsOpen = 0
    /// Whether anything was written: a lingering close waits for the writes before it, so a
    /// final GOAWAY is not cut off.
    private var wroteAny = false
    /// The ciphertext buffer, reused: once NIO has written it out this handler holds the only
    /// reference again, so the next flush writes into the same storage without allocating.
    private var outbound: ByteBuffer?

    init(tls: TLSConnection?, session: any H2Session, limits: H2Limits, logger: Logger, metrics: TransportMetrics) {
        self.tls = tls
        self.session = session
        self.limits = limits
        self.logger = logger
        self.metrics = metrics
        self.handshakeDeadline = .now() + limits.handshakeTimeout
        plaintextOut.reserveCapacity(64 * 1024)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context: context)
        context.fireChannelActive()
    }

    private func start(context: ChannelHandlerContext) {
        guard timer == nil else { return }
        metrics.connectionsOpen.increment()
        if let remote = context.channel.remoteAddress { logger[metadataKey: "peer"] = "\(remote)" }
        handshakeDeadline = .now() + limits.handshakeTimeout
        let tick = TimeAmount.milliseconds(250)
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { _ in
            loopBound.value.checkTimeouts(context: ctx.value)
        }
        session.attach(to: context.eventLoop) { [weak self] in self?.flushSession(context: ctx.value) }
        // h2c: our SETTINGS (or a client's preface) go out at once; a TLS client starts the handshake.
        if tls == nil || tls?.isClient == true {
            if let tls, tls.isClient { _ = tls.handshake() }
            if tls == nil { session.transportEstablished() }
            flushSession(context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        metrics.connectionsOpen.decrement()
        if streamsOpen > 0 { metrics.streamsInFlight.decrement(by: Double(streamsOpen)); streamsOpen = 0 }
        session.connectionClosed()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        let bytes = unwrapInboundIn(data)
        if let tls {
            bytes.withUnsafeReadableBytes { tls.receive($0) }
            if !tls.handshakeDone {
                switch tls.handshake() {
                case .inProgress:
                    flushSession(context: context)
                    return
                case .failed(let error):
                    metrics.handshakeFailures.increment()
                    logger.info("tls.handshake.failed", metadata: ["error": "\(error)"])
                    session.transportFailed("\(error)")
                    flushSession(context: context)
                    close(context: context)
                    return
                case .done:
                    guard tls.negotiatedProtocol == "h2" else {
                        metrics.handshakeFailures.increment()
                        logger.info("tls.alpn.no_h2", metadata: ["alpn": "\(tls.negotiatedProtocol ?? "none")"])
                        session.transportFailed("the peer did not agree to HTTP/2 (ALPN: \(tls.negotiatedProtocol ?? "none"))")
                        tls.shutdown()
                        flushSession(context: context)
                        close(context: context)
                        return
                    }
                    session.transportEstablished()
                }
            }
            var failure: (any Error)?
            let result = tls.readPlaintext { chunk in
                do { try session.receive(chunk); return true } catch { failure = error; return false }
            }
            if let failure { protocolError(context: context, failure); return }
            switch result {
            case .ok: break
            case .closed:
                session.dispatchCompleted()
                flushSession(context: context)
                close(context: context)
                return
            case .failed(let error):
                logger.info("tls.read.failed", metadata: ["error": "\(error)"])
                session.transportFailed("\(error)")
                close(context: context)
                return
            }
        } else {
            do {
                try bytes.withUnsafeReadableBytes { try session.receive($0) }
            } catch {
                protocolError(context: context, error)
                return
            }
        }
        // Requests that completed are answered, and frames flushed, in channelReadComplete:
        // once per burst of reads, so the application sees them together (batching).
    }

    private func protocolError(context: ChannelHandlerContext, _ error: any Error) {
        session.dispatchCompleted()
        metrics.protocolErrors.increment()
        logger.info("h2.protocol.error", metadata: ["error": "\(error)"])
        flushSession(context: context)  // nghttp2 queued a GOAWAY: send it
        close(context: context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if !closing {
            session.dispatchCompleted()
            flushSession(context: context)
        }
        context.fireChannelReadComplete()
    }

    /// Backpressure, read side: hold the read while the socket is not writable.
    func read(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            context.read()
        } else {
            pendingRead = true
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            flushSession(context: context)
            if pendingRead {
                pendingRead = false
                context.read()
            }
        }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is H2GracefulShutdownEvent {
            session.goAway()
            flushSession(context: context)
        } else if event is H2FlushEvent {
            flushSession(context: context)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("connection.error", metadata: ["error": "\(error)"])
        close(context: context)
    }

    /// Serialises what nghttp2 has to send (while the channel is writable), encrypts it, and
    /// writes it; closes the connection when the session is done.
    private func flushSession(context: ChannelHandlerContext) {
        guard !closing else { return }
        do {
            while context.channel.isWritable {
                var out = outbound ?? context.channel.allocator.buffer(capacity: 16 * 1024)
                outbound = nil  // the local copy is then the only one, and clear() keeps its storage
                out.clear()
                defer { outbound = out }
                if let tls {
                    plaintextOut.removeAll(keepingCapacity: true)
                    // Frames wait for the handshake: SSL_write before it would only want to read.
                    let produced = !tls.handshakeDone ? 0 : try session.produceOutput(limit: limits.outputChunkBytes) { plaintextOut.append(contentsOf: $0) }
                    if produced > 0 { try plaintextOut.withUnsafeBytes { try tls.writePlaintext($0) } }
                    if tls.pendingCiphertext > 0 {
                        out.reserveCapacity(tls.pendingCiphertext)
                        tls.drainCiphertext(into: &out)
                    }
                    if produced == 0 && out.readableBytes == 0 { break }
                } else {
                    out.reserveCapacity(16 * 1024)
                    let produced = try session.produceOutput(limit: limits.outputChunkBytes) { out.writeBytes($0) }
                    if produced == 0 { break }
                }
                context.writeAndFlush(wrapOutboundOut(out), promise: nil)
                wroteAny = true
            }
        } catch {
            logger.info("h2.send.failed", metadata: ["error": "\(error)"])
            close(context: context)
            return
        }
        syncStreamsGauge()
        let handshaking = tls.map { !$0.handshakeDone } ?? false
        if !handshaking && !session.wantsRead && !session.wantsWrite {
            close(context: context)
        }
    }

    /// Moves the in-flight gauge by what the session's open streams changed since the last
    /// flush: once per flush rather than twice per stream (a metric update and a closure call
    /// per stream cost a few percent of a small request).
    private func syncStreamsGauge() {
        let open = session.openStreams
        guard open != streamsOpen else { return }
        if open > streamsOpen { metrics.streamsInFlight.increment(by: Double(open - streamsOpen)) }
        else { metrics.streamsInFlight.decrement(by: Double(streamsOpen - open)) }
        streamsOpen = open
    }

    private func checkTimeouts(context: ChannelHandlerContext) {
        guard !closing else { return }
        let now = NIODeadline.now()
        if !(tls?.handshakeDone ?? true) || !session.sawPeerSettings {
            if now > handshakeDeadline {
                if !(tls?.handshakeDone ?? true) { metrics.handshakeFailures.increment() }
                logger.info("connection.handshake.timeout")
                close(context: context)
            }
            return
        }
        let stalled = session.resetStalledStreams(openedBefore: now - limits.streamTimeout)
        if stalled > 0 {
            metrics.streamsTimedOut.increment(by: stalled)
            logger.info("h2.stream.timeout", metadata: ["streams": "\(stalled)"])
        }
        if session.openStreams == 0 && now - session.idleSince > limits.idleTimeout {
            logger.debug("connection.idle.timeout")
            session.goAway()
        }
        flushSession(context: context)
    }

    private func close(context: ChannelHandlerContext) {
        guard !closing else { return }
        closing = true
        timer?.cancel()
        if wroteAny {
            // Lingering close: once the last write (typically GOAWAY) is out, shut our side down
            // and keep reading (and discarding) until the peer closes. Closing at once, with the
            // peer's next requests still unread, makes the kernel answer with a TCP RST, which
            // can destroy the GOAWAY before the peer reads it. A peer that neither reads nor
            // closes gets one second.
            let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
            // Writes complete in order: an empty one completes once every earlier one is out.
            let written = context.eventLoop.makePromise(of: Void.self)
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)), promise: written)
            written.futureResult.whenComplete { _ in ctx.value.close(mode: .output, promise: nil) }
            context.eventLoop.scheduleTask(in: .seconds(1)) { ctx.value.close(promise: nil) }
        } else {
            context.close(promise: nil)
        }
    }
}
