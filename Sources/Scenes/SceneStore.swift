import Foundation
import Model

/// Where the registry keeps its state durably. The registry serialises every call within one
/// process; a store shared by several replicas (`PostgresSceneStore`) also makes `commit` and
/// `remove` conditional on the stored generation, so writers in different processes cannot lose
/// an update, and tells the other replicas about each change (see `SceneRegistry.synchronize`).
public protocol SceneStore: Sendable {
    /// Every scene as last committed.
    func loadAll() throws(RegistryError) -> [SceneRecord]
    /// True until `markSeeded`: the registry then seeds it from the model directory's heads.
    func needsSeeding() throws(RegistryError) -> Bool
    func markSeeded() throws(RegistryError)
    /// Runs the registry's start-up (load, seed, mark seeded) so that replicas starting together
    /// seed once: a shared store holds a lock across processes; a local one just runs `body`.
    func exclusively<T>(_ body: () throws(RegistryError) -> T) throws(RegistryError) -> T
    /// Keeps an upload under a provisional name for validation before it is committed (a local
    /// store writes it durably; a shared one holds it until the commit's transaction).
    func stage(_ bytes: [UInt8]) throws(RegistryError) -> StagedHead
    /// Forgets a staged upload that was refused.
    func discard(_ staged: StagedHead)
    /// Where a committed version's head file is read from.
    func head(scene: String, version: VersionRecord) throws(RegistryError) -> HeadSource
    /// Makes `record` the scene's state, atomically: a staged head becomes the version file named
    /// `record.versions[...].file`, files of versions no longer in the record are deleted.
    /// `expectedGeneration` nil: the scene must not exist yet. Throws `.conflict` otherwise.
    func commit(_ record: SceneRecord, adding staged: StagedHead?, expectedGeneration: Int?) throws(RegistryError)
    /// Deletes the scene, if it is still at `expectedGeneration`.
    func remove(scene: String, expectedGeneration: Int) throws(RegistryError)
}

extension SceneStore {
    public func exclusively<T>(_ body: () throws(RegistryError) -> T) throws(RegistryError) -> T { try body() }
}

/// A head file's bytes: a local file (mapped) or bytes already in memory (fetched from a
/// database, or an upload not yet written anywhere).
public enum HeadSource: Sendable {
    case file(path: String)
    case bytes([UInt8], name: String)

    /// Maps or copies the bytes and validates the safetensors layout.
    public func open() throws -> SafeTensorsFile {
        switch self {
        case .file(let path): return try SafeTensorsFile(path: path)
        case .bytes(let bytes, let name): return try bytes.withUnsafeBytes { try SafeTensorsFile(bytes: $0, name: name) }
        }
    }
}

/// An upload stored but not yet part of any scene.
public struct StagedHead: Sendable {
    /// Where it is read from for validation.
    public let source: HeadSource
    public let bytes: Int
    /// The name it gets when committed.
    public let file: String

    public init(source: HeadSource, bytes: Int, file: String) {
        self.source = source
        self.bytes = bytes
        self.file = file
    }

    /// A fresh name for an upload's head file: milliseconds since the epoch and a random suffix
    /// (not client-chosen: version names are free text).
    public static func newFileName() -> String {
        "\(UInt64(Date().timeIntervalSince1970 * 1000))-\(UUID().uuidString.prefix(8).lowercased()).safetensors"
    }
}
