import Foundation

/// Follows the shared registry: a connection of its own that LISTENs on
/// `PostgresSceneStore.channel`, on a thread of its own. It reports when the database becomes
/// reachable (after start and after every reconnect: the caller then reconciles from the tables,
/// since notifications sent while it was away are lost), when it is lost (the caller keeps
/// serving what it has), and each committed change to this backbone's registry. Reconnects with
/// backoff (0.1 s doubling to 2 s) until stopped.
public final class RegistryListener: @unchecked Sendable {
    public enum Event: Sendable {
        /// Listening (again): anything may have changed meanwhile.
        case reachable
        /// The connection failed or could not be made; `reason` is libpq's message.
        case unreachable(reason: String)
        /// Another commit landed: `scene` at `generation` (0: removed).
        case changed(scene: String, generation: Int)
    }

    private let url: String
    private let backbonePrefix: String
    private let handler: @Sendable (Event) -> Void
    private let stopped = NSLock()
    private var stopRequested = false
    private let finished = DispatchSemaphore(value: 0)
    private var thread: Thread?

    public init(url: String, backboneHash: String, handler: @escaping @Sendable (Event) -> Void) {
        self.url = url
        backbonePrefix = String(backboneHash.prefix(16)) + ":"
        self.handler = handler
    }

    public func start() {
        let thread = Thread { [self] in
            run()
            finished.signal()
        }
        thread.name = "scenescore.registry.listener"
        self.thread = thread
        thread.start()
    }

    /// Stops listening; returns once the thread has closed its connection (within ~0.2 s).
    public func stop() {
        stopped.withLock { stopRequested = true }
        guard thread != nil else { return }
        finished.wait()
        thread = nil  // the thread's block holds this listener: drop the cycle
    }

    private var isStopping: Bool { stopped.withLock { stopRequested } }

    private func run() {
        var connection: PostgresConnection?
        var reachable: Bool?
        var backoff = 0.1
        while !isStopping {
            if connection == nil {
                do {
                    let fresh = try PostgresConnection(url: url, applicationName: "scenescore-listener")
                    try fresh.execute("LISTEN \(PostgresSceneStore.channel)")
                    connection = fresh
                    reachable = true
                    backoff = 0.1
                    handler(.reachable)
                } catch {
                    if reachable != false { handler(.unreachable(reason: error.message)) }
                    reachable = false
                    Thread.sleep(forTimeInterval: backoff)
                    backoff = min(backoff * 2, 2)
                    continue
                }
            }
            do {
                for note in try connection!.notifications(waitingUpTo: 200) where note.payload.hasPrefix(backbonePrefix) {
                    let parts = note.payload.dropFirst(backbonePrefix.count).split(separator: ":")
                    guard parts.count == 2, let generation = Int(parts[1]) else { continue }
                    handler(.changed(scene: String(parts[0]), generation: generation))
                }
            } catch {
                connection = nil
                reachable = false
                handler(.unreachable(reason: error.message.isEmpty ? "connection lost" : error.message))
            }
        }
    }
}
