/// Why a registry change was refused. Nothing changed when one is thrown.
public struct RegistryError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// No such scene or version.
        case notFound
        /// The scene or version exists already, or the scene moved on (stale generation).
        case conflict
        /// The head or plugin cannot be served (422).
        case invalid
        /// A plugin name or path that leaves the plugin directory (403).
        case forbidden
        /// The store cannot be written or read (503).
        case unavailable
        /// The request itself is malformed (400): a body that is not the JSON asked for.
        case malformed
    }

    public let kind: Kind
    public let message: String
    public var description: String { message }

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
}
