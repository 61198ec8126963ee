// Helpers for scene plugins written in Swift (Plugins/README.md): the static descriptor the
// entry symbol returns, error reporting through the ABI's error buffer, and the training world's
// canonical id offsets. Linked statically into each Swift plugin library; the server never
// links it.
public import ScenePluginABI
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public typealias PluginCreate = @convention(c) (
    UnsafePointer<CChar>?, Int, UnsafeMutablePointer<UnsafeMutableRawPointer?>?, UnsafeMutablePointer<CChar>?, Int
) -> Int32
public typealias PluginDestroy = @convention(c) (UnsafeMutableRawPointer?) -> Void
public typealias PluginTransform = @convention(c) (
    UnsafeRawPointer?, UnsafePointer<scenescore_batch>?, UnsafeMutablePointer<scenescore_canonical_out>?,
    UnsafeMutablePointer<CChar>?, Int
) -> Int32
public typealias PluginPostprocess = @convention(c) (
    UnsafeRawPointer?, UInt32, UInt32, UnsafePointer<UnsafePointer<CChar>?>?, UnsafeMutablePointer<Float>?,
    UnsafeMutablePointer<CChar>?, Int
) -> Int32

/// The names of one schema's four sections.
public struct SchemaNames: Sendable {
    public var contextIDs: [String]
    public var contextDense: [String]
    public var itemIDs: [String]
    public var itemDense: [String]

    public init(contextIDs: [String], contextDense: [String], itemIDs: [String], itemDense: [String]) {
        self.contextIDs = contextIDs; self.contextDense = contextDense
        self.itemIDs = itemIDs; self.itemDense = itemDense
    }

    /// The default backbone's canonical schema (Proto/MODEL-FORMAT.md; Sources/Training's world):
    /// [user]; activity then three zeros; [item, category, brand]; 16 content values then the
    /// centred log price.
    public static let canonical = SchemaNames(
        contextIDs: ["user"], contextDense: ["activity", "zero_1", "zero_2", "zero_3"],
        itemIDs: ["item", "category", "brand"],
        itemDense: (0..<16).map { "content_\($0)" } + ["log_price_centered"])
}

public enum PluginDescriptor {
    /// Builds the immutable `scenescore_plugin` the entry symbol returns. Strings and name arrays
    /// are copied into memory that is never freed: a Swift library stays mapped once loaded, so
    /// this happens once per process (call it from a global `let`, which Swift initialises once,
    /// thread-safely).
    public static func make(scene: String, description: String, raw: SchemaNames, canonical: SchemaNames,
                            create: PluginCreate, destroy: PluginDestroy, transform: PluginTransform,
                            postprocess: PluginPostprocess?) -> UnsafePointer<scenescore_plugin> {
        let descriptor = UnsafeMutablePointer<scenescore_plugin>.allocate(capacity: 1)
        descriptor.initialize(to: scenescore_plugin(
            abi_version: SCENESCORE_PLUGIN_ABI_VERSION,
            scene: UnsafePointer(strdup(scene)),
            description: UnsafePointer(strdup(description)),
            raw: schema(raw), canonical: schema(canonical),
            create: create, destroy: destroy, transform: transform, postprocess: postprocess))
        return UnsafePointer(descriptor)
    }

    static func schema(_ names: SchemaNames) -> scenescore_schema {
        scenescore_schema(context_ids: section(names.contextIDs), context_dense: section(names.contextDense),
                          item_ids: section(names.itemIDs), item_dense: section(names.itemDense))
    }

    static func section(_ names: [String]) -> scenescore_section {
        let array = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: max(names.count, 1))
        for (i, name) in names.enumerated() { (array + i).initialize(to: UnsafePointer(strdup(name))) }
        return scenescore_section(count: UInt32(names.count), names: UnsafePointer(array))
    }
}

/// A failure a plugin function reports through the ABI's error buffer.
public struct PluginFailure: Error, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }

    /// Writes the message NUL-terminated into `buffer` (at most `capacity` bytes including the
    /// NUL, cut on a UTF-8 character boundary) and returns 1, the ABI's failure code.
    public func report(into buffer: UnsafeMutablePointer<CChar>?, capacity: Int) -> Int32 {
        guard let buffer, capacity > 0 else { return 1 }
        var bytes = Array(message.utf8.prefix(capacity - 1))
        if bytes.count < message.utf8.count, let lead = bytes.lastIndex(where: { $0 & 0xC0 != 0x80 }) {
            // The cut may split the last character: keep it only if all its bytes made it.
            let length = bytes[lead] < 0x80 ? 1 : bytes[lead] >= 0xF0 ? 4 : bytes[lead] >= 0xE0 ? 3 : 2
            if bytes.count - lead < length { bytes.removeSubrange(lead...) }
        }
        for (i, byte) in bytes.enumerated() { buffer[i] = CChar(bitPattern: byte) }
        buffer[bytes.count] = 0
        return 1
    }
}

/// Runs a plugin function's body and maps a thrown failure onto the ABI's convention: 0 on
/// success, else the message in the error buffer and 1. Typed throws: nothing is boxed or
/// allocated unless the body fails.
@inline(__always)
public func reporting(into buffer: UnsafeMutablePointer<CChar>?, capacity: Int,
                      _ body: () throws(PluginFailure) -> Void) -> Int32 {
    do {
        try body()
        return 0
    } catch {
        return error.report(into: buffer, capacity: capacity)
    }
}

/// An instance that is just an immutable config value, boxed for the ABI's `void *instance`.
/// `create` and `destroy` of a Swift plugin whose state is one config struct: its C entry
/// points (which cannot capture or be generic) call these with the concrete type.
public enum ConfigInstance {
    @inline(__always)
    public static func create<Config>(_ json: UnsafePointer<CChar>?, _ length: Int,
                                      _ instance: UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
                                      _ error: UnsafeMutablePointer<CChar>?, _ capacity: Int,
                                      make: (UnsafePointer<CChar>?, Int) throws(PluginFailure) -> Config) -> Int32 {
        reporting(into: error, capacity: capacity) { () throws(PluginFailure) in
            let storage = UnsafeMutablePointer<Config>.allocate(capacity: 1)
            do throws(PluginFailure) { storage.initialize(to: try make(json, length)) } catch {
                storage.deallocate()
                throw error
            }
            instance?.pointee = UnsafeMutableRawPointer(storage)
        }
    }

    @inline(__always)
    public static func destroy<Config>(_ instance: UnsafeMutableRawPointer?, as type: Config.Type) {
        guard let storage = instance?.assumingMemoryBound(to: Config.self) else { return }
        storage.deinitialize(count: 1)
        storage.deallocate()
    }

    /// The config of an instance made by `create`.
    @inline(__always)
    public static func config<Config>(_ instance: UnsafeRawPointer?, as type: Config.Type) -> Config {
        instance!.assumingMemoryBound(to: Config.self).pointee
    }
}

/// The training world's per-scene id offsets (Sources/Training/WorldGenerator.swift): a scene's
/// local item, category and brand ids become item = s·1e6 + i, category = s·1e3 + c and
/// brand = s·1e5 + b, with s the scene's index in the world config.
public struct SceneOffsets: Sendable {
    public static let itemRange: UInt32 = 1_000_000
    public static let categoryRange: UInt32 = 1_000
    public static let brandRange: UInt32 = 100_000
    /// The largest index whose item ids still fit in 32 bits.
    public static let maxScene = Int((UInt32.max - (itemRange - 1)) / itemRange)

    public let scene: UInt32

    public init(scene: Int) throws(PluginFailure) {
        guard (0...Self.maxScene).contains(scene) else {
            throw PluginFailure("config: scene_index must be an integer 0…\(Self.maxScene), not \(scene)")
        }
        self.scene = UInt32(scene)
    }

    /// Writes the canonical [item, category, brand] of candidate `candidate` into `out`, or
    /// fails naming the raw fields when a local id is outside its scene's range.
    @inline(__always)
    public func write(item: UInt32, category: UInt32, brand: UInt32, candidate: Int, names: (String, String, String),
                      into out: UnsafeMutablePointer<UInt32>) throws(PluginFailure) {
        guard item < Self.itemRange, category < Self.categoryRange, brand < Self.brandRange else {
            throw PluginFailure("candidate \(candidate): \(names.0) \(item), \(names.1) \(category), \(names.2) \(brand) "
                                + "must be below \(Self.itemRange), \(Self.categoryRange), \(Self.brandRange)")
        }
        out[0] = scene * Self.itemRange + item
        out[1] = scene * Self.categoryRange + category
        out[2] = scene * Self.brandRange + brand
    }
}
