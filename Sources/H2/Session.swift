internal import CNGHTTP2
internal import CShims
import NIOCore

/// What the connection handler needs from an nghttp2 session, server or client: bytes in,
/// bytes out, and the state that drives timeouts and closing. Lets one handler (TLS, flush,
/// backpressure, timers) serve both roles.
protocol H2Session: AnyObject {
    func receive(_ bytes: UnsafeRawBufferPointer) throws
    func produceOutput(limit: Int, _ sink: (UnsafeRawBufferPointer) -> Void) throws -> Int
    var wantsRead: Bool { get }
    var wantsWrite: Bool { get }
    var openStreams: Int { get }
    /// True once the peer's first SETTINGS arrived (for a server: the client preface).
    var sawPeerSettings: Bool { get }
    var idleSince: NIODeadline { get }
    func goAway()
    /// Resets streams still incomplete at `deadline`; returns how many.
    func resetStalledStreams(openedBefore deadline: NIODeadline) -> Int
    /// Called when the connection is gone, to fail what is still waiting.
    func connectionClosed()
    /// Answers the requests that completed during the bytes just received (server side).
    func dispatchCompleted()
    /// Gives the session its event loop and a way to flush, for responses completed later
    /// (`H2Responder`). Called once when the connection starts.
    func attach(to eventLoop: any EventLoop, flush: @escaping () -> Void)
    /// The transport is up: the TLS handshake finished with ALPN h2 (for h2c: the connection
    /// started). Lets a client time its handshakes. Default: nothing.
    func transportEstablished()
    /// The transport failed before or outside HTTP/2 (TLS handshake, ALPN, a TLS read), with
    /// the reason; the connection is closing. Lets a client say why. Default: nothing.
    func transportFailed(_ reason: String)
}

extension H2Session {
    func attach(to eventLoop: any EventLoop, flush: @escaping () -> Void) {}
    func transportEstablished() {}
    func transportFailed(_ reason: String) {}
}

/// The part of an nghttp2 session both roles share: it owns the nghttp2_session (deleted in
/// `deinit`), and moves bytes in and out of it.
class NGHTTP2Endpoint {
    /// Set once by the subclass's init, right after `super.init()`.
    var session: OpaquePointer!

    enum Failure: Error, CustomStringConvertible {
        case nghttp2(String, Int32)
        var description: String {
            switch self {
            case .nghttp2(let what, let code): return "\(what): \(String(cString: nghttp2_strerror(code)))"
            }
        }
    }

    /// The session's allocator: freed blocks are reused, so steady traffic does not call malloc.
    let memoryPool: OpaquePointer = scenescore_nghttp2_pool_new()

    deinit {
        nghttp2_session_del(session)  // frees through the pool: delete the pool after it
        scenescore_nghttp2_pool_delete(memoryPool)
    }

    /// Feeds received plaintext. Throws when the peer broke the protocol; nghttp2 has then
    /// usually queued a GOAWAY, which the caller should still flush before closing.
    func receive(_ bytes: UnsafeRawBufferPointer) throws {
        guard bytes.count > 0 else { return }
        let n = nghttp2_session_mem_recv(session, bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), bytes.count)
        if n < 0 { throw Failure.nghttp2("receive", Int32(n)) }
    }

    /// Serialises pending frames into `sink`, up to about `limit` bytes. Returns bytes produced.
    /// mem_send's pointer is valid only until the next call, so `sink` must copy.
    func produceOutput(limit: Int, _ sink: (UnsafeRawBufferPointer) -> Void) throws -> Int {
        var total = 0
        while total < limit {
            var data: UnsafePointer<UInt8>?
            let n = nghttp2_session_mem_send(session, &data)
            if n < 0 { throw Failure.nghttp2("send", Int32(n)) }
            if n == 0 { break }
            sink(UnsafeRawBufferPointer(start: data, count: n))
            total += n
        }
        return total
    }

    /// Creates the client side's nghttp2 session with these callbacks (user data: this object)
    /// and queues the client's SETTINGS: no push, our receive window for streams and connection.
    func startClientSession(limits: H2Limits, onHeader: nghttp2_on_header_callback, onFrameRecv: nghttp2_on_frame_recv_callback,
                            onDataChunkRecv: nghttp2_on_data_chunk_recv_callback,
                            onStreamClose: nghttp2_on_stream_close_callback) throws {
        var callbacks: OpaquePointer?
        nghttp2_session_callbacks_new(&callbacks)
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_header_callback(callbacks, onHeader)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, onFrameRecv)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, onDataChunkRecv)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, onStreamClose)
        var s: OpaquePointer?
        let rv = nghttp2_session_client_new3(&s, callbacks, nil, nil, scenescore_nghttp2_pool_mem(memoryPool))
        guard rv == 0, let s else { throw Failure.nghttp2("nghttp2_session_client_new3", rv) }
        session = s
        nghttp2_session_set_user_data(s, Unmanaged.passUnretained(self).toOpaque())
        var settings = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: UInt32(limits.initialWindowSize)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0),
        ]
        _ = nghttp2_submit_settings(s, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
        _ = nghttp2_session_set_local_window_size(s, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0,
                                                  Int32(min(limits.initialWindowSize * 16, Int(Int32.max))))
    }

    var wantsRead: Bool { nghttp2_session_want_read(session) != 0 }
    var wantsWrite: Bool { nghttp2_session_want_write(session) != 0 }

    /// A data provider's read: copies the next part of `body` from `offset`, flags EOF at the end.
    static func copyBody(_ body: [UInt8], offset: inout Int, into buffer: UnsafeMutablePointer<UInt8>, length: Int,
                         flags: UnsafeMutablePointer<UInt32>) -> Int {
        let n = min(length, body.count - offset)
        if n > 0 {
            let start = offset
            body.withUnsafeBytes { src in
                UnsafeMutableRawPointer(buffer).copyMemory(from: src.baseAddress! + start, byteCount: n)
            }
            offset += n
        }
        if offset == body.count { flags.pointee |= UInt32(NGHTTP2_DATA_FLAG_EOF.rawValue) }
        return n
    }
}

/// Calls `body` with the session behind an nghttp2 callback's `userData` (`fallback` when there
/// is none) without retaining it, since callbacks run several times per request: the session
/// owns the nghttp2_session whose callback this is, so it outlives the call.
@inline(__always)
func withUnretainedSession<Session: AnyObject, R>(_ userData: UnsafeMutableRawPointer?, _ fallback: R,
                                                   _ body: (Session) -> R) -> R {
    guard let userData else { return fallback }
    return Unmanaged<Session>.fromOpaque(userData)._withUnsafeGuaranteedRef(body)
}
