import NIOConcurrencyHelpers

/// What the application sees of a request once its headers are complete.
public struct H2RequestHead: Sendable {
    public var method: String = ""
    public var path: String = ""
    public var authority: String = ""
    public var contentType: String?
    /// The content-length header, when the client sent one.
    public var contentLength: Int?
    public var authorization: String?
    public var ifMatch: String?
    /// `x-…` headers, in order (none on the scoring path's usual requests).
    public var extensionHeaders: [(name: String, value: String)] = []
    public var streamID: Int32 = 0
    /// What the application's `precheck(tagging:)` learned about the request (e.g. its parsed
    /// route), handed back with the head to `respond`; 0 when it noted nothing.
    public var tag: UInt16 = 0

    public init() {}
}

/// A complete response: status, extra headers, body.
public struct H2Response: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

/// The application behind the transport. Called on the connection's event loop; answers
/// synchronously (scoring is CPU work on that loop's core, so there is nothing to wait for).
public protocol H2RequestHandler: Sendable {
    /// Called when a request's headers are complete. Return a response to answer at once,
    /// without reading the body (unknown path, wrong method or type, declared body too large);
    /// nil to read the body.
    func precheck(_ head: H2RequestHead) -> H2Response?
    /// `precheck`, free to note in `head.tag` what it worked out (route, content type) so that
    /// answering the request does not work it out again. The transport calls this one; the
    /// default is `precheck`.
    func precheck(tagging head: inout H2RequestHead) -> H2Response?
    /// Called with the complete body (valid only during the call).
    func respond(to head: H2RequestHead, body: UnsafeRawBufferPointer) -> H2Response
    /// The response for a body that exceeded `H2Limits.maxBodyBytes` while streaming in.
    func bodyTooLarge(_ head: H2RequestHead, limit: Int) -> H2Response
    /// Every request that completed during one read of the socket, in arrival order, answered
    /// in the same order. Bodies are valid for the whole call, so an application can batch work
    /// across requests. The default answers each with `respond(to:body:)`.
    func respond(toBatch requests: [H2CompletedRequest]) -> [H2Response]
    /// True for a request that is answered later, through an `H2Responder`, because its work
    /// must not run on the event loop (e.g. loading an uploaded model). Default: false.
    func answersLater(_ head: H2RequestHead) -> Bool
    /// Starts a deferred request (`answersLater` was true); `body` is the request body's own copy.
    /// The stream stays open until `responder.complete` is called, from any thread.
    func respond(to head: H2RequestHead, body: [UInt8], responder: H2Responder)
    /// A response body the transport has finished sending, handed back (on the connection's
    /// event loop) so the application can encode a later response into its storage instead of
    /// allocating. Default: dropped.
    func recycle(responseBody: [UInt8])
}

/// Completes one deferred response. `complete` may be called from any thread, once; the response
/// is sent on the connection's event loop (dropped if the client reset the stream meanwhile).
public final class H2Responder: Sendable {
    private let deliver: @Sendable (H2Response) -> Void
    private let completed = NIOLockedValueBox(false)

    public init(_ deliver: @escaping @Sendable (H2Response) -> Void) { self.deliver = deliver }

    public func complete(_ response: H2Response) {
        let first = completed.withLockedValue { done in
            defer { done = true }
            return !done
        }
        if first { deliver(response) }
    }
}

/// A complete request handed to `H2RequestHandler.respond(toBatch:)`.
public struct H2CompletedRequest {
    public let head: H2RequestHead
    /// Valid only during the `respond(toBatch:)` call.
    public let body: UnsafeRawBufferPointer

    public init(head: H2RequestHead, body: UnsafeRawBufferPointer) {
        self.head = head
        self.body = body
    }
}

extension H2RequestHandler {
    public func respond(toBatch requests: [H2CompletedRequest]) -> [H2Response] {
        requests.map { respond(to: $0.head, body: $0.body) }
    }

    public func answersLater(_ head: H2RequestHead) -> Bool { false }

    public func precheck(tagging head: inout H2RequestHead) -> H2Response? { precheck(head) }

    public func recycle(responseBody: [UInt8]) {}

    public func respond(to head: H2RequestHead, body: [UInt8], responder: H2Responder) {
        responder.complete(body.withUnsafeBytes { respond(to: head, body: $0) })
    }
}
