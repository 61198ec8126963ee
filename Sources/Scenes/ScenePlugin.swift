import Model
import NIOConcurrencyHelpers
internal import ScenePluginABI

/// The names of a plugin's four schema sections, as wire v1 carries them: context ids,
/// context dense, item ids, item dense (counts are the array lengths).
public struct PluginSchema: Sendable, Equatable {
    public var contextIDs: [String]
    public var contextDense: [String]
    public var itemIDs: [String]
    public var itemDense: [String]

    public init(contextIDs: [String], contextDense: [String], itemIDs: [String], itemDense: [String]) {
        self.contextIDs = contextIDs; self.contextDense = contextDense
        self.itemIDs = itemIDs; self.itemDense = itemDense
    }
}

/// Why a plugin could not be loaded or failed a request. `message` names the plugin and the
/// reason, including the plugin's own error text where it gave one.
public struct PluginError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable {
        /// The name or the path it resolves to escapes the plugin directory.
        case forbidden
        /// No such plugin file (or no plugin directory).
        case notFound
        /// Not a usable plugin: dlopen failed, no entry symbol, wrong ABI version, missing
        /// functions, a bad declaration, canonical counts that don't fit the backbone, or a
        /// failing create().
        case invalid
        /// transform() or postprocess() failed at request time, or wrote non-finite values.
        case failed
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) { self.kind = kind; self.message = message }

    public var description: String { message }
}

/// A request whose raw feature counts don't match a plugin's raw schema: a client error (400),
/// reported like Model's `SchemaMismatch`.
public struct RawSchemaMismatch: Error, CustomStringConvertible, Equatable, Sendable {
    /// e.g. "context has 1 ids"
    public let what: String
    /// e.g. "scene 'electronics' expects 2 (user_id, device)"
    public let expected: String
    public var description: String { "\(what), \(expected)" }
}

/// Head output names as the C array `postprocess()` receives (`const char *const *`), made
/// once and reused, so the request path allocates nothing. Immutable; share it freely.
/// `ScenePlugin.postprocess(_:candidates:outputs:)` with a `[String]` keeps a small cache of
/// these per plugin instance; a caller that knows a head's outputs up front (one per head
/// version) can make one and pass it instead, which skips the cache lookup and its lock.
public final class PluginOutputNames: @unchecked Sendable {
    public let names: [String]
    let pointers: UnsafeMutablePointer<UnsafePointer<CChar>?>

    public init(_ names: [String]) {
        self.names = names
        pointers = .allocate(capacity: max(names.count, 1))
        for (i, name) in names.enumerated() {
            let bytes = Array(name.utf8.prefix { $0 != 0 }) + [0]
            let copy = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count)
            for (j, b) in bytes.enumerated() { copy[j] = CChar(bitPattern: b) }
            (pointers + i).initialize(to: UnsafePointer(copy))
        }
    }

    deinit {
        for i in 0..<names.count { UnsafeMutablePointer(mutating: pointers[i])?.deallocate() }
        pointers.deallocate()
    }
}

/// One created instance of one scene plugin library (Plugins/README.md; the ABI is
/// Sources/ScenePluginABI/include/scenescore_plugin.h).
///
/// `load` opens `<directory>/<name>.so` (dlopen, RTLD_NOW | RTLD_LOCAL), checks the plugin's
/// declaration against the ABI and the backbone, and calls its create(); deinit calls destroy()
/// then dlclose(), so the library is unmapped when its last instance is gone (except a library
/// that registered with the Swift runtime: see `unloadsWhenReleased`). `transform` and `postprocess` may be
/// called concurrently from any thread; they allocate nothing once a thread's scratch has grown
/// to the largest request it has seen.
///
/// Everything the hot path reads from the plugin's declaration (function pointers, counts) is
/// copied at load time, so a plugin that scribbles on its descriptor later cannot change what
/// the server checked.
public final class ScenePlugin: @unchecked Sendable {
    /// The plugin's file stem (`<name>.so`).
    public let name: String
    /// The scene the plugin declares it is written for.
    public let scene: String
    /// The plugin's one-line description ("" when it gave none).
    public let summary: String
    /// What clients send for this scene.
    public let raw: PluginSchema
    /// The canonical fields transform() writes; names as the plugin declared them, or
    /// `context_ids[i]`-style placeholders where it gave none. Counts equal the backbone's.
    public let canonical: PluginSchema
    /// The library's resolved path inside the plugin directory.
    public let path: String

    public var hasPostprocess: Bool { postprocessFunction != nil }
    /// Whether the library is unmapped once its last instance is gone. False for a library
    /// that registered with the Swift runtime (a plugin written in Swift), which must stay
    /// mapped for the life of the process; a new build of it must be installed under a new name.
    public var unloadsWhenReleased: Bool { library.unloadable }

    /// Instances created and not yet destroyed, across all plugins (for metrics and tests).
    public static var liveInstances: Int { live.withLockedValue { $0 } }
    private static let live = NIOLockedValueBox(0)

    private let library: PluginLibrary
    private let instance: UnsafeMutableRawPointer?
    private let destroyFunction: DestroyFunction
    private let transformFunction: TransformFunction
    private let postprocessFunction: PostprocessFunction?
    private let rawCounts: SectionCounts
    private let canonicalCounts: SectionCounts
    private let outputNameCache = NIOLockedValueBox<[PluginOutputNames]>([])

    /// Loads plugin `name` from `directory` and creates an instance with `configJSON` (a JSON
    /// object; "" means "{}"). Only `<directory>/<name>.so` is ever opened: `name` must be 1…64
    /// of [a-z0-9_-] and the file, symlinks resolved, must lie inside the directory. Blocks on
    /// file I/O, dlopen() and the plugin's create(): call it off the event loops.
    public static func load(name: String, directory: String, configJSON: String,
                            canonical: BackboneSpec) throws(PluginError) -> ScenePlugin {
        let path = try PluginLoader.resolve(name: name, directory: directory)
        let (library, descriptor) = try PluginLoader.open(path: path, name: name)
        let declaration = try PluginLoader.declaration(of: descriptor, name: name, backbone: canonical)
        let instance = try PluginLoader.create(declaration, name: name, configJSON: configJSON.isEmpty ? "{}" : configJSON)
        return ScenePlugin(name: name, path: path, library: library, declaration: declaration, instance: instance)
    }

    private init(name: String, path: String, library: PluginLibrary, declaration: PluginDeclaration,
                 instance: UnsafeMutableRawPointer?) {
        self.name = name
        self.path = path
        self.library = library
        self.instance = instance
        scene = declaration.scene
        summary = declaration.summary
        raw = declaration.raw
        canonical = declaration.canonical
        rawCounts = SectionCounts(declaration.raw)
        canonicalCounts = SectionCounts(declaration.canonical)
        destroyFunction = declaration.destroy
        transformFunction = declaration.transform
        postprocessFunction = declaration.postprocess
        Self.live.withLockedValue { $0 += 1 }
    }

    deinit {
        destroyFunction(instance)
        Self.live.withLockedValue { $0 -= 1 }
        // `library` closes the handle when it is released, after this.
    }

    /// Checks a request's raw section sizes against the plugin's raw schema.
    public func validate(_ raw: ScoringInput) throws(RawSchemaMismatch) {
        let n = raw.candidates
        func check(_ bytes: Int, _ count: Int, _ names: [String], perCandidate: Bool, _ what: String) throws(RawSchemaMismatch) {
            let values = bytes / 4
            guard bytes % 4 != 0 || values != (perCandidate ? count * n : count) else { return }
            let got: String
            if !perCandidate {
                got = "context has \(values) \(what)"
            } else if n > 0, bytes % 4 == 0, values % n == 0 {
                got = "candidates have \(values / n) \(what) each"
            } else {
                got = "\(n) candidates have \(bytes) bytes of \(what)"
            }
            throw RawSchemaMismatch(what: got, expected: "scene '\(scene)' (plugin '\(name)') expects \(count)"
                                    + (perCandidate ? " each" : "") + " (\(names.joined(separator: ", ")))")
        }
        try check(raw.contextIDs.count, rawCounts.contextIDs, self.raw.contextIDs, perCandidate: false, "ids")
        try check(raw.contextDense.count, rawCounts.contextDense, self.raw.contextDense, perCandidate: false, "dense values")
        try check(raw.itemIDs.count, rawCounts.itemIDs, self.raw.itemIDs, perCandidate: true, "ids")
        try check(raw.itemDense.count, rawCounts.itemDense, self.raw.itemDense, perCandidate: true, "dense values")
    }

    /// Maps one request's raw sections (little-endian u32/f32 at any alignment: misaligned
    /// sections are copied into this thread's scratch first) onto the canonical fields, written
    /// into the caller's buffers (sized for the canonical schema × candidates). Fails with
    /// `.failed` when the raw sizes don't match the raw schema (call `validate` first to answer
    /// 400 instead), when the plugin reports an error, or when a written dense value is not
    /// finite (the message names the field and candidate).
    public func transform(_ raw: ScoringInput, contextIDs: UnsafeMutablePointer<UInt32>,
                          contextDense: UnsafeMutablePointer<Float>, itemIDs: UnsafeMutablePointer<UInt32>,
                          itemDense: UnsafeMutablePointer<Float>) throws(PluginError) {
        do { try validate(raw) } catch { throw PluginError(.failed, "plugin '\(name)': raw request does not fit: \(error)") }
        guard raw.candidates >= 0, raw.candidates <= Int(UInt32.max) else {
            throw PluginError(.failed, "plugin '\(name)': \(raw.candidates) candidates")
        }
        let scratch = PluginScratch.current()
        let sections = scratch.prepare(raw)
        var batch = scenescore_batch(candidates: UInt32(raw.candidates),
                                     context_ids: sections.contextIDs, context_dense: sections.contextDense,
                                     item_ids: sections.itemIDs, item_dense: sections.itemDense)
        var out = scenescore_canonical_out(context_ids: contextIDs, context_dense: contextDense,
                                           item_ids: itemIDs, item_dense: itemDense)
        let error = scratch.errorBuffer
        error[0] = 0
        if transformFunction(instance, &batch, &out, error, PluginScratch.errorCapacity) != 0 {
            throw PluginError(.failed, "plugin '\(name)' (scene '\(scene)'): transform failed: \(PluginLoader.message(error, PluginScratch.errorCapacity))")
        }
        if let bad = firstNonFinite(contextDense, count: canonicalCounts.contextDense) {
            throw nonFinite(contextDense[bad], field: canonical.contextDense[bad], index: bad, section: "context dense", candidate: nil)
        }
        let width = canonicalCounts.itemDense
        if let bad = firstNonFinite(itemDense, count: raw.candidates * width) {
            throw nonFinite(itemDense[bad], field: canonical.itemDense[bad % width], index: bad % width,
                            section: "item dense", candidate: bad / width)
        }
    }

    /// Lets the plugin rewrite `scores` (candidates × outputs.count, row-major) in place; a
    /// no-op when it has no postprocess. The C name array for `outputs` is made once per
    /// distinct array and cached (up to 16 per instance; beyond that each call makes one).
    public func postprocess(_ scores: UnsafeMutableBufferPointer<Float>, candidates: Int, outputs: [String]) throws(PluginError) {
        guard postprocessFunction != nil else { return }
        try postprocess(scores, candidates: candidates, outputs: outputNames(outputs))
    }

    /// `postprocess` with output names made up front (see `PluginOutputNames`).
    public func postprocess(_ scores: UnsafeMutableBufferPointer<Float>, candidates: Int,
                            outputs: PluginOutputNames) throws(PluginError) {
        guard let postprocessFunction else { return }
        let k = outputs.names.count
        guard candidates >= 0, candidates <= Int(UInt32.max), k <= Int(UInt32.max), scores.count >= candidates * k else {
            throw PluginError(.failed, "plugin '\(name)': \(scores.count) scores for \(candidates) candidates × \(k) outputs")
        }
        let base = scores.baseAddress ?? PluginScratch.current().emptyFloats
        let error = PluginScratch.current().errorBuffer
        error[0] = 0
        if postprocessFunction(instance, UInt32(candidates), UInt32(k), outputs.pointers, base, error, PluginScratch.errorCapacity) != 0 {
            throw PluginError(.failed, "plugin '\(name)' (scene '\(scene)'): postprocess failed: \(PluginLoader.message(error, PluginScratch.errorCapacity))")
        }
        if let bad = firstNonFinite(base, count: candidates * k) {
            throw nonFinite(base[bad], field: outputs.names[bad % k], index: bad % k, section: "score", candidate: bad / k)
        }
    }

    private func outputNames(_ outputs: [String]) -> PluginOutputNames {
        outputNameCache.withLockedValue { cache in
            if let hit = cache.first(where: { $0.names == outputs }) { return hit }
            let made = PluginOutputNames(outputs)
            if cache.count < 16 { cache.append(made) }
            return made
        }
    }

    private func firstNonFinite(_ values: UnsafeMutablePointer<Float>, count: Int) -> Int? {
        NonFinite.firstIndex(in: UnsafeBufferPointer(start: values, count: count))
    }

    private func nonFinite(_ value: Float, field: String, index: Int, section: String, candidate: Int?) -> PluginError {
        PluginError(.failed, "plugin '\(name)' (scene '\(scene)'): wrote \(value) to \(section) '\(field)' (index \(index))"
                    + (candidate.map { " of candidate \($0)" } ?? ""))
    }
}

/// The four section counts of a schema.
struct SectionCounts {
    let contextIDs: Int, contextDense: Int, itemIDs: Int, itemDense: Int
    init(_ schema: PluginSchema) {
        contextIDs = schema.contextIDs.count; contextDense = schema.contextDense.count
        itemIDs = schema.itemIDs.count; itemDense = schema.itemDense.count
    }
}
