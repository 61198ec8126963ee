/// What the application sees of a request once its headers are complete.
public struct H2RequestHead: Sendable {
    public var method: String = ""
    public var path: String = ""
    public var authority: String = ""
    public var contentType: String?
    /// The content-length header, when the client sent one.
    public var contentLength: Int?
    public var streamID: Int32 = 0

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
    /// Called with the complete body (valid only during the call).
    func respond(to head: H2RequestHead, body: UnsafeRawBufferPointer) -> H2Response
    /// The response for a body that exceeded `H2Limits.maxBodyBytes` while streaming in.
    func bodyTooLarge(_ head: H2RequestHead, limit: Int) -> H2Response
    /// Every request that completed during one read of the socket, in arrival order, answered
    /// in the same order. Bodies are valid for the whole call, so an application can batch work
    /// across requests. The default answers each with `respond(to:body:)`.
    func respond(toBatch requests: [H2CompletedRequest]) -> [H2Response]
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
}
