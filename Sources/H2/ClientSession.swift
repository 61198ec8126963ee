internal import CNGHTTP2
import NIOCore

/// A response as the client received it.
public struct H2ClientResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public func header(_ name: String) -> String? { headers.first { $0.name == name }?.value }
}

/// Why a client request did not complete.
public enum H2ClientError: Error, CustomStringConvertible, Sendable {
    case streamReset(code: UInt32)
    case connectionClosed
    case submitFailed(String)

    public var description: String {
        switch self {
        case .streamReset(let code): return "stream reset by peer (\(String(cString: nghttp2_http2_strerror(code))))"
        case .connectionClosed: return "connection closed before the response completed"
        case .submitFailed(let why): return "request not submitted: \(why)"
        }
    }
}

/// One nghttp2 client session: the mirror of `ServerSession`, for the load tool and tests.
/// Same ownership rule: it owns the nghttp2_session, which reaches it through unretained
/// user data. Event-loop confined.
final class ClientSession: NGHTTP2Endpoint, H2Session {
    final class PendingStream {
        var status = 0
        var headers: [(name: String, value: String)] = []
        var body: [UInt8] = []
        var request: [UInt8]
        var requestOffset = 0
        var complete = false
        let openedAt = NIODeadline.now()
        let completion: (Result<H2ClientResponse, H2ClientError>) -> Void

        init(request: [UInt8], completion: @escaping (Result<H2ClientResponse, H2ClientError>) -> Void) {
            self.request = request
            self.completion = completion
        }
    }

    private var streams: [Int32: PendingStream] = [:]
    private(set) var sawPeerSettings = false
    private(set) var idleSince = NIODeadline.now()
    private var closed = false
    private var headerBlock = HeaderBlock()
    let streamTimeout: TimeAmount

    init(limits: H2Limits) throws {
        streamTimeout = limits.streamTimeout
        super.init()
        try startClientSession(limits: limits, onHeader: clientOnHeader, onFrameRecv: clientOnFrameRecv,
                               onDataChunkRecv: clientOnDataChunkRecv, onStreamClose: clientOnStreamClose)
    }

    var openStreams: Int { streams.count }
    /// Streams the server lets us open at once (its SETTINGS_MAX_CONCURRENT_STREAMS).
    var remoteMaxConcurrentStreams: Int {
        Int(nghttp2_session_get_remote_settings(session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS))
    }

    func goAway() {
        _ = nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, UInt32(NGHTTP2_NO_ERROR.rawValue), nil, 0)
    }

    func resetStalledStreams(openedBefore deadline: NIODeadline) -> Int {
        var count = 0
        for (id, stream) in streams where !stream.complete && stream.openedAt < deadline {
            _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), id, UInt32(NGHTTP2_CANCEL.rawValue))
            stream.complete = true
            count += 1
        }
        return count
    }

    func dispatchCompleted() {}

    func connectionClosed() {
        closed = true
        let pending = streams
        streams.removeAll()
        for (_, s) in pending { s.completion(.failure(.connectionClosed)) }
    }

    /// Queues a request; `completion` runs on the event loop when it ends.
    func submit(method: String, path: String, authority: String, scheme: String,
                headers: [(name: String, value: String)], body: [UInt8],
                completion: @escaping (Result<H2ClientResponse, H2ClientError>) -> Void) {
        headerBlock.reset()
        headerBlock.add(":method", method)
        headerBlock.add(":path", path)
        headerBlock.add(":scheme", scheme)
        headerBlock.add(":authority", authority)
        for h in headers { headerBlock.add(h.name.lowercased(), h.value) }
        if !body.isEmpty { headerBlock.add("content-length", decimal: body.count) }
        guard !closed else {
            completion(.failure(.connectionClosed))
            return
        }
        let stream = PendingStream(request: body, completion: completion)
        let session = self.session
        let id = headerBlock.withNameValues { nva, count -> Int32 in
            if body.isEmpty { return nghttp2_submit_request(session, nil, nva, count, nil, nil) }
            var provider = nghttp2_data_provider(source: nghttp2_data_source(fd: 0), read_callback: clientReadRequest)
            return nghttp2_submit_request(session, nil, nva, count, &provider, nil)
        }
        guard id > 0 else {
            completion(.failure(.submitFailed(String(cString: nghttp2_strerror(id)))))
            return
        }
        streams[id] = stream
    }

    // MARK: - Callback bodies

    fileprivate func header(streamID: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        guard let stream = streams[streamID] else { return }
        let n = String(decoding: name, as: UTF8.self), v = String(decoding: value, as: UTF8.self)
        if n == ":status" { stream.status = Int(v) ?? 0 } else { stream.headers.append((n, v)) }
    }

    fileprivate func frameReceived(type: UInt8, flags: UInt8, streamID: Int32) {
        if type == UInt8(NGHTTP2_SETTINGS.rawValue) { sawPeerSettings = true }
        if flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0, let stream = streams[streamID] { stream.complete = true }
    }

    fileprivate func dataChunk(streamID: Int32, _ data: UnsafeRawBufferPointer) {
        streams[streamID]?.body.append(contentsOf: data)
    }

    fileprivate func streamClosed(streamID: Int32, errorCode: UInt32) {
        guard let stream = streams.removeValue(forKey: streamID) else { return }
        if streams.isEmpty { idleSince = .now() }
        // A complete response counts even if a reset followed it (a server may answer early
        // and reset the rest of our upload with NO_ERROR, RFC 9113 §8.1).
        if stream.complete && stream.status > 0 {
            stream.completion(.success(H2ClientResponse(status: stream.status, headers: stream.headers, body: stream.body)))
        } else {
            stream.completion(.failure(.streamReset(code: errorCode)))
        }
    }

    fileprivate func readRequest(streamID: Int32, into buffer: UnsafeMutablePointer<UInt8>, length: Int,
                                 flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let stream = streams[streamID] else { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
        return Self.copyBody(stream.request, offset: &stream.requestOffset, into: buffer, length: length, flags: flags)
    }
}

@inline(__always)
private func clientFrom(_ userData: UnsafeMutableRawPointer?) -> ClientSession? {
    userData.map { Unmanaged<ClientSession>.fromOpaque($0).takeUnretainedValue() }
}

private func clientOnHeader(_ s: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?, _ name: UnsafePointer<UInt8>?, _ namelen: Int,
                            _ value: UnsafePointer<UInt8>?, _ valuelen: Int, _ flags: UInt8, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let frame, let session = clientFrom(userData), let name, let value,
          frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue) else { return 0 }
    session.header(streamID: frame.pointee.hd.stream_id, name: UnsafeRawBufferPointer(start: name, count: namelen),
                   value: UnsafeRawBufferPointer(start: value, count: valuelen))
    return 0
}

private func clientOnFrameRecv(_ s: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let frame, let session = clientFrom(userData) else { return 0 }
    session.frameReceived(type: frame.pointee.hd.type, flags: frame.pointee.hd.flags, streamID: frame.pointee.hd.stream_id)
    return 0
}

private func clientOnDataChunkRecv(_ s: OpaquePointer?, _ flags: UInt8, _ streamID: Int32, _ data: UnsafePointer<UInt8>?, _ len: Int,
                                   _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let session = clientFrom(userData), let data else { return 0 }
    session.dataChunk(streamID: streamID, UnsafeRawBufferPointer(start: data, count: len))
    return 0
}

private func clientOnStreamClose(_ s: OpaquePointer?, _ streamID: Int32, _ errorCode: UInt32, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    clientFrom(userData)?.streamClosed(streamID: streamID, errorCode: errorCode)
    return 0
}

private func clientReadRequest(_ s: OpaquePointer?, _ streamID: Int32, _ buf: UnsafeMutablePointer<UInt8>?, _ length: Int,
                               _ flags: UnsafeMutablePointer<UInt32>?, _ source: UnsafeMutablePointer<nghttp2_data_source>?,
                               _ userData: UnsafeMutableRawPointer?) -> Int {
    guard let session = clientFrom(userData), let buf, let flags else { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
    return session.readRequest(streamID: streamID, into: buf, length: length, flags: flags)
}
