import Dispatch
import NIOCore
import NIOPosix
import Testing
@testable import H2

/// The socketless server connection the fuzzer drives, against the project's own nghttp2
/// client session: requests answered at once, answered later from another thread, and a
/// protocol error.
@Suite(.serialized) struct InMemoryServerConnectionTests {
    static let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    /// Moves bytes both ways until neither side has anything to send.
    static func exchange(_ client: ClientSession, _ server: InMemoryServerConnection) throws {
        while true {
            var out: [UInt8] = []
            _ = try client.produceOutput(limit: 1 << 20) { out.append(contentsOf: $0) }
            if !out.isEmpty { try server.receive(out) }
            let back = try server.takeOutput()
            if !back.isEmpty { try back.withUnsafeBytes { try client.receive($0) } }
            if out.isEmpty && back.isEmpty { return }
        }
    }

    final class Results: @unchecked Sendable {
        // Written by the client session's completions, on the test's thread.
        var byPath: [String: H2ClientResponse] = [:]
    }

    static func submit(_ client: ClientSession, _ method: String, _ path: String, body: [UInt8] = [], into results: Results) {
        client.submit(method: method, path: path, authority: "localhost", scheme: "http", headers: [], body: body) { result in
            if case .success(let response) = result { results.byPath[path] = response }
        }
    }

    @Test func answersRequestsInOneConversation() throws {
        let server = try InMemoryServerConnection(handler: EchoHandler(), eventLoop: Self.group.next())
        let client = try ClientSession(limits: H2Limits())
        let results = Results()
        Self.submit(client, "GET", "/hello", into: results)
        Self.submit(client, "POST", "/echo", body: Array("ping".utf8), into: results)
        Self.submit(client, "GET", "/missing", into: results)
        try Self.exchange(client, server)
        #expect(results.byPath["/hello"]?.status == 200)
        #expect(results.byPath["/hello"]?.body == Array("hello".utf8))
        #expect(results.byPath["/echo"]?.body == Array("ping".utf8))
        #expect(results.byPath["/missing"]?.status == 404)
        #expect(try server.openStreams == 0)
        #expect(try server.protocolFailure == nil)
    }

    /// Answers every request later, from another thread.
    struct LaterHandler: H2RequestHandler {
        func precheck(_ head: H2RequestHead) -> H2Response? { nil }
        func respond(to head: H2RequestHead, body: UnsafeRawBufferPointer) -> H2Response { H2Response(status: 500) }
        func bodyTooLarge(_ head: H2RequestHead, limit: Int) -> H2Response { H2Response(status: 413) }
        func answersLater(_ head: H2RequestHead) -> Bool { true }
        func respond(to head: H2RequestHead, body: [UInt8], responder: H2Responder) {
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(50)) {
                responder.complete(H2Response(status: 202, body: Array("later".utf8)))
            }
        }
    }

    @Test func deferredResponsesArriveAfterWaiting() throws {
        let server = try InMemoryServerConnection(handler: LaterHandler(), eventLoop: Self.group.next())
        let client = try ClientSession(limits: H2Limits())
        let results = Results()
        Self.submit(client, "GET", "/slow", into: results)
        try Self.exchange(client, server)
        #expect(results.byPath["/slow"] == nil)  // still with the application
        #expect(try server.waitForDeferredResponses(timeout: .seconds(5)))
        try Self.exchange(client, server)
        #expect(results.byPath["/slow"]?.status == 202)
        #expect(results.byPath["/slow"]?.body == Array("later".utf8))
    }

    @Test func aProtocolErrorClosesTheConnectionWithGoAway() throws {
        let server = try InMemoryServerConnection(handler: EchoHandler(), eventLoop: Self.group.next())
        _ = try server.takeOutput()  // the server's SETTINGS
        let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
        // A DATA frame on stream 0 is a connection error (RFC 9113 §6.1).
        let accepted = try server.receive(preface + [0, 0, 0, 4, 0, 0, 0, 0, 0] + [0, 0, 1, 0, 0, 0, 0, 0, 0, 0x41])
        // nghttp2 reports this one by ending the session (GOAWAY queued, nothing more to read)
        // rather than by failing the read: either way the connection is over.
        #expect(!accepted)
        #expect(try server.isClosed)
        let types = Self.frameTypes(try server.takeOutput())
        #expect(types.last == 7, "frames sent: \(types)")  // GOAWAY
        #expect(try server.receive(preface) == false)  // closed: nothing more is read
    }

    /// The type of each frame in a server's output.
    static func frameTypes(_ bytes: [UInt8]) -> [UInt8] {
        var types: [UInt8] = []
        var offset = 0
        while offset + 9 <= bytes.count {
            types.append(bytes[offset + 3])
            offset += 9 + (Int(bytes[offset]) << 16 | Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2]))
        }
        return types
    }
}
