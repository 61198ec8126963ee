import NIOCore

/// Per-connection protocol limits, with safe defaults. Each guards against one abuse pattern.
public struct H2Limits: Sendable {
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    public var maxConcurrentStreams = 100
    /// Decoded header bytes per request (name + value + 32 per field, RFC 9113 §6.5.2), across
    /// HEADERS and CONTINUATION. Enforced in on_header, since nghttp2 only advertises it; this is
    /// also what stops an HPACK bomb, whose cost is in the decoded size.
    public var maxHeaderListBytes = 16 * 1024
    /// Header fields per request (20,000 one-byte fields stay under any byte limit).
    public var maxHeaderFields = 128
    /// Request body bytes; beyond it, 413 and the stream is reset.
    public var maxBodyBytes = 8 * 1024 * 1024
    /// TLS handshake plus the HTTP/2 client preface and first SETTINGS must finish in this time.
    public var handshakeTimeout: TimeAmount = .seconds(10)
    /// A connection with no open stream for this long gets GOAWAY and is closed.
    public var idleTimeout: TimeAmount = .seconds(60)
    /// A request whose headers and body have not all arrived in this time is reset.
    public var streamTimeout: TimeAmount = .seconds(10)
    /// nghttp2's rapid-reset limit (CVE-2023-44487): a token bucket of stream resets.
    public var streamResetBurst = 1000
    public var streamResetRate = 33
    /// CONTINUATION frames allowed per header block (CVE-2024-27316 class floods).
    public var maxContinuations = 8
    /// Per-stream receive window we advertise: bodies up to this size flow without waiting
    /// for WINDOW_UPDATE, and a slow reader can never make us hold more per stream.
    public var initialWindowSize = 1 << 20
    /// Plaintext produced per flush before the connection yields to others on its event loop.
    public var outputChunkBytes = 256 * 1024
    /// Open connections per listener set (one `H2Server`), and per client IP address: above
    /// either cap a new connection is closed as soon as it is accepted, before any TLS work, so
    /// idle connections cannot pile up memory until their idle timeout. Counted in
    /// `scenescore_connections_rejected_total{reason}`.
    public var maxConnections = 1024
    public var maxConnectionsPerAddress = 256

    public init() {}
}
