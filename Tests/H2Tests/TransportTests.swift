import Logging
import NIOCore
import NIOPosix
import Testing
@testable import H2

/// The real transport on loopback sockets: H2Server with the echo handler, H2Client over TLS
/// and over h2c.
@Suite(.serialized) struct TransportTests {
    struct Fixture {
        let group: MultiThreadedEventLoopGroup
        let server: H2Server
        let tlsPort: Int
        let h2cPort: Int
        let cert: TestCertificate
        let clientTLS: TLSContext

        static func start(limits: H2Limits = H2Limits()) async throws -> Fixture {
            let cert = try TestCertificate.make()
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
            let server = H2Server(group: group, handler: EchoHandler(), limits: limits, logger: Logger(label: "test"))
            let tls = try TLSContext(server: TLSServerConfiguration(certificateChainPath: cert.cert, privateKeyPath: cert.key))
            let tlsPort = try await server.bind(host: "127.0.0.1", port: 0, tls: tls)
            let h2cPort = try await server.bind(host: "127.0.0.1", port: 0, tls: nil)
            return Fixture(group: group, server: server, tlsPort: tlsPort, h2cPort: h2cPort, cert: cert,
                           clientTLS: try TLSContext(trustedCAPath: cert.cert))
        }

        func stop() async throws {
            await server.shutdown(drainTimeout: .seconds(2))
            try await group.shutdownGracefully()
            cert.remove()
        }
    }

    @Test func requestsOverTLSAndH2C() async throws {
        let f = try await Fixture.start()
        for (port, tls) in [(f.tlsPort, Optional(f.clientTLS)), (f.h2cPort, nil)] {
            let client = try await H2Client.connect(host: "127.0.0.1", port: port, tls: tls, serverName: "localhost", group: f.group)
            let hello = try await client.request(method: "GET", path: "/hello")
            #expect(hello.status == 200)
            #expect(hello.body == Array("hello".utf8))
            #expect(hello.header("x-method") == "GET")
            #expect(hello.header("content-length") == "5")
            let missing = try await client.request(method: "GET", path: "/nope")
            #expect(missing.status == 404)
            await client.close()
        }
        try await f.stop()
    }

    @Test func concurrentStreamsAndLargeBodiesOnOneConnection() async throws {
        let f = try await Fixture.start()
        let client = try await H2Client.connect(host: "127.0.0.1", port: f.tlsPort, tls: f.clientTLS, serverName: "localhost", group: f.group)
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for i in 0..<200 {
                group.addTask {
                    // Sizes cross frame (16 KiB) and window boundaries, up to 3 MiB.
                    let size = i % 10 == 0 ? (i * 15_731) % (3 << 20) : i * 37
                    let body = (0..<size).map { UInt8(truncatingIfNeeded: $0 ^ i) }
                    let r = try await client.request(method: "POST", path: "/echo", headers: [("content-type", "x/\(i)")], body: body)
                    return r.status == 200 && r.body == body && r.header("content-type") == "x/\(i)"
                }
            }
            var ok = 0
            for try await good in group where good { ok += 1 }
            #expect(ok == 200)
        }
        await client.close()
        try await f.stop()
    }

    @Test func limitsResetTheOffendingStreamOnly() async throws {
        var limits = H2Limits()
        limits.maxBodyBytes = 64 * 1024
        limits.maxHeaderListBytes = 2048
        let f = try await Fixture.start(limits: limits)
        let client = try await H2Client.connect(host: "127.0.0.1", port: f.h2cPort, tls: nil, group: f.group)
        // Declared too large at header time: answered before the body is read.
        let early = try await client.request(method: "POST", path: "/small", body: [UInt8](repeating: 1, count: 4096))
        #expect(early.status == 413)
        // Too large while streaming: 413 from the transport's limit.
        let streamed = try await client.request(method: "POST", path: "/echo", body: [UInt8](repeating: 2, count: 200_000))
        #expect(streamed.status == 413)
        // A header list over the limit: the stream is reset, the connection lives on.
        await #expect(throws: H2ClientError.self) {
            _ = try await client.request(method: "GET", path: "/hello", headers: [("x-big", String(repeating: "a", count: 4000))])
        }
        let after = try await client.request(method: "GET", path: "/hello")
        #expect(after.status == 200)
        await client.close()
        try await f.stop()
    }

    @Test func gracefulShutdownClosesIdleConnections() async throws {
        let f = try await Fixture.start()
        let client = try await H2Client.connect(host: "127.0.0.1", port: f.h2cPort, tls: nil, group: f.group)
        #expect(try await client.request(method: "GET", path: "/hello").status == 200)
        #expect(f.server.openConnections == 1)
        await f.server.shutdown(drainTimeout: .seconds(5))
        #expect(f.server.openConnections == 0)
        await #expect(throws: (any Error).self) { _ = try await client.request(method: "GET", path: "/hello") }
        try await f.group.shutdownGracefully()
        f.cert.remove()
    }

    @Test func badPrefaceIsAProtocolError() throws {
        let session = try ServerSession(handler: EchoHandler(), limits: H2Limits())
        let junk = Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        #expect(throws: (any Error).self) { try junk.withUnsafeBytes { try session.receive($0) } }
    }
}
