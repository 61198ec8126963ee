import H2
import NIOCore
import NIOPosix
import Scenes

/// Cross-connection batching (`--max-queue-delay-us`, default 0 = off): scoring requests that
/// arrive on one event loop, from any of its connections, wait up to the delay and are then
/// scored together, so the backbone's GEMMs are shared even when each connection sends one
/// request at a time. Each loop thread has its own queue; nothing crosses threads.
final class BatchQueue: Sendable {
    private let delay: TimeAmount
    private let scorer: Scorer
    private let isReady: @Sendable () -> Bool
    /// Per loop thread, like the scoring workspaces.
    nonisolated(unsafe) private let queues = ThreadSpecificVariable<Pending>()

    private final class Pending {
        var requests: [(head: H2RequestHead, body: [UInt8], responder: H2Responder)] = []
    }

    init(delay: TimeAmount, scorer: Scorer, isReady: @escaping @Sendable () -> Bool) {
        self.delay = delay
        self.scorer = scorer
        self.isReady = isReady
    }

    private var pending: Pending {
        if let p = queues.currentValue { return p }
        let p = Pending()
        queues.currentValue = p
        return p
    }

    /// Queues one request (called on its connection's event loop). The first request of a
    /// batch arms the timer; a queue of `maxBatchCandidates` requests is scored at once.
    func enqueue(_ head: H2RequestHead, body: [UInt8], responder: H2Responder) {
        guard let loop = MultiThreadedEventLoopGroup.currentEventLoop else {
            return responder.complete(body.withUnsafeBytes { scoreNow([(head, $0)]) }[0])
        }
        let queue = pending
        queue.requests.append((head, body, responder))
        if queue.requests.count == 1 {
            loop.scheduleTask(in: delay) { [self] in flush() }
        } else if queue.requests.count >= Scorer.maxBatchCandidates {
            flush()
        }
    }

    /// Scores what this loop has queued.
    private func flush() {
        let queue = pending
        guard !queue.requests.isEmpty else { return }
        let requests = queue.requests
        queue.requests.removeAll(keepingCapacity: true)
        withBodies(requests.map(\.body)) { bodies in
            let responses = scoreNow(zip(requests, bodies).map { ($0.head, $1) })
            for (request, response) in zip(requests, responses) { request.responder.complete(response) }
        }
    }

    private func scoreNow(_ requests: [(head: H2RequestHead, body: UnsafeRawBufferPointer)]) -> [H2Response] {
        var responses = [H2Response?](repeating: nil, count: requests.count)
        scorer.score(requests.enumerated().map { ($0, $1.head, $1.body) }, bodies: requests.map(\.body), ready: isReady(),
                     into: &responses)
        return responses.map { $0! }
    }

    /// Views of every body, valid together for the duration of `body`.
    private func withBodies<R>(_ arrays: [[UInt8]], _ body: ([UnsafeRawBufferPointer]) -> R) -> R {
        func nest(_ i: Int, _ views: inout [UnsafeRawBufferPointer]) -> R {
            if i == arrays.count { return body(views) }
            return arrays[i].withUnsafeBytes { raw in
                views.append(raw)
                return nest(i + 1, &views)
            }
        }
        var views: [UnsafeRawBufferPointer] = []
        views.reserveCapacity(arrays.count)
        return nest(0, &views)
    }
}
