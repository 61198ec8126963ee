internal import CNGHTTP2
internal import COpenSSL
internal import CShims
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// An OpenSSL failure, drained from the error queue at the C boundary.
public struct TLSError: Error, CustomStringConvertible, Sendable {
    public let description: String

    init(_ what: String) {
        var reasons: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var buf = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buf, buf.count)
            reasons.append(String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        description = reasons.isEmpty ? what : "\(what): \(reasons.joined(separator: "; "))"
    }
}

/// TLS settings for a server.
public struct TLSServerConfiguration: Sendable {
    public var certificateChainPath: String
    public var privateKeyPath: String
    /// When set, clients must present a certificate that chains to these CAs.
    public var clientCAPath: String?

    public init(certificateChainPath: String, privateKeyPath: String, clientCAPath: String? = nil) {
        self.certificateChainPath = certificateChainPath
        self.privateKeyPath = privateKeyPath
        self.clientCAPath = clientCAPath
    }
}

/// One SSL_CTX, configured for HTTP/2 per RFC 9113 §9.2: TLS ≥ 1.2, AEAD ciphers with
/// ephemeral key exchange only, no compression, no renegotiation, ALPN "h2". Shared by all
/// connections; OpenSSL's SSL_CTX is thread-safe once configured.
public final class TLSContext: @unchecked Sendable {
    /// Gives OpenSSL an allocator that reuses small freed blocks per thread: OpenSSL 3.0
    /// mallocs small structures for every TLS record, three to four per scored request. Must
    /// run before OpenSSL's first allocation (first thing in `main`); false when that has
    /// passed, and OpenSSL then keeps malloc.
    @discardableResult
    public static func useThreadCachingAllocator() -> Bool { scenescore_openssl_use_thread_cache() == 1 }

    let ctx: OpaquePointer

    /// RFC 9113 Appendix A bans every TLS 1.2 suite that is not ephemeral + AEAD.
    static let tls12Ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

    public init(server config: TLSServerConfiguration) throws {
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_server_method()) else { throw TLSError("SSL_CTX_new failed") }
        self.ctx = ctx
        guard scenescore_SSL_CTX_set_min_proto_version(ctx, scenescore_TLS1_2_VERSION()) == 1 else { throw TLSError("cannot set TLS 1.2 minimum") }
        _ = scenescore_SSL_CTX_set_rfc9113_options(ctx)
        _ = scenescore_SSL_CTX_set_mode(ctx, scenescore_SSL_MODE_partial_write())
        guard SSL_CTX_set_cipher_list(ctx, Self.tls12Ciphers) == 1 else { throw TLSError("cannot set TLS 1.2 ciphers") }
        guard SSL_CTX_use_certificate_chain_file(ctx, config.certificateChainPath) == 1 else {
            throw TLSError("cannot load certificate chain \(config.certificateChainPath)")
        }
        guard SSL_CTX_use_PrivateKey_file(ctx, config.privateKeyPath, SSL_FILETYPE_PEM) == 1 else {
            throw TLSError("cannot load private key \(config.privateKeyPath)")
        }
        guard SSL_CTX_check_private_key(ctx) == 1 else { throw TLSError("private key does not match the certificate") }
        if let ca = config.clientCAPath {
            guard SSL_CTX_load_verify_locations(ctx, ca, nil) == 1 else { throw TLSError("cannot load client CA \(ca)") }
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
        }
        SSL_CTX_set_alpn_select_cb(ctx, alpnSelectH2, nil)
    }

    /// A client context offering ALPN h2 and verifying the server against `caPath` (or not at all).
    /// With `certificatePath`/`keyPath`, presents that client certificate (mutual TLS).
    public init(trustedCAPath: String?, verify: Bool = true, certificatePath: String? = nil, keyPath: String? = nil) throws {
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_client_method()) else { throw TLSError("SSL_CTX_new failed") }
        self.ctx = ctx
        _ = scenescore_SSL_CTX_set_min_proto_version(ctx, scenescore_TLS1_2_VERSION())
        _ = scenescore_SSL_CTX_set_rfc9113_options(ctx)
        guard SSL_CTX_set_cipher_list(ctx, Self.tls12Ciphers) == 1 else { throw TLSError("cannot set TLS 1.2 ciphers") }
        if verify {
            if let trustedCAPath {
                guard SSL_CTX_load_verify_locations(ctx, trustedCAPath, nil) == 1 else { throw TLSError("cannot load CA \(trustedCAPath)") }
            } else {
                SSL_CTX_set_default_verify_paths(ctx)
            }
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        }
        if let certificatePath {
            guard SSL_CTX_use_certificate_chain_file(ctx, certificatePath) == 1 else { throw TLSError("cannot load client certificate \(certificatePath)") }
            guard SSL_CTX_use_PrivateKey_file(ctx, keyPath ?? certificatePath, SSL_FILETYPE_PEM) == 1 else {
                throw TLSError("cannot load client key \(keyPath ?? certificatePath)")
            }
        }
        let alpn: [UInt8] = [2, 0x68, 0x32]  // "h2"
        guard SSL_CTX_set_alpn_protos(ctx, alpn, UInt32(alpn.count)) == 0 else { throw TLSError("cannot set ALPN") }
    }

    deinit { SSL_CTX_free(ctx) }
}

/// ALPN: pick "h2" from the client's list; without it, decline ALPN (NOACK) — the connection
/// is then closed after the handshake, with a log line, since nothing else is served.
private func alpnSelectH2(_ ssl: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafePointer<UInt8>?>?,
                          _ outlen: UnsafeMutablePointer<UInt8>?, _ input: UnsafePointer<UInt8>?,
                          _ inlen: UInt32, _ arg: UnsafeMutableRawPointer?) -> Int32 {
    guard let out, let outlen, let input else { return SSL_TLSEXT_ERR_NOACK }
    var selected: UnsafeMutablePointer<UInt8>?
    var selectedLength: UInt8 = 0
    let rv = nghttp2_select_next_protocol(&selected, &selectedLength, input, inlen)
    guard rv == 1, let selected else { return SSL_TLSEXT_ERR_NOACK }
    out.pointee = UnsafePointer(selected)
    outlen.pointee = selectedLength
    return SSL_TLSEXT_ERR_OK
}

/// One TLS connection over memory BIOs: the transport feeds ciphertext in and takes ciphertext
/// out; OpenSSL never touches a socket. Owns its SSL (and, through it, both BIOs).
final class TLSConnection {
    enum HandshakeState { case inProgress, done, failed(TLSError) }
    enum ReadResult { case ok, closed, failed(TLSError) }

    private let ssl: OpaquePointer
    private let readBIO: OpaquePointer
    private let writeBIO: OpaquePointer
    private(set) var handshakeDone = false
    let isClient: Bool
    /// One TLS record's worth of plaintext, reused for every read.
    private let scratch: UnsafeMutableRawBufferPointer

    /// A client connection names the server it expects (`serverName`): it is sent as SNI (for a
    /// DNS name) and, when the context verifies peers, the certificate must match it (a DNS name
    /// or an IP address in subjectAltName); a valid certificate for another name fails the handshake.
    init(context: TLSContext, server: Bool, serverName: String? = nil) throws {
        ERR_clear_error()
        guard let ssl = SSL_new(context.ctx) else { throw TLSError("SSL_new failed") }
        // Everything that can fail happens before the stored properties are set: a throw after
        // that would run deinit, which frees the SSL too.
        if !server {
            do {
                guard let serverName, !serverName.isEmpty else {
                    throw TLSError("a client connection needs the server's name: its certificate is checked against it")
                }
                try Self.expectPeer(named: serverName, on: ssl)
            } catch {
                SSL_free(ssl)
                throw error
            }
        }
        guard let r = BIO_new(BIO_s_mem()) else {
            SSL_free(ssl)
            throw TLSError("BIO_new failed")
        }
        guard let w = BIO_new(BIO_s_mem()) else {
            BIO_free(r)  // not yet owned by the SSL
            SSL_free(ssl)
            throw TLSError("BIO_new failed")
        }
        // An empty read BIO means "want more", not EOF.
        _ = scenescore_BIO_set_mem_eof_return(r, -1)
        _ = scenescore_BIO_set_mem_eof_return(w, -1)
        SSL_set_bio(ssl, r, w)  // the SSL owns both BIOs from here
        self.ssl = ssl
        self.readBIO = r
        self.writeBIO = w
        self.isClient = !server
        self.scratch = .allocate(byteCount: 16 * 1024, alignment: 16)
        if server {
            SSL_set_accept_state(ssl)
        } else {
            SSL_set_connect_state(ssl)
        }
    }

    /// SNI and the certificate name check for a client. An IP literal is matched against the
    /// certificate's IP addresses and not sent as SNI (RFC 6066 allows only host names there).
    private static func expectPeer(named name: String, on ssl: OpaquePointer) throws {
        let bare = name.hasPrefix("[") && name.hasSuffix("]") ? String(name.dropFirst().dropLast()) : name
        if isIPAddress(bare) {
            guard X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), bare) == 1 else {
                throw TLSError("cannot expect IP address \(bare) in the server certificate")
            }
        } else {
            guard scenescore_SSL_set_tlsext_host_name(ssl, bare) == 1 else { throw TLSError("cannot send server name \(bare) (SNI)") }
            // No partial wildcards (e.g. "b*z.example.com"): only whole left-most labels match.
            SSL_set_hostflags(ssl, UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS))
            guard SSL_set1_host(ssl, bare) == 1 else { throw TLSError("cannot expect host name \(bare) in the server certificate") }
        }
    }

    private static func isIPAddress(_ s: String) -> Bool {
        var v4 = in_addr(), v6 = in6_addr()
        return inet_pton(AF_INET, s, &v4) == 1 || inet_pton(AF_INET6, s, &v6) == 1
    }

    deinit {
        SSL_free(ssl)
        scratch.deallocate()
    }

    /// Ciphertext from the network.
    func receive(_ bytes: UnsafeRawBufferPointer) {
        var offset = 0
        while offset < bytes.count {
            let n = BIO_write(readBIO, bytes.baseAddress! + offset, Int32(min(bytes.count - offset, Int(Int32.max))))
            if n <= 0 { break }
            offset += Int(n)
        }
    }

    /// Advances the handshake as far as the received bytes allow.
    func handshake() -> HandshakeState {
        if handshakeDone { return .done }
        ERR_clear_error()
        let rc = SSL_do_handshake(ssl)
        if rc == 1 {
            handshakeDone = true
            return .done
        }
        switch SSL_get_error(ssl, rc) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return .inProgress
        default:
            // Say why the peer's certificate was refused (untrusted, expired, another host's name).
            let verify = SSL_get_verify_result(ssl)
            if verify != X509_V_OK, let reason = X509_verify_cert_error_string(verify) {
                return .failed(TLSError("TLS handshake failed: peer certificate refused (\(String(cString: reason)))"))
            }
            return .failed(TLSError("TLS handshake failed"))
        }
    }

    /// The ALPN protocol agreed on, if any.
    var negotiatedProtocol: String? {
        var data: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &data, &length)
        guard let data, length > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }

    /// Decrypts everything available, handing each plaintext chunk to `sink` (valid only
    /// during the call). `sink` returns false to stop early (its connection is failing).
    func readPlaintext(_ sink: (UnsafeRawBufferPointer) -> Bool) -> ReadResult {
        while true {
            ERR_clear_error()
            let n = SSL_read(ssl, scratch.baseAddress!, Int32(scratch.count))
            if n > 0 {
                if !sink(UnsafeRawBufferPointer(rebasing: scratch[0..<Int(n)])) { return .ok }
                continue
            }
            switch SSL_get_error(ssl, n) {
            case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return .ok
            case SSL_ERROR_ZERO_RETURN: return .closed
            default: return .failed(TLSError("TLS read failed"))
            }
        }
    }

    /// Encrypts `bytes` (all of them: the write BIO is memory and never full).
    func writePlaintext(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            ERR_clear_error()
            let n = SSL_write(ssl, bytes.baseAddress! + offset, Int32(min(bytes.count - offset, 1 << 20)))
            if n > 0 {
                offset += Int(n)
                continue
            }
            // The write BIO is memory and never full, and callers write only after the
            // handshake: any other outcome (including WANT_READ, a renegotiation we forbid)
            // is a failure, never a retry.
            throw TLSError("TLS write failed (SSL error \(SSL_get_error(ssl, n)))")
        }
    }

    /// Starts a TLS close_notify.
    func shutdown() {
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
    }

    /// Bytes of ciphertext waiting for the network.
    var pendingCiphertext: Int { Int(BIO_ctrl_pending(writeBIO)) }

    /// Moves all pending ciphertext into `out`.
    func drainCiphertext(into out: inout ByteBuffer) {
        while true {
            let pending = pendingCiphertext
            if pending == 0 { return }
            let n = out.writeWithUnsafeMutableBytes(minimumWritableBytes: pending) { raw in
                Int(max(0, BIO_read(writeBIO, raw.baseAddress!, Int32(min(raw.count, Int(Int32.max))))))
            }
            if n == 0 { return }
        }
    }

    /// The verified client certificate's subject, when one was presented.
    var peerSubject: String? {
        guard let cert = SSL_get1_peer_certificate(ssl) else { return nil }
        defer { X509_free(cert) }
        guard let name = X509_get_subject_name(cert), let line = X509_NAME_oneline(name, nil, 0) else { return nil }
        defer { CRYPTO_free(line, #fileID, #line) }
        return String(cString: line)
    }
}
