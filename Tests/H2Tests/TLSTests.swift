import Testing
@testable import H2

/// Whole TLS handshakes in memory: the two ends exchange ciphertext through arrays, no sockets.
@Suite struct TLSTests {
    /// Moves ciphertext both ways until neither side has anything to say.
    func interact(_ client: TLSConnection, _ server: TLSConnection) {
        for _ in 0..<20 {
            _ = client.handshake()
            _ = server.handshake()
            var moved = false
            for (from, to) in [(client, server), (server, client)] where from.pendingCiphertext > 0 {
                var buffer = ByteBufferAllocatorShim.make()
                from.drainCiphertext(into: &buffer)
                buffer.withUnsafeReadableBytes { to.receive($0) }
                moved = true
            }
            if !moved && client.handshakeDone && server.handshakeDone { return }
        }
    }

    @Test func handshakeNegotiatesH2AndCarriesPlaintextBothWays() throws {
        let cert = try TestCertificate.make()
        defer { cert.remove() }
        let serverContext = try TLSContext(server: TLSServerConfiguration(certificateChainPath: cert.cert, privateKeyPath: cert.key))
        let clientContext = try TLSContext(trustedCAPath: cert.cert)
        let server = try TLSConnection(context: serverContext, server: true)
        let client = try TLSConnection(context: clientContext, server: false, serverName: "localhost")
        interact(client, server)
        #expect(client.handshakeDone && server.handshakeDone)
        #expect(server.negotiatedProtocol == "h2")
        #expect(client.negotiatedProtocol == "h2")

        let message = Array((0..<40_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })  // > one TLS record
        try message.withUnsafeBytes { try client.writePlaintext($0) }
        interact(client, server)
        var received: [UInt8] = []
        let result = server.readPlaintext { received.append(contentsOf: $0); return true }
        guard case .ok = result else { Issue.record("read failed: \(result)"); return }
        #expect(received == message)
    }

    @Test func untrustedServerCertificateFailsTheHandshake() throws {
        let cert = try TestCertificate.make(), other = try TestCertificate.make()
        defer { cert.remove(); other.remove() }
        let server = try TLSConnection(context: TLSContext(server: TLSServerConfiguration(certificateChainPath: cert.cert, privateKeyPath: cert.key)), server: true)
        let client = try TLSConnection(context: TLSContext(trustedCAPath: other.cert), server: false, serverName: "localhost")
        interact(client, server)
        guard case .failed = client.handshake() else { Issue.record("client accepted an untrusted certificate"); return }
    }

    /// Handshakes a client expecting `expected` with a server presenting `served`, both from `ca`.
    func handshake(ca: TestCA, served: (cert: String, key: String), expected: String) throws -> TLSConnection.HandshakeState {
        let server = try TLSConnection(context: TLSContext(server: TLSServerConfiguration(certificateChainPath: served.cert, privateKeyPath: served.key)), server: true)
        let client = try TLSConnection(context: TLSContext(trustedCAPath: ca.cert), server: false, serverName: expected)
        interact(client, server)
        return client.handshake()
    }

    @Test func certificateForTheExpectedNameIsAccepted() throws {
        let ca = try TestCA.make()
        defer { ca.remove() }
        let leaf = try ca.issue("localhost", subjectAltName: "DNS:localhost,IP:127.0.0.1,IP:::1")
        for name in ["localhost", "127.0.0.1", "[::1]"] {
            guard case .done = try handshake(ca: ca, served: leaf, expected: name) else {
                Issue.record("a certificate for localhost/127.0.0.1/::1 was refused for \(name)"); continue
            }
        }
    }

    @Test func validCertificateForAnotherNameIsRefused() throws {
        let ca = try TestCA.make()
        defer { ca.remove() }
        let other = try ca.issue("other.example", subjectAltName: "DNS:other.example,IP:127.0.0.2")
        for name in ["localhost", "127.0.0.1", "evil.other.example"] {
            let state = try handshake(ca: ca, served: other, expected: name)
            guard case .failed(let error) = state else {
                Issue.record("a trusted certificate for other.example was accepted as \(name)"); continue
            }
            #expect(error.description.contains("mismatch"), "\(error)")
        }
        // The same certificate is fine for the name it carries: the refusal above is the name check.
        guard case .done = try handshake(ca: ca, served: other, expected: "other.example") else {
            Issue.record("other.example's own certificate was refused"); return
        }
    }

    @Test func clientConnectionWithoutAServerNameIsRefused() throws {
        let cert = try TestCertificate.make()
        defer { cert.remove() }
        #expect(throws: TLSError.self) { _ = try TLSConnection(context: TLSContext(trustedCAPath: cert.cert), server: false) }
    }

    @Test func mismatchedKeyIsRefusedAtConfiguration() throws {
        let a = try TestCertificate.make(), b = try TestCertificate.make()
        defer { a.remove(); b.remove() }
        #expect(throws: TLSError.self) {
            _ = try TLSContext(server: TLSServerConfiguration(certificateChainPath: a.cert, privateKeyPath: b.key))
        }
        #expect(throws: TLSError.self) {
            _ = try TLSContext(server: TLSServerConfiguration(certificateChainPath: a.directory + "/missing.pem", privateKeyPath: a.key))
        }
    }
}

import NIOCore
enum ByteBufferAllocatorShim {
    static func make() -> ByteBuffer { ByteBufferAllocator().buffer(capacity: 0) }
}
