import Logging
import NIOCore
import NIOPosix
import Testing
@testable import H2

/// The load tool's client (`H2PipelinedConnection`) against H2Server's echo handler: pooled
/// slots, request ids patched into shared bodies (also across a DATA frame boundary), the
/// server's stream limit, and one-line failures.
@Suite(.serialized) struct PipelinedClientTests {
    /// Sends `total` requests, `maxStreams` at a time, refilling at the end of each read burst;
    /// records every response.
    final class Driver: H2PipelinedDelegate {
        let template: H2RequestTemplate
        let bodies: [H2RequestBody]
        let total: Int
        var connection: H2PipelinedConnection?
        var submitted = 0
        var ids: [Int: UInt64] = [:]  // slot → request id in flight
        var bodyOf: [Int: Int] = [:]  // slot → body index
        var responses: [(id: UInt64, body: Int, status: Int, captured: String?, echoed: [UInt8])] = []
        var maxInFlight = 0
        let readyPromise: EventLoopPromise<Void>
        let donePromise: EventLoopPromise<Void>
        var closedReason: String?? = nil

        init(loop: any EventLoop, template: H2RequestTemplate, bodies: [H2RequestBody], total: Int) {
            self.template = template
            self.bodies = bodies
            self.total = total
            readyPromise = loop.makePromise()
            donePromise = loop.makePromise()
        }

        func refill() {
            guard let connection else { return }
            while submitted < total {
                let id = 0x1000_0000_0000 + UInt64(submitted)
                let b = submitted % bodies.count
                guard let slot = connection.submit(template, body: bodies[b], requestID: id) else { break }
                ids[slot] = id
                bodyOf[slot] = b
                submitted += 1
                maxInFlight = max(maxInFlight, connection.inFlight)
            }
            connection.flush()
        }

        func connected() {}
        func transportEstablished() {}
        func ready() { readyPromise.succeed(()) }  // the read burst's end refills
        func response(slot: Int, status: Int, captured: UnsafeRawBufferPointer?, body: UnsafeRawBufferPointer) {
            responses.append((ids[slot]!, bodyOf[slot]!, status, captured.map { String(decoding: $0, as: UTF8.self) }, Array(body)))
            if responses.count == total { donePromise.succeed(()) }
        }
        func failed(slot: Int, _ failure: H2StreamFailure) { donePromise.fail(H2ClientError.submitFailed("\(failure)")) }
        func readBurstEnded() { refill() }
        func closed(reason: String?) {
            closedReason = .some(reason)
            readyPromise.fail(H2ClientError.submitFailed(reason ?? "closed"))
            donePromise.fail(H2ClientError.connectionClosed)
        }
    }

    static func withEchoServer(maxConcurrentStreams: Int = 100, _ body: (MultiThreadedEventLoopGroup, Int, Int, TLSContext) async throws -> Void) async throws {
        let cert = try TestCertificate.make()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var limits = H2Limits()
        limits.maxConcurrentStreams = maxConcurrentStreams
        let server = H2Server(group: group, handler: EchoHandler(), limits: limits, logger: Logger(label: "test"))
        let tls = try TLSContext(server: TLSServerConfiguration(certificateChainPath: cert.cert, privateKeyPath: cert.key))
        let tlsPort = try await server.bind(host: "127.0.0.1", port: 0, tls: tls)
        let h2cPort = try await server.bind(host: "127.0.0.1", port: 0, tls: nil)
        do {
            try await body(group, tlsPort, h2cPort, try TLSContext(trustedCAPath: cert.cert))
        } catch {
            await server.shutdown(drainTimeout: .seconds(1))
            try await group.shutdownGracefully()
            cert.remove()
            throw error
        }
        await server.shutdown(drainTimeout: .seconds(1))
        try await group.shutdownGracefully()
        cert.remove()
    }

    /// Runs a driver to completion on one loop; returns it (bound to that loop).
    static func drive(group: any EventLoopGroup, port: Int, tls: TLSContext?, maxStreams: Int, bodies: [[UInt8]], idOffset: Int?,
                      total: Int) async throws -> (NIOLoopBound<Driver>, any EventLoop) {
        let loop = group.next()
        let scheme = tls == nil ? "http" : "https"
        let bound = try await loop.submit {
            let template = H2RequestTemplate(method: "POST", path: "/echo", authority: "localhost:\(port)", scheme: scheme,
                                             headers: [("content-type", "application/x-test")])
            let driver = Driver(loop: loop, template: template, bodies: bodies.map { H2RequestBody($0, requestIDOffset: idOffset) },
                                total: total)
            driver.connection = try H2PipelinedConnection(host: "127.0.0.1", port: port, tls: tls, serverName: "localhost",
                                                          eventLoop: loop, maxStreams: maxStreams, captureHeader: "content-type",
                                                          delegate: driver)
            return NIOLoopBound(driver, eventLoop: loop)
        }.get()
        let done = try await loop.submit { bound.value.donePromise.futureResult }.get()
        try await done.get()
        return (bound, loop)
    }

    @Test func requestIDsArePatchedIntoSharedBodies() async throws {
        try await Self.withEchoServer { group, tlsPort, h2cPort, clientTLS in
            // Two bodies: a small one, and one whose id straddles the first DATA frame's end (16 KiB).
            let small = (0..<64).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            let large = (0..<40_000).map { UInt8(truncatingIfNeeded: $0 &* 13) }
            for (port, tls, offset, bodies) in [(tlsPort, Optional(clientTLS), 8, [small, large]), (h2cPort, nil, 16_380, [large])] {
                let (bound, loop) = try await Self.drive(group: group, port: port, tls: tls, maxStreams: 8, bodies: bodies,
                                                         idOffset: offset, total: 300)
                let (responses, maxInFlight) = try await loop.submit {
                    (bound.value.responses.map { ($0.id, $0.body, $0.status, $0.captured, $0.echoed) }, bound.value.maxInFlight)
                }.get()
                #expect(responses.count == 300)
                #expect(maxInFlight == 8)
                #expect(Set(responses.map(\.0)).count == 300)
                for (id, b, status, captured, echoed) in responses {
                    var expected = bodies[b]
                    withUnsafeBytes(of: id.littleEndian) { for i in 0..<8 { expected[offset + i] = $0[i] } }
                    #expect(status == 200 && captured == "application/x-test")
                    #expect(echoed == expected)
                }
                try await loop.submit { bound.value.connection?.close() }.get()
            }
        }
    }

    @Test func capacityFollowsTheServersStreamLimit() async throws {
        try await Self.withEchoServer(maxConcurrentStreams: 3) { group, _, h2cPort, _ in
            let (bound, loop) = try await Self.drive(group: group, port: h2cPort, tls: nil, maxStreams: 16, bodies: [[1, 2, 3]],
                                                     idOffset: nil, total: 50)
            let (maxInFlight, serverMax) = try await loop.submit {
                (bound.value.maxInFlight, bound.value.connection!.serverMaxConcurrentStreams)
            }.get()
            #expect(serverMax == 3)
            #expect(maxInFlight == 3)
            try await loop.submit { bound.value.connection?.close() }.get()
        }
    }

    @Test func refusedConnectionAndTLSFailureAreReported() async throws {
        try await Self.withEchoServer { group, _, h2cPort, clientTLS in
            // A port nothing listens on: bind one, then close it.
            let probe = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
            let deadPort = probe.localAddress!.port!
            try await probe.close()
            for (port, tls, expected) in [(deadPort, Optional<TLSContext>.none, "connection refused"),
                                          (h2cPort, Optional(clientTLS), "wrong version number")] {
                let loop = group.next()
                let bound = try await loop.submit {
                    let template = H2RequestTemplate(method: "GET", path: "/hello", authority: "localhost", scheme: "https")
                    let driver = Driver(loop: loop, template: template, bodies: [], total: 0)
                    driver.connection = try H2PipelinedConnection(host: "127.0.0.1", port: port, tls: tls, serverName: "localhost",
                                                                  eventLoop: loop, maxStreams: 1, delegate: driver)
                    return NIOLoopBound(driver, eventLoop: loop)
                }.get()
                let ready = try await loop.submit { bound.value.readyPromise.futureResult }.get()
                await #expect(throws: H2ClientError.self) { try await ready.get() }
                let reason = try await loop.submit { bound.value.closedReason ?? nil }.get()
                #expect(reason?.contains(expected) == true, "\(reason ?? "nil")")
            }
        }
    }
}
