internal import CNGHTTP2

// Just enough HTTP/2 framing (RFC 9113 §4.1) for the server target to see, on each side, what
// happened to every stream: the client's frames (which requests it completed or reset) and the
// server's (status, body, resets, GOAWAY). Server header blocks are decoded with nghttp2's own
// HPACK inflater, the one part not worth writing again.

enum FrameType {
    static let data: UInt8 = 0, headers: UInt8 = 1, rstStream: UInt8 = 3, goAway: UInt8 = 7, continuation: UInt8 = 9
}

enum FrameFlag {
    static let endStream: UInt8 = 0x1, endHeaders: UInt8 = 0x4, padded: UInt8 = 0x8, priority: UInt8 = 0x20
}

struct Frame {
    var type: UInt8
    var flags: UInt8
    var streamID: Int32
    var payload: ArraySlice<UInt8>
    /// Where the frame ends in the byte stream.
    var end: Int
}

/// The client connection preface (RFC 9113 §3.4).
let clientPreface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

/// The complete frames of `bytes` from `start`, in order; stops at the first incomplete one.
func frames(_ bytes: [UInt8], from start: Int) -> [Frame] {
    var out: [Frame] = []
    var i = start
    while i + 9 <= bytes.count {
        let length = Int(bytes[i]) << 16 | Int(bytes[i + 1]) << 8 | Int(bytes[i + 2])
        guard i + 9 + length <= bytes.count else { break }
        let id = Int32(bitPattern: UInt32(bytes[i + 5]) << 24 | UInt32(bytes[i + 6]) << 16 | UInt32(bytes[i + 7]) << 8 | UInt32(bytes[i + 8])) & 0x7FFF_FFFF
        out.append(Frame(type: bytes[i + 3], flags: bytes[i + 4], streamID: id, payload: bytes[(i + 9)..<(i + 9 + length)], end: i + 9 + length))
        i += 9 + length
    }
    return out
}

/// What the client did, from its frames: the streams whose request it completed (END_STREAM
/// on a stream it opened, once its header block is complete) and those it reset. Frames on
/// streams it never opened, or already ended, complete nothing: a peer ignores or refuses them.
struct ClientView {
    var completed: Set<Int32> = []
    var reset: Set<Int32> = []
    /// Frame boundaries, for feeding the input one frame per read.
    var boundaries: [Int] = []

    init(_ input: [UInt8]) {
        guard input.starts(with: clientPreface) else { return }
        boundaries.append(clientPreface.count)
        var open: Set<Int32> = []     // opened by the client, not yet ended by it
        var highest: Int32 = 0        // a new stream's id must exceed every earlier one
        var endAfterHeaders: Int32?   // END_STREAM seen on a header block still continuing
        func end(_ id: Int32) {
            if open.remove(id) != nil { completed.insert(id) }
        }
        for frame in frames(input, from: clientPreface.count) {
            boundaries.append(frame.end)
            let id = frame.streamID
            switch frame.type {
            case FrameType.headers:
                if id > highest, id % 2 == 1 {
                    highest = id
                    open.insert(id)
                }
                let ends = frame.flags & FrameFlag.endStream != 0
                if frame.flags & FrameFlag.endHeaders != 0 {
                    if ends { end(id) }
                } else {
                    endAfterHeaders = ends ? id : nil
                }
            case FrameType.continuation:
                if frame.flags & FrameFlag.endHeaders != 0, let pending = endAfterHeaders, pending == id {
                    end(id)
                    endAfterHeaders = nil
                }
            case FrameType.data:
                if frame.flags & FrameFlag.endStream != 0 { end(id) }
            case FrameType.rstStream:
                reset.insert(id)
                open.remove(id)
            default:
                break
            }
        }
    }
}

/// What the server sent, from its frames.
struct ServerView {
    struct Response {
        var status: Int?
        var body: [UInt8] = []
        var ended = false
    }
    var responses: [Int32: Response] = [:]
    var reset: Set<Int32> = []
    /// The error code of a GOAWAY the server sent with one (not NO_ERROR).
    var goAwayError: UInt32?
    /// Why the frames could not be read, if they could not.
    var unreadable: String?

    init(_ output: [UInt8]) {
        let inflater = HeaderInflater()
        var block: [UInt8] = []
        var blockStream: Int32 = 0
        var blockEnds = false
        let all = frames(output, from: 0)
        if all.last?.end ?? 0 != output.count { unreadable = "output ends inside a frame" }
        for frame in all {
            switch frame.type {
            case FrameType.headers, FrameType.continuation:
                var payload = frame.payload
                if frame.type == FrameType.headers {
                    if frame.flags & FrameFlag.padded != 0, let pad = payload.first {
                        payload = payload.dropFirst().dropLast(Int(pad))
                    }
                    if frame.flags & FrameFlag.priority != 0 { payload = payload.dropFirst(5) }
                    block = []
                    blockStream = frame.streamID
                    blockEnds = frame.flags & FrameFlag.endStream != 0
                }
                block += payload
                guard frame.flags & FrameFlag.endHeaders != 0 else { continue }
                guard let fields = inflater.inflate(block) else { unreadable = "undecodable header block"; return }
                var response = responses[blockStream] ?? Response()
                if let status = fields.first(where: { $0.name == ":status" }) { response.status = Int(status.value) }
                if blockEnds { response.ended = true }
                responses[blockStream] = response
            case FrameType.data:
                responses[frame.streamID, default: Response()].body += frame.payload
                if frame.flags & FrameFlag.endStream != 0 { responses[frame.streamID]?.ended = true }
            case FrameType.rstStream:
                reset.insert(frame.streamID)
            case FrameType.goAway where frame.payload.count >= 8:
                let p = Array(frame.payload)
                let code = UInt32(p[4]) << 24 | UInt32(p[5]) << 16 | UInt32(p[6]) << 8 | UInt32(p[7])
                if code != 0 { goAwayError = code }
            default:
                break
            }
        }
    }
}

/// nghttp2's HPACK decoder, one per connection direction (the dynamic table spans blocks).
final class HeaderInflater {
    private var inflater: OpaquePointer?

    init() {
        nghttp2_hd_inflate_new(&inflater)
    }

    deinit { nghttp2_hd_inflate_del(inflater) }

    /// The fields of one complete header block, or nil when it does not decode.
    func inflate(_ block: [UInt8]) -> [(name: String, value: String)]? {
        var fields: [(name: String, value: String)] = []
        let ok = block.withUnsafeBufferPointer { buffer -> Bool in
            var offset = 0
            while true {
                var nv = nghttp2_nv()
                var flags: Int32 = 0
                let n = nghttp2_hd_inflate_hd2(inflater, &nv, &flags, buffer.baseAddress.map { $0 + offset }, buffer.count - offset, 1)
                if n < 0 { return false }
                offset += n
                if flags & Int32(NGHTTP2_HD_INFLATE_EMIT.rawValue) != 0 {
                    fields.append((String(decoding: UnsafeBufferPointer(start: nv.name, count: nv.namelen), as: UTF8.self),
                                   String(decoding: UnsafeBufferPointer(start: nv.value, count: nv.valuelen), as: UTF8.self)))
                }
                if flags & Int32(NGHTTP2_HD_INFLATE_FINAL.rawValue) != 0 {
                    nghttp2_hd_inflate_end_headers(inflater)
                    return true
                }
                if n == 0 && offset >= buffer.count { return false }
            }
        }
        return ok ? fields : nil
    }
}
