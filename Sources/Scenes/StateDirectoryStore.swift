import Foundation
import Model

/// The embedded store: a local state directory (Proto/ADMIN.md, "State directory").
///
///     <root>/backbone-<sha256 prefix>/scenes/<scene>/manifest.json
///                                    scenes/<scene>/versions/<file>.safetensors
///                                    staging/   uploads being validated
///                                    seeded     marker: the model directory's heads were imported
///
/// Heads belong to the backbone they were trained on, so each backbone has its own registry.
/// Every file is written to a temp file, fsynced and renamed, and its directory fsynced; the
/// manifest's rename is a change's commit point. Whatever a crash leaves outside the manifests
/// (staged uploads, version files no manifest names, scene folders without one) is removed when
/// the store opens, so a restart serves exactly the last committed state.
public final class StateDirectoryStore: SceneStore {
    public let directory: String
    private var scenesDir: String { directory + "/scenes" }
    private var stagingDir: String { directory + "/staging" }

    public init(root: String, backboneHash: String) throws(RegistryError) {
        directory = root + "/backbone-" + backboneHash.prefix(16)
        for dir in [root, directory, directory + "/scenes", directory + "/staging"] {
            try Self.makeDirectory(dir)
        }
        Self.removeContents(of: stagingDir)
    }

    public func needsSeeding() -> Bool { !FileManager.default.fileExists(atPath: directory + "/seeded") }

    public func markSeeded() throws(RegistryError) {
        try Self.atomicWrite(Array("1\n".utf8), to: directory + "/seeded")
    }

    public func loadAll() throws(RegistryError) -> [SceneRecord] {
        let fm = FileManager.default
        let names: [String]
        do { names = try fm.contentsOfDirectory(atPath: scenesDir).sorted() } catch {
            throw RegistryError(.unavailable, "state directory \(scenesDir): cannot list (\(error.localizedDescription))")
        }
        var records: [SceneRecord] = []
        for name in names {
            let dir = scenesDir + "/" + name
            guard let record = try readManifest(dir) else {
                // A scene whose first commit never happened, or a removal cut short.
                try? fm.removeItem(atPath: dir)
                continue
            }
            let kept = Set(record.versions.map(\.file))
            for file in (try? fm.contentsOfDirectory(atPath: dir + "/versions")) ?? [] where !kept.contains(file) {
                try? fm.removeItem(atPath: dir + "/versions/" + file)
            }
            for file in (try? fm.contentsOfDirectory(atPath: dir)) ?? [] where file.hasPrefix("manifest.json.tmp") {
                try? fm.removeItem(atPath: dir + "/" + file)
            }
            records.append(record)
        }
        return records
    }

    public func stage(_ bytes: [UInt8]) throws(RegistryError) -> StagedHead {
        let file = StagedHead.newFileName()
        let path = stagingDir + "/" + file
        try Self.atomicWrite(bytes, to: path)
        return StagedHead(source: .file(path: path), bytes: bytes.count, file: file)
    }

    public func discard(_ staged: StagedHead) { unlink(stagingDir + "/" + staged.file) }

    public func head(scene: String, version: VersionRecord) throws(RegistryError) -> HeadSource {
        let path = scenesDir + "/" + scene + "/versions/" + version.file
        guard FileManager.default.fileExists(atPath: path) else {
            throw RegistryError(.unavailable, "state directory: head file of \(scene) \(version.version) is missing (\(path))")
        }
        return .file(path: path)
    }

    public func commit(_ record: SceneRecord, adding staged: StagedHead?, expectedGeneration: Int?) throws(RegistryError) {
        let dir = scenesDir + "/" + record.scene
        let stored = try readManifest(dir)
        switch (expectedGeneration, stored) {
        case (nil, nil): break
        case (nil, .some): throw RegistryError(.conflict, "scene '\(record.scene)' exists already")
        case (.some, nil): throw RegistryError(.notFound, "unknown scene '\(record.scene)'")
        case (.some(let expected), .some(let current)) where current.generation != expected:
            throw RegistryError(.conflict, "scene '\(record.scene)' is at generation \(current.generation), not \(expected)")
        default: break
        }
        try Self.makeDirectory(dir)
        try Self.makeDirectory(dir + "/versions")
        if let staged {
            guard rename(stagingDir + "/" + staged.file, dir + "/versions/" + staged.file) == 0 else {
                throw RegistryError(.unavailable, "state directory: cannot move the upload into \(dir)/versions: \(String(cString: strerror(errno)))")
            }
            Self.syncDirectory(dir + "/versions")
            Self.syncDirectory(stagingDir)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let json: Data
        do { json = try encoder.encode(record) } catch {
            throw RegistryError(.unavailable, "cannot encode the manifest of '\(record.scene)': \(error)")
        }
        try Self.atomicWrite(Array(json), to: dir + "/manifest.json")
        // Committed. Versions the record no longer keeps go now (or at the next open).
        let kept = Set(record.versions.map(\.file))
        for file in (try? FileManager.default.contentsOfDirectory(atPath: dir + "/versions")) ?? [] where !kept.contains(file) {
            unlink(dir + "/versions/" + file)
        }
    }

    public func remove(scene: String, expectedGeneration: Int) throws(RegistryError) {
        let dir = scenesDir + "/" + scene
        guard let stored = try readManifest(dir) else { throw RegistryError(.notFound, "unknown scene '\(scene)'") }
        guard stored.generation == expectedGeneration else {
            throw RegistryError(.conflict, "scene '\(scene)' is at generation \(stored.generation), not \(expectedGeneration)")
        }
        // Unlinking the manifest is the commit point; the folder is garbage from then on.
        guard unlink(dir + "/manifest.json") == 0 else {
            throw RegistryError(.unavailable, "state directory: cannot remove \(dir)/manifest.json: \(String(cString: strerror(errno)))")
        }
        Self.syncDirectory(dir)
        try? FileManager.default.removeItem(atPath: dir)
        Self.syncDirectory(scenesDir)
    }

    // MARK: - Files

    private func readManifest(_ dir: String) throws(RegistryError) -> SceneRecord? {
        let path = dir + "/manifest.json"
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        do { return try JSONDecoder().decode(SceneRecord.self, from: data) } catch {
            throw RegistryError(.unavailable, "state directory: \(path) is not a valid manifest (\(error))")
        }
    }

    private static func makeDirectory(_ path: String) throws(RegistryError) {
        do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
            throw RegistryError(.unavailable, "state directory: cannot create \(path) (\(error.localizedDescription))")
        }
    }

    private static func atomicWrite(_ bytes: [UInt8], to path: String) throws(RegistryError) {
        do { try AtomicFile.write(bytes, to: path) } catch {
            throw RegistryError(.unavailable, "state directory: \(error)")
        }
    }

    private static func syncDirectory(_ path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 { fsync(fd); close(fd) }
    }

    private static func removeContents(of dir: String) {
        for file in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
            try? FileManager.default.removeItem(atPath: dir + "/" + file)
        }
    }
}
