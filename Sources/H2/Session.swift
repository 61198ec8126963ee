import NIOCore

/// What the connection handler needs from an nghttp2 session, server or client: bytes in,
/// bytes out, and the state that drives timeouts and closing. Lets one handler (TLS, flush,
/// backpressure, timers) serve both roles.
protocol H2Session: AnyObject {
    func receive(_ bytes: UnsafeRawBufferPointer) throws
    func produceOutput(limit: Int, _ sink: (UnsafeRawBufferPointer) -> Void) throws -> Int
    var wantsRead: Bool { get }
    var wantsWrite: Bool { get }
    var openStreams: Int { get }
    /// True once the peer's first SETTINGS arrived (for a server: the client preface).
    var sawPeerSettings: Bool { get }
    var idleSince: NIODeadline { get }
    var onStreamCountChange: ((Int) -> Void)? { get set }
    func goAway()
    /// Resets streams still incomplete at `deadline`; returns how many.
    func resetStalledStreams(openedBefore deadline: NIODeadline) -> Int
    /// Called when the connection is gone, to fail what is still waiting.
    func connectionClosed()
}
