internal import CNGHTTP2
import Logging
import NIOCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

// The load tool's client: many requests in flight on one connection, with no allocation,
// task or continuation per request. A request is a header block encoded once
// (`H2RequestTemplate`) plus a body encoded once (`H2RequestBody`); the response comes back
// through a delegate, on the connection's event loop, as views that are valid during the call.
// `H2Client` (one async call per request) stays the API for everything that is not a hot loop.

/// A request body encoded once and sent by any number of streams (it is never written to).
/// `requestIDOffset`: where a u64 request id sits in the body (wire v1: byte 8), so each
/// stream can send its own id without a copy of the body: the id is patched in while the body
/// is copied into DATA frames.
public final class H2RequestBody: @unchecked Sendable {  // immutable after init
    public let bytes: UnsafeRawBufferPointer
    public let requestIDOffset: Int?

    public init(_ body: [UInt8], requestIDOffset: Int? = nil) {
        precondition(requestIDOffset.map { $0 >= 0 && $0 + 8 <= body.count } ?? true, "request id outside the body")
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(body.count, 1), alignment: 16)
        body.withUnsafeBytes { if $0.count > 0 { storage.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
        bytes = UnsafeRawBufferPointer(rebasing: storage[0..<body.count])
        self.requestIDOffset = requestIDOffset
    }

    deinit { UnsafeMutableRawPointer(mutating: bytes.baseAddress)?.deallocate() }
}

/// A request's method, path, authority, scheme and extra headers, encoded once as the name/value
/// bytes nghttp2 takes; `content-length` is added per stream from its body.
public final class H2RequestTemplate: @unchecked Sendable {  // immutable after init
    private let bytes: UnsafeMutableRawBufferPointer
    private let spans: [(name: Range<Int>, value: Range<Int>)]

    public init(method: String, path: String, authority: String, scheme: String,
                headers: [(name: String, value: String)] = []) {
        var raw: [UInt8] = []
        var spans: [(name: Range<Int>, value: Range<Int>)] = []
        func append(_ s: String) -> Range<Int> {
            let start = raw.count
            raw.append(contentsOf: s.utf8)
            return start..<raw.count
        }
        for (name, value) in [(":method", method), (":path", path), (":scheme", scheme), (":authority", authority)]
            + headers.map({ ($0.name.lowercased(), $0.value) }) {
            let n = append(name)
            spans.append((n, append(value)))
        }
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(raw.count, 1), alignment: 8)
        raw.withUnsafeBytes { storage.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        bytes = storage
        self.spans = spans
    }

    deinit { bytes.deallocate() }

    /// The header block as nghttp2_nv entries (valid during the call), with `content-length`
    /// when `contentLength` is not nil. nghttp2 copies what it keeps, so nothing outlives the call.
    func withNameValues<R>(contentLength: Int?, _ body: (UnsafePointer<nghttp2_nv>, Int) -> R) -> R {
        let count = spans.count + (contentLength == nil ? 0 : 1)
        return withUnsafeTemporaryAllocation(of: nghttp2_nv.self, capacity: count) { nva in
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 24) { digits in
                let base = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
                for (i, span) in spans.enumerated() {
                    nva[i] = nghttp2_nv(name: base + span.name.lowerBound, value: base + span.value.lowerBound,
                                        namelen: span.name.count, valuelen: span.value.count,
                                        flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
                }
                if let contentLength {
                    var v = contentLength, n = 0
                    repeat { digits[23 - n] = UInt8(truncatingIfNeeded: 0x30 + v % 10); v /= 10; n += 1 } while v > 0
                    nva[spans.count] = nghttp2_nv(name: H2RequestTemplate.contentLengthName, value: digits.baseAddress! + 24 - n,
                                                  namelen: 14, valuelen: n, flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
                }
                return body(UnsafePointer(nva.baseAddress!), count)
            }
        }
    }

    nonisolated(unsafe) private static let contentLengthName: UnsafeMutablePointer<UInt8> = {  // never written after init
        let p = UnsafeMutablePointer<UInt8>.allocate(capacity: 14)
        for (i, b) in "content-length".utf8.enumerated() { p[i] = b }
        return p
    }()
}

/// Why a stream of an `H2PipelinedConnection` did not complete.
public enum H2StreamFailure: Sendable, Equatable, CustomStringConvertible {
    /// RST_STREAM from the peer (or nghttp2, for a protocol error), with the HTTP/2 error code.
    case reset(code: UInt32)
    /// Refused before the server processed it (GOAWAY with a lower last-stream-id, or REFUSED_STREAM).
    case refused
    /// No complete response within `H2Limits.streamTimeout`; we reset it.
    case timedOut
    /// The connection closed first.
    case connectionClosed

    public var description: String {
        switch self {
        case .reset(let code): return "stream reset (\(String(cString: nghttp2_http2_strerror(code))))"
        case .refused: return "stream refused (GOAWAY)"
        case .timedOut: return "timed out"
        case .connectionClosed: return "connection closed"
        }
    }
}

/// What an `H2PipelinedConnection` reports, always on its event loop. Views passed in are valid
/// only during the call.
public protocol H2PipelinedDelegate: AnyObject {
    /// TCP connected.
    func connected()
    /// TLS handshake done with ALPN h2 (h2c: right after `connected`).
    func transportEstablished()
    /// The server's first SETTINGS arrived: requests may be submitted; `capacity` is known.
    func ready()
    /// A complete response on `slot` (the value `submit` returned). `captured` is the value of
    /// the connection's captured header (nil when absent).
    func response(slot: Int, status: Int, captured: UnsafeRawBufferPointer?, body: UnsafeRawBufferPointer)
    /// `slot`'s stream ended without a complete response.
    func failed(slot: Int, _ failure: H2StreamFailure)
    /// The end of one burst of reads: every response of the burst was delivered. Requests
    /// submitted here go out in the same flush.
    func readBurstEnded()
    /// The connection is gone (after every open slot got `failed`); `reason` says why when it
    /// failed (refused, TLS), nil for an orderly close.
    func closed(reason: String?)
}

/// One HTTP/2 client connection (TLS with ALPN h2, or h2c) for a load generator: up to
/// `maxStreams` requests in flight, each in a pooled slot, submitted and answered on the
/// connection's event loop without allocating. Everything here must be called on `eventLoop`.
public final class H2PipelinedConnection {
    public let eventLoop: any EventLoop
    private let session: PipelinedClientSession
    private var channel: (any Channel)?
    private var closeRequested = false

    /// Starts connecting (must be called on `eventLoop`); progress and failures go to `delegate`.
    /// `captureHeader`: a response header whose value `response` hands over (lowercase name).
    public init(host: String, port: Int, tls: TLSContext?, serverName: String? = nil, eventLoop: any EventLoop,
                maxStreams: Int, limits: H2Limits = H2Limits(), captureHeader: String? = nil,
                delegate: any H2PipelinedDelegate) throws {
        eventLoop.preconditionInEventLoop()
        self.eventLoop = eventLoop
        let tlsConnection = try tls.map { try TLSConnection(context: $0, server: false, serverName: serverName ?? host) }
        session = try PipelinedClientSession(limits: limits, maxStreams: maxStreams, captureHeader: captureHeader)
        session.delegate = delegate
        let parts = NIOLoopBound((session: session, tls: tlsConnection), eventLoop: eventLoop)
        // Transport errors are reported through the delegate; the handler's log lines would only
        // repeat them (and a load generator's output is its report).
        let quiet = Logger(label: "scenescore.h2.pipelined", factory: { _ in SwiftLogNoOpLogHandler() })
        let future = ClientBootstrap(group: eventLoop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = H2ConnectionHandler(tls: parts.value.tls, session: parts.value.session, limits: limits,
                                                      logger: quiet, metrics: TransportMetrics())
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .connect(host: host, port: port)
        let me = NIOLoopBound(self, eventLoop: eventLoop)
        future.whenComplete { result in
            let connection = me.value
            switch result {
            case .success(let channel):
                connection.channel = channel
                connection.session.delegate?.connected()
                if connection.closeRequested { connection.close() }
            case .failure(let error):
                connection.session.failBeforeConnect(reason: describeConnectError(error))
            }
        }
    }

    /// Streams that may be opened now: `maxStreams` (capped by the server's
    /// SETTINGS_MAX_CONCURRENT_STREAMS) less those in flight; 0 until `ready` and after GOAWAY.
    public var capacity: Int { session.capacity }
    public var inFlight: Int { session.inFlight }
    /// The server's SETTINGS_MAX_CONCURRENT_STREAMS (valid after `ready`).
    public var serverMaxConcurrentStreams: Int { session.remoteMaxConcurrentStreams }
    /// HTTP/2 bytes (frames, before TLS) received and sent so far.
    public var bytesReceived: Int { session.bytesReceived }
    public var bytesSent: Int { session.bytesSent }

    /// Queues one request; returns its slot (0..<maxStreams), or nil without capacity.
    /// `requestID` is written into the body at `body.requestIDOffset`. Frames go out with the
    /// next flush: at the end of the current read burst, or call `flush()`.
    public func submit(_ template: H2RequestTemplate, body: H2RequestBody?, requestID: UInt64 = 0) -> Int? {
        session.submit(template, body: body, requestID: requestID)
    }

    /// Writes what was submitted outside a read burst. (Called from a delegate callback during a
    /// read, it does nothing: the end of the read burst flushes.)
    public func flush() {
        guard !session.receiving else { return }
        session.flush?()
    }

    /// GOAWAY, then close once the server has seen it.
    public func close() {
        guard let channel else { closeRequested = true; return }
        guard !closeRequested || channel.isActive else { return }
        closeRequested = true
        session.goAway()
        flush()
        channel.eventLoop.scheduleTask(in: .milliseconds(200)) { channel.close(promise: nil) }
    }
}

/// "connection refused", "no address for HOST", … from NIO's connect errors.
func describeConnectError(_ error: any Error) -> String {
    if let e = error as? NIOConnectionError {
        if let first = e.connectionErrors.first { return describeConnectError(first.error) }
        if e.dnsAAAAError != nil || e.dnsAError != nil { return "cannot resolve \(e.host)" }
        return "cannot connect to \(e.host):\(e.port)"
    }
    if let e = error as? IOError { return String(cString: strerror(e.errnoCode)).lowercased() }
    if case ChannelError.connectTimeout = error { return "connect timed out" }
    return "\(error)"
}

/// The nghttp2 client session behind `H2PipelinedConnection`. Slot `i`'s stream carries
/// `i + 1` as its nghttp2 stream user data and data-source pointer, so callbacks find their
/// slot without a dictionary. Event-loop confined; owns its nghttp2_session.
final class PipelinedClientSession: NGHTTP2Endpoint, H2Session {
    struct Slot {
        var streamID: Int32 = 0
        var complete = false
        var hasCaptured = false
        var status = 0
        var body: Unmanaged<H2RequestBody>?
        var bodyOffset = 0
        var requestID: UInt64 = 0
        var openedAt: UInt64 = 0
        var captured: [UInt8] = []
        var response: [UInt8] = []
    }

    /// The slots, in one allocation that never moves: callbacks update them in place (no
    /// retain, no copy, no exclusivity check per field). A slot's body is retained while in use.
    private let slots: UnsafeMutableBufferPointer<Slot>
    private var freeSlots: [Int]
    private let captureName: [UInt8]?
    /// Held strongly until the connection is gone (`connectionClosed` / `failBeforeConnect` let go).
    var delegate: (any H2PipelinedDelegate)?
    private(set) var inFlight = 0
    private(set) var sawPeerSettings = false
    private(set) var idleSince = NIODeadline.now()
    private var goingAway = false
    private var finished = false
    private var failure: String?
    private(set) var bytesReceived = 0
    private(set) var bytesSent = 0
    private(set) var flush: (() -> Void)?
    /// Streams reset by our own timeout, so their close reports `timedOut`.
    private var timedOut: Set<Int32> = []

    init(limits: H2Limits, maxStreams: Int, captureHeader: String?) throws {
        precondition(maxStreams >= 1, "maxStreams must be at least 1")
        slots = .allocate(capacity: maxStreams)
        for i in 0..<maxStreams {
            var slot = Slot()
            slot.captured.reserveCapacity(64)
            slot.response.reserveCapacity(1024)
            (slots.baseAddress! + i).initialize(to: slot)
        }
        freeSlots = Array((0..<maxStreams).reversed())
        captureName = captureHeader.map { Array($0.lowercased().utf8) }
        super.init()
        try startClientSession(limits: limits, onHeader: pipelinedOnHeader, onFrameRecv: pipelinedOnFrameRecv,
                               onDataChunkRecv: pipelinedOnDataChunkRecv, onStreamClose: pipelinedOnStreamClose)
    }

    deinit {
        for i in slots.indices { slots[i].body?.release() }
        slots.baseAddress!.deinitialize(count: slots.count)
        slots.deallocate()
    }

    var openStreams: Int { inFlight }

    var remoteMaxConcurrentStreams: Int {
        Int(nghttp2_session_get_remote_settings(session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS))
    }

    var capacity: Int {
        guard sawPeerSettings, !goingAway, !finished else { return 0 }
        return max(0, min(slots.count, remoteMaxConcurrentStreams) - inFlight)
    }

    /// True while nghttp2 is parsing received bytes (its callbacks run then): frames must not be
    /// serialised from inside them; the read burst's end flushes anyway.
    private(set) var receiving = false

    override func receive(_ bytes: UnsafeRawBufferPointer) throws {
        bytesReceived += bytes.count
        receiving = true
        defer { receiving = false }
        try super.receive(bytes)
    }

    override func produceOutput(limit: Int, _ sink: (UnsafeRawBufferPointer) -> Void) throws -> Int {
        let n = try super.produceOutput(limit: limit, sink)
        bytesSent += n
        return n
    }

    func attach(to eventLoop: any EventLoop, flush: @escaping () -> Void) { self.flush = flush }

    func transportEstablished() { delegate?.transportEstablished() }

    func transportFailed(_ reason: String) { if failure == nil { failure = reason } }

    func goAway() {
        goingAway = true
        _ = nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, UInt32(NGHTTP2_NO_ERROR.rawValue), nil, 0)
    }

    func dispatchCompleted() {
        if !finished { delegate?.readBurstEnded() }
    }

    func resetStalledStreams(openedBefore deadline: NIODeadline) -> Int {
        let limit = deadline.uptimeNanoseconds
        var count = 0
        for i in slots.indices where slots[i].streamID != 0 && !slots[i].complete && slots[i].openedAt < limit {
            if timedOut.insert(slots[i].streamID).inserted {
                _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), slots[i].streamID, UInt32(NGHTTP2_CANCEL.rawValue))
                count += 1
            }
        }
        return count
    }

    func connectionClosed() {
        flush = nil  // it holds the handler's context, which holds this session
        guard !finished else { return }
        finished = true
        for index in slots.indices where slots[index].streamID != 0 {
            release(index)
            delegate?.failed(slot: index, .connectionClosed)
        }
        let delegate = self.delegate
        self.delegate = nil
        delegate?.closed(reason: failure ?? (sawPeerSettings ? nil : "the server closed the connection before HTTP/2 started"))
    }

    func failBeforeConnect(reason: String) {
        guard !finished else { return }
        finished = true
        let delegate = self.delegate
        self.delegate = nil
        delegate?.closed(reason: reason)
    }

    func submit(_ template: H2RequestTemplate, body: H2RequestBody?, requestID: UInt64) -> Int? {
        guard capacity > 0, let index = freeSlots.popLast() else { return nil }
        let tag = UnsafeMutableRawPointer(bitPattern: index + 1)
        let session = self.session
        let id: Int32 = template.withNameValues(contentLength: body?.bytes.count) { nva, count in
            if body == nil { return nghttp2_submit_request(session, nil, nva, count, nil, tag) }
            var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: tag), read_callback: pipelinedReadBody)
            return nghttp2_submit_request(session, nil, nva, count, &provider, tag)
        }
        guard id > 0 else {
            freeSlots.append(index)
            return nil
        }
        let slot = slots.baseAddress! + index
        slot.pointee.streamID = id
        slot.pointee.body = body.map { Unmanaged.passRetained($0) }
        slot.pointee.bodyOffset = 0
        slot.pointee.requestID = requestID
        slot.pointee.status = 0
        slot.pointee.hasCaptured = false
        slot.pointee.captured.removeAll(keepingCapacity: true)
        slot.pointee.response.removeAll(keepingCapacity: true)
        slot.pointee.complete = false
        slot.pointee.openedAt = NIODeadline.now().uptimeNanoseconds
        inFlight += 1
        return index
    }

    private func release(_ index: Int) {
        let slot = slots.baseAddress! + index
        slot.pointee.streamID = 0
        slot.pointee.body?.release()
        slot.pointee.body = nil
        if slot.pointee.response.capacity > 1 << 20 { slot.pointee.response = [] }  // don't let one huge answer pin memory
        freeSlots.append(index)
        inFlight -= 1
        if inFlight == 0 { idleSince = .now() }
    }

    /// The slot of the last stream looked up: a response's callbacks (headers, data, close)
    /// come one after another for the same stream.
    private var lastStreamID: Int32 = 0
    private var lastIndex = 0

    @inline(__always)
    private func slotIndex(streamID: Int32) -> Int? {
        if streamID == lastStreamID && slots[lastIndex].streamID == streamID { return lastIndex }
        guard let tag = nghttp2_session_get_stream_user_data(session, streamID) else { return nil }
        let index = Int(bitPattern: tag) - 1
        guard index >= 0, index < slots.count, slots[index].streamID == streamID else { return nil }
        lastStreamID = streamID
        lastIndex = index
        return index
    }

    // MARK: - Callback bodies

    private static let statusName: StaticString = ":status"

    fileprivate func header(streamID: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        guard let index = slotIndex(streamID: streamID) else { return }
        let slot = slots.baseAddress! + index
        if name.count == 7 && memcmp(name.baseAddress!, PipelinedClientSession.statusName.utf8Start, 7) == 0 {
            var v = 0
            for b in value where b >= 0x30 && b <= 0x39 { v = v * 10 + Int(b - 0x30) }
            slot.pointee.status = v
        } else if let captureName, name.count == captureName.count,
                  captureName.withUnsafeBytes({ memcmp(name.baseAddress!, $0.baseAddress!, name.count) }) == 0 {
            slot.pointee.captured.append(contentsOf: value.prefix(256))
            slot.pointee.hasCaptured = true
        }
    }

    fileprivate func frameReceived(type: UInt8, flags: UInt8, streamID: Int32) {
        if type == UInt8(NGHTTP2_SETTINGS.rawValue) && flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) == 0 && !sawPeerSettings {
            sawPeerSettings = true
            delegate?.ready()
        } else if type == UInt8(NGHTTP2_GOAWAY.rawValue) {
            goingAway = true
        }
        if flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0, let index = slotIndex(streamID: streamID) {
            slots.baseAddress![index].complete = true
        }
    }

    fileprivate func dataChunk(streamID: Int32, _ data: UnsafeRawBufferPointer) {
        guard let index = slotIndex(streamID: streamID) else { return }
        slots.baseAddress![index].response.append(contentsOf: data)
    }

    fileprivate func streamClosed(streamID: Int32, errorCode: UInt32) {
        guard let index = slotIndex(streamID: streamID) else { return }
        let slot = slots.baseAddress! + index
        let wasTimedOut = !timedOut.isEmpty && timedOut.remove(streamID) != nil
        // A complete response counts even if a reset followed it (RFC 9113 §8.1).
        if slot.pointee.complete && slot.pointee.status > 0 {
            let status = slot.pointee.status
            slot.pointee.response.withUnsafeBytes { body in
                if slot.pointee.hasCaptured {
                    slot.pointee.captured.withUnsafeBytes { delegate?.response(slot: index, status: status, captured: $0, body: body) }
                } else {
                    delegate?.response(slot: index, status: status, captured: nil, body: body)
                }
            }
        } else if wasTimedOut {
            delegate?.failed(slot: index, .timedOut)
        } else if errorCode == UInt32(NGHTTP2_REFUSED_STREAM.rawValue) {
            delegate?.failed(slot: index, .refused)
        } else {
            delegate?.failed(slot: index, .reset(code: errorCode))
        }
        release(index)
    }

    fileprivate func readBody(streamID: Int32, source: UnsafeMutableRawPointer?, into buffer: UnsafeMutablePointer<UInt8>,
                              length: Int, flags: UnsafeMutablePointer<UInt32>) -> Int {
        let index = Int(bitPattern: source) - 1
        guard index >= 0, index < slots.count, slots[index].streamID == streamID, let unmanagedBody = slots[index].body else {
            return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue)
        }
        let slot = slots.baseAddress! + index
        let body = unmanagedBody.takeUnretainedValue()
        let start = slot.pointee.bodyOffset
        let n = min(length, body.bytes.count - start)
        if n > 0 {
            UnsafeMutableRawPointer(buffer).copyMemory(from: body.bytes.baseAddress! + start, byteCount: n)
            if let at = body.requestIDOffset, at + 8 > start, at < start + n {
                // Patch the part of the 8 request-id bytes that lies in this chunk.
                withUnsafeBytes(of: slot.pointee.requestID.littleEndian) { id in
                    for i in max(at, start)..<min(at + 8, start + n) { buffer[i - start] = id[i - at] }
                }
            }
            slot.pointee.bodyOffset = start + n
        }
        if slot.pointee.bodyOffset == body.bytes.count { flags.pointee |= UInt32(NGHTTP2_DATA_FLAG_EOF.rawValue) }
        return n
    }
}

@inline(__always)
private func withSession<R>(_ userData: UnsafeMutableRawPointer?, _ fallback: R, _ body: (PipelinedClientSession) -> R) -> R {
    withUnretainedSession(userData, fallback, body)
}

private func pipelinedOnHeader(_ s: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?, _ name: UnsafePointer<UInt8>?, _ namelen: Int,
                               _ value: UnsafePointer<UInt8>?, _ valuelen: Int, _ flags: UInt8, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let frame, let name, let value, frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue) else { return 0 }
    withSession(userData, ()) {
        $0.header(streamID: frame.pointee.hd.stream_id, name: UnsafeRawBufferPointer(start: name, count: namelen),
                  value: UnsafeRawBufferPointer(start: value, count: valuelen))
    }
    return 0
}

private func pipelinedOnFrameRecv(_ s: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let frame else { return 0 }
    withSession(userData, ()) { $0.frameReceived(type: frame.pointee.hd.type, flags: frame.pointee.hd.flags, streamID: frame.pointee.hd.stream_id) }
    return 0
}

private func pipelinedOnDataChunkRecv(_ s: OpaquePointer?, _ flags: UInt8, _ streamID: Int32, _ data: UnsafePointer<UInt8>?, _ len: Int,
                                      _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let data else { return 0 }
    withSession(userData, ()) { $0.dataChunk(streamID: streamID, UnsafeRawBufferPointer(start: data, count: len)) }
    return 0
}

private func pipelinedOnStreamClose(_ s: OpaquePointer?, _ streamID: Int32, _ errorCode: UInt32, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    withSession(userData, ()) { $0.streamClosed(streamID: streamID, errorCode: errorCode) }
    return 0
}

private func pipelinedReadBody(_ s: OpaquePointer?, _ streamID: Int32, _ buf: UnsafeMutablePointer<UInt8>?, _ length: Int,
                               _ flags: UnsafeMutablePointer<UInt32>?, _ source: UnsafeMutablePointer<nghttp2_data_source>?,
                               _ userData: UnsafeMutableRawPointer?) -> Int {
    guard let buf, let flags else { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
    return withSession(userData, Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue)) {
        $0.readBody(streamID: streamID, source: source?.pointee.ptr, into: buf, length: length, flags: flags)
    }
}
