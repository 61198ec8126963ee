internal import CNGHTTP2
internal import CShims
import NIOCore

/// One nghttp2 server session: bytes in (`receive`), bytes out (`produceOutput`); requests
/// that complete during a read burst are handed to the `H2RequestHandler` together
/// (`dispatchCompleted`), early answers (`precheck`) go out at once.
///
/// nghttp2 calls back into Swift through the C functions at the bottom of this file; each finds
/// this object with `Unmanaged.fromOpaque(user_data)`, unretained: this object owns the
/// nghttp2_session (`NGHTTP2Endpoint` deletes it in `deinit`), so the pointer is valid for every
/// callback.
/// Everything runs on the connection's event loop; nothing here is thread-safe.
final class ServerSession: NGHTTP2Endpoint, H2Session {
    /// Per-stream state, pooled: a stream's body buffer keeps its capacity for the next stream.
    final class Stream {
        var head = H2RequestHead()
        var headerBytes = 0
        var headerFields = 0
        /// The request body, in storage this stream owns: its address stays put until the
        /// stream is answered, so a batch of requests can be scored from views of their bodies.
        private var bodyStorage = UnsafeMutableRawBufferPointer.allocate(byteCount: 256, alignment: 16)
        private(set) var bodyCount = 0
        var openedAt = NIODeadline.now()
        var requestComplete = false
        /// Queued for `dispatchCompleted`; such a stream is not pooled even if it closes first.
        var queued = false
        var responded = false
        var response: [UInt8] = []
        var responseOffset = 0

        var body: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: bodyStorage[0..<bodyCount]) }

        deinit { bodyStorage.deallocate() }

        func appendBody(_ data: UnsafeRawBufferPointer) {
            if bodyCount + data.count > bodyStorage.count {
                let grown = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bodyCount + data.count, bodyStorage.count * 2), alignment: 16)
                if bodyCount > 0 { grown.baseAddress!.copyMemory(from: bodyStorage.baseAddress!, byteCount: bodyCount) }
                bodyStorage.deallocate()
                bodyStorage = grown
            }
            if data.count > 0 { (bodyStorage.baseAddress! + bodyCount).copyMemory(from: data.baseAddress!, byteCount: data.count) }
            bodyCount += data.count
        }

        func reset(id: Int32, now: NIODeadline) {
            head = H2RequestHead()
            head.streamID = id
            headerBytes = 0
            headerFields = 0
            if bodyStorage.count > 1 << 20 {  // don't let one huge upload pin memory in the pool
                bodyStorage.deallocate()
                bodyStorage = UnsafeMutableRawBufferPointer.allocate(byteCount: 256, alignment: 16)
            }
            bodyCount = 0
            openedAt = now
            requestComplete = false
            queued = false
            responded = false
            response = []
            responseOffset = 0
        }
    }

    private let handler: any H2RequestHandler
    let limits: H2Limits
    private var streams: [Int32: Stream] = [:]
    private var pool: [Stream] = []
    /// Requests completed during the current read, answered together by `dispatchCompleted`.
    private var completed: [Stream] = []
    private var headerBlock = HeaderBlock()
    /// A connection repeats the same method, path, authority and content type on stream after
    /// stream: reuse the last String when the bytes match, instead of allocating and validating.
    private var methodCache = LastValue(), pathCache = LastValue(), authorityCache = LastValue(), contentTypeCache = LastValue()
    /// True once the client's preface and first SETTINGS arrived.
    private(set) var sawPeerSettings = false
    /// When the last stream closed (or the session began): drives the idle timeout.
    private(set) var idleSince = NIODeadline.now()
    /// Deferred requests (`answersLater`) whose responder has not completed yet.
    private(set) var deferredInFlight = 0
    /// The connection's loop and flush, for deferred responses (`attach`).
    private var eventLoop: (any EventLoop)?
    private var flush: (() -> Void)?

    init(handler: any H2RequestHandler, limits: H2Limits) throws {
        self.handler = handler
        self.limits = limits
        super.init()
        var callbacks: OpaquePointer?
        nghttp2_session_callbacks_new(&callbacks)
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, onBeginHeaders)
        nghttp2_session_callbacks_set_on_header_callback(callbacks, onHeader)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, onFrameRecv)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, onDataChunkRecv)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, onStreamClose)

        var option: OpaquePointer?
        nghttp2_option_new(&option)
        defer { nghttp2_option_del(option) }
        nghttp2_option_set_stream_reset_rate_limit(option, UInt64(limits.streamResetBurst), UInt64(limits.streamResetRate))
        nghttp2_option_set_max_continuations(option, limits.maxContinuations)
        nghttp2_option_set_max_settings(option, 32)
        nghttp2_option_set_max_outbound_ack(option, 1000)

        var s: OpaquePointer?
        let rv = nghttp2_session_server_new3(&s, callbacks, nil, option, scenescore_nghttp2_pool_mem(memoryPool))
        guard rv == 0, let s else { throw Failure.nghttp2("nghttp2_session_server_new3", rv) }
        session = s
        nghttp2_session_set_user_data(s, Unmanaged.passUnretained(self).toOpaque())

        var settings = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: UInt32(limits.maxConcurrentStreams)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue), value: UInt32(limits.maxHeaderListBytes)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: UInt32(limits.initialWindowSize)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0),
        ]
        let srv = nghttp2_submit_settings(s, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
        guard srv == 0 else { throw Failure.nghttp2("nghttp2_submit_settings", srv) }
        // Let the connection window cover many streams' bodies at once.
        _ = nghttp2_session_set_local_window_size(s, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, Int32(min(limits.initialWindowSize * 16, Int(Int32.max))))
    }

    var openStreams: Int { streams.count }

    /// Graceful GOAWAY: no new streams; open ones finish.
    func goAway() {
        _ = nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue),
                                  nghttp2_session_get_last_proc_stream_id(session), UInt32(NGHTTP2_NO_ERROR.rawValue), nil, 0)
    }

    /// Immediate GOAWAY with an error code; the connection closes once it is flushed.
    func terminate(_ code: nghttp2_error_code) {
        _ = nghttp2_session_terminate_session(session, code.rawValue)
    }

    /// Resets every stream whose request has not fully arrived by `deadline`. Returns how many.
    func resetStalledStreams(openedBefore deadline: NIODeadline) -> Int {
        var count = 0
        for (id, stream) in streams where !stream.requestComplete && stream.openedAt < deadline {
            _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), id, UInt32(NGHTTP2_CANCEL.rawValue))
            stream.requestComplete = true  // reset once
            count += 1
        }
        return count
    }

    func connectionClosed() { flush = nil }

    func attach(to eventLoop: any EventLoop, flush: @escaping () -> Void) {
        self.eventLoop = eventLoop
        self.flush = flush
    }

    func dispatchCompleted() {
        guard !completed.isEmpty else { return }
        // One request per read (a client with one request in flight): answered without the
        // batch's arrays, so such a request allocates nothing here.
        if completed.count == 1, let stream = completed.first, streams[stream.head.streamID] === stream, !stream.responded,
           eventLoop == nil || !handler.answersLater(stream.head) {
            completed.removeAll(keepingCapacity: true)
            stream.queued = false
            _ = submit(handler.respond(to: stream.head, body: stream.body), on: stream)
            return
        }
        // Streams reset by the peer in the same read are gone from `streams`: skip them.
        var live = completed.filter { streams[$0.head.streamID] === $0 && !$0.responded }
        completed.removeAll(keepingCapacity: true)
        for stream in live { stream.queued = false }
        if let eventLoop, live.contains(where: { handler.answersLater($0.head) }) {
            live.removeAll { stream in
                guard handler.answersLater(stream.head) else { return false }
                startDeferred(stream, on: eventLoop)
                return true
            }
        }
        guard !live.isEmpty else { return }
        let responses = handler.respond(toBatch: live.map { H2CompletedRequest(head: $0.head, body: $0.body) })
        for (stream, response) in zip(live, responses) { _ = submit(response, on: stream) }
    }

    /// Hands a request to the application to answer later; its response is submitted on this
    /// loop when it comes, if the stream is still the same one and still open.
    private func startDeferred(_ stream: Stream, on eventLoop: any EventLoop) {
        stream.queued = true  // not pooled while the application may still answer it
        deferredInFlight += 1
        let id = stream.head.streamID
        let bound = NIOLoopBound((session: self, stream: stream), eventLoop: eventLoop)
        let responder = H2Responder { response in
            eventLoop.execute {
                let (session, stream) = bound.value
                session.deferredInFlight -= 1
                stream.queued = false
                guard session.streams[id] === stream, !stream.responded else { return }
                _ = session.submit(response, on: stream)
                session.flush?()
            }
        }
        handler.respond(to: stream.head, body: Array(stream.body), responder: responder)
    }

    // MARK: - Callback bodies (called from the C trampolines below)

    fileprivate func beginHeaders(streamID: Int32) {
        let stream = pool.popLast() ?? Stream()
        stream.reset(id: streamID, now: .now())
        streams[streamID] = stream
    }

    fileprivate func header(streamID: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> Int32 {
        guard let stream = streams[streamID] else { return 0 }
        stream.headerBytes += name.count + value.count + 32
        stream.headerFields += 1
        if stream.headerBytes > limits.maxHeaderListBytes || stream.headerFields > limits.maxHeaderFields {
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue  // nghttp2 resets the stream
        }
        guard let first = name.first else { return 0 }
        if first == UInt8(ascii: ":") {
            if equals(name, ":method") { stream.head.method = methodCache.string(value) }
            else if equals(name, ":path") { stream.head.path = pathCache.string(value) }
            else if equals(name, ":authority") { stream.head.authority = authorityCache.string(value) }
        } else if first == UInt8(ascii: "c") {
            if equals(name, "content-type") { stream.head.contentType = contentTypeCache.string(value) }
            else if equals(name, "content-length") { stream.head.contentLength = parseDecimal(value) }
        } else if first == UInt8(ascii: "a") {
            if equals(name, "authorization") { stream.head.authorization = String(decoding: value, as: UTF8.self) }
        } else if first == UInt8(ascii: "i") {
            if equals(name, "if-match") { stream.head.ifMatch = String(decoding: value, as: UTF8.self) }
        } else if first == UInt8(ascii: "x"), name.count > 2, name[1] == UInt8(ascii: "-") {
            stream.head.extensionHeaders.append((String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self)))
        }
        return 0
    }

    fileprivate func frameReceived(type: UInt8, flags: UInt8, streamID: Int32) -> Int32 {
        if type == UInt8(NGHTTP2_SETTINGS.rawValue) { sawPeerSettings = true }
        guard type == UInt8(NGHTTP2_HEADERS.rawValue) || type == UInt8(NGHTTP2_DATA.rawValue),
              let stream = streams[streamID] else { return 0 }  // may arrive after close
        if type == UInt8(NGHTTP2_HEADERS.rawValue), !stream.responded {
            if let early = handler.precheck(tagging: &stream.head) {
                stream.requestComplete = true
                return submit(early, on: stream)
            }
        }
        if flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0, !stream.responded, !stream.queued {
            stream.requestComplete = true
            stream.queued = true
            completed.append(stream)
        }
        return 0
    }

    fileprivate func dataChunk(streamID: Int32, _ data: UnsafeRawBufferPointer) -> Int32 {
        guard let stream = streams[streamID], !stream.responded else { return 0 }
        if stream.bodyCount + data.count > limits.maxBodyBytes {
            stream.requestComplete = true
            return submit(handler.bodyTooLarge(stream.head, limit: limits.maxBodyBytes), on: stream)
        }
        stream.appendBody(data)
        return 0
    }

    fileprivate func streamClosed(streamID: Int32) {
        guard let stream = streams.removeValue(forKey: streamID) else { return }
        let sent = stream.response
        stream.response = []
        if sent.capacity > 0 { handler.recycle(responseBody: sent) }
        if pool.count < 64 && !stream.queued { pool.append(stream) }
        if streams.isEmpty { idleSince = .now() }
    }

    /// Reads the stream's response body for nghttp2's DATA frames.
    fileprivate func readResponse(streamID: Int32, into buffer: UnsafeMutablePointer<UInt8>, length: Int,
                                  flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let stream = streams[streamID] else { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
        return Self.copyBody(stream.response, offset: &stream.responseOffset, into: buffer, length: length, flags: flags)
    }

    private func submit(_ response: H2Response, on stream: ServerSession.Stream) -> Int32 {
        stream.responded = true
        stream.response = response.body
        stream.responseOffset = 0
        headerBlock.reset()
        headerBlock.add(":status", decimal: response.status)
        for h in response.headers { headerBlock.add(h.name, h.value) }
        if response.status != 204, response.status != 304 { headerBlock.add("content-length", decimal: response.body.count) }
        let session = self.session
        let streamID = stream.head.streamID
        return headerBlock.withNameValues { nva, count in
            if response.body.isEmpty {
                return nghttp2_submit_response(session, streamID, nva, count, nil)
            }
            var provider = nghttp2_data_provider(source: nghttp2_data_source(fd: 0), read_callback: readResponseCallback)
            return nghttp2_submit_response(session, streamID, nva, count, &provider)
        }
    }
}

/// The last header value seen for one field, as bytes and as the String made from them.
struct LastValue {
    private var bytes: [UInt8] = []
    private var cached = ""

    mutating func string(_ value: UnsafeRawBufferPointer) -> String {
        if value.count == bytes.count, bytes.withUnsafeBytes({ value.count == 0 || memcmp($0.baseAddress!, value.baseAddress!, value.count) == 0 }) {
            return cached
        }
        guard value.count <= 256 else { return String(decoding: value, as: UTF8.self) }  // don't cache the unusual
        bytes = Array(value)
        cached = String(decoding: value, as: UTF8.self)
        return cached
    }
}

/// Header fields laid out in one reusable byte buffer, handed to nghttp2 as an nghttp2_nv
/// array (which nghttp2 copies during submit). Reused per session: no allocation per response
/// once the buffers have grown.
struct HeaderBlock {
    private var bytes: [UInt8] = []
    private var spans: [(name: Range<Int>, value: Range<Int>)] = []

    mutating func reset() {
        bytes.removeAll(keepingCapacity: true)
        spans.removeAll(keepingCapacity: true)
    }

    mutating func add(_ name: String, _ value: String) {
        let n = append(name)
        spans.append((n, append(value)))
    }

    mutating func add(_ name: String, decimal: Int) {
        let n = append(name)
        let start = bytes.count
        var v = decimal, digits = 0
        repeat { bytes.append(UInt8(truncatingIfNeeded: 0x30 + v % 10)); v /= 10; digits += 1 } while v > 0
        // Reversed in place through the buffer: reversing the slice `bytes[a..<b]` copies it.
        bytes.withUnsafeMutableBufferPointer { all in
            var digitsView = UnsafeMutableBufferPointer(rebasing: all[start..<(start + digits)])
            digitsView.reverse()
        }
        spans.append((n, start..<bytes.count))
    }

    private mutating func append(_ s: String) -> Range<Int> {
        let start = bytes.count
        bytes.append(contentsOf: s.utf8)
        return start..<bytes.count
    }

    mutating func withNameValues<R>(_ body: (UnsafePointer<nghttp2_nv>, Int) -> R) -> R {
        let spans = self.spans
        return bytes.withUnsafeMutableBufferPointer { raw in
            withUnsafeTemporaryAllocation(of: nghttp2_nv.self, capacity: max(spans.count, 1)) { nva in
                for (i, span) in spans.enumerated() {
                    nva[i] = nghttp2_nv(name: raw.baseAddress! + span.name.lowerBound, value: raw.baseAddress! + span.value.lowerBound,
                                        namelen: span.name.count, valuelen: span.value.count,
                                        flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
                }
                return body(UnsafePointer(nva.baseAddress!), spans.count)
            }
        }
    }
}

@inline(__always)
private func equals(_ bytes: UnsafeRawBufferPointer, _ literal: StaticString) -> Bool {
    guard bytes.count == literal.utf8CodeUnitCount else { return false }
    return memcmp(bytes.baseAddress!, literal.utf8Start, bytes.count) == 0
}

/// A content-length value; more digits than an Int holds saturate to Int.max (still "too
/// large", never a wrapped small number). Nil for anything that is not all digits.
private func parseDecimal(_ bytes: UnsafeRawBufferPointer) -> Int? {
    guard !bytes.isEmpty else { return nil }
    var v = 0
    for b in bytes {
        guard b >= 0x30 && b <= 0x39 else { return nil }
        let (times10, o1) = v.multipliedReportingOverflow(by: 10)
        let (next, o2) = times10.addingReportingOverflow(Int(b - 0x30))
        v = (o1 || o2) ? Int.max : next
    }
    return v
}

// MARK: - C trampolines: check pointers, find the session, hand off.

@inline(__always)
private func withSession<R>(_ userData: UnsafeMutableRawPointer?, _ fallback: R, _ body: (ServerSession) -> R) -> R {
    withUnretainedSession(userData, fallback, body)
}

private func onBeginHeaders(_ s: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let frame, frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue),
          frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST else { return 0 }
    withSession(userData, ()) { $0.beginHeaders(streamID: frame.pointee.hd.stream_id) }
    return 0
}

private func onHeader(_ s: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?, _ name: UnsafePointer<UInt8>?, _ namelen: Int,
                      _ value: UnsafePointer<UInt8>?, _ valuelen: Int, _ flags: UInt8, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let frame, let name, let value, frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue) else { return 0 }
    return withSession(userData, 0) {
        $0.header(streamID: frame.pointee.hd.stream_id, name: UnsafeRawBufferPointer(start: name, count: namelen),
                  value: UnsafeRawBufferPointer(start: value, count: valuelen))
    }
}

private func onFrameRecv(_ s: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let frame else { return 0 }
    return withSession(userData, 0) {
        $0.frameReceived(type: frame.pointee.hd.type, flags: frame.pointee.hd.flags, streamID: frame.pointee.hd.stream_id)
    }
}

private func onDataChunkRecv(_ s: OpaquePointer?, _ flags: UInt8, _ streamID: Int32, _ data: UnsafePointer<UInt8>?, _ len: Int,
                             _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let data else { return 0 }
    return withSession(userData, 0) { $0.dataChunk(streamID: streamID, UnsafeRawBufferPointer(start: data, count: len)) }
}

private func onStreamClose(_ s: OpaquePointer?, _ streamID: Int32, _ errorCode: UInt32, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    withSession(userData, ()) { $0.streamClosed(streamID: streamID) }
    return 0
}

private func readResponseCallback(_ s: OpaquePointer?, _ streamID: Int32, _ buf: UnsafeMutablePointer<UInt8>?, _ length: Int,
                                  _ flags: UnsafeMutablePointer<UInt32>?, _ source: UnsafeMutablePointer<nghttp2_data_source>?,
                                  _ userData: UnsafeMutableRawPointer?) -> Int {
    guard let buf, let flags else { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
    return withSession(userData, Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue)) {
        $0.readResponse(streamID: streamID, into: buf, length: length, flags: flags)
    }
}

#if canImport(Glibc)
import Glibc
#endif
