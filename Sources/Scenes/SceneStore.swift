/// Where the registry keeps its state durably. The registry serialises every call; a store for
/// several replicas (e.g. PostgreSQL) must also make `commit` and `remove` conditional on the
/// stored generation, so concurrent writers from different processes cannot lose an update.
public protocol SceneStore: Sendable {
    /// Every scene as last committed.
    func loadAll() throws(RegistryError) -> [SceneRecord]
    /// True until `markSeeded`: the registry then seeds it from the model directory's heads.
    var needsSeeding: Bool { get }
    func markSeeded() throws(RegistryError)
    /// Stores an upload durably under a provisional name, for validation before it is committed.
    func stage(_ bytes: [UInt8]) throws(RegistryError) -> StagedHead
    /// Forgets a staged upload that was refused.
    func discard(_ staged: StagedHead)
    /// A local path to read a committed version's head file from.
    func headPath(scene: String, version: VersionRecord) throws(RegistryError) -> String
    /// Makes `record` the scene's state, atomically: a staged head becomes the version file named
    /// `record.versions[...].file`, files of versions no longer in the record are deleted.
    /// `expectedGeneration` nil: the scene must not exist yet. Throws `.conflict` otherwise.
    func commit(_ record: SceneRecord, adding staged: StagedHead?, expectedGeneration: Int?) throws(RegistryError)
    /// Deletes the scene, if it is still at `expectedGeneration`.
    func remove(scene: String, expectedGeneration: Int) throws(RegistryError)
}

/// An upload stored but not yet part of any scene.
public struct StagedHead: Sendable {
    /// Where it can be read (mmap) for validation.
    public let path: String
    public let bytes: Int
    /// The name it gets when committed.
    public let file: String
}
