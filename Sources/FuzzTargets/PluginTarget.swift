import Foundation
import Model
import Scenes

// The scene-plugin boundary: the bundled plugins (apparel and electronics in Swift, beauty in
// C), loaded as shared libraries by the real loader, fed raw request sections and scores.
//
// Input layout (all of it is data; nothing is required to be valid):
//   byte 0   bits 0-1: plugin (apparel, electronics, beauty, beauty); bit 7: config mode
//   config mode: the rest is the plugin's JSON config, handed to create()
//   otherwise:
//   byte 1   candidates (0…31); bits 5-7 pick a section to make one value short (1-4) or none
//   byte 2   outputs given to postprocess (1…4 names)
//   rest     the raw sections' bytes, in wire order, then the scores (zeros once it runs out)

private let pluginNames = ["apparel", "electronics", "beauty", "beauty"]

/// One instance of each bundled plugin, created with `{}`, for the small backbone's counts.
private let plugins: [String: ScenePlugin] = {
    var made: [String: ScenePlugin] = [:]
    for name in Set(pluginNames) {
        made[name] = try! ScenePlugin.load(name: name, directory: FuzzEnvironment.pluginDirectory, configJSON: "{}",
                                           canonical: FuzzModels.smallBackboneSpec)
    }
    return made
}()

/// `plugins`: raw sections through `validate` and `transform`, scores through `postprocess`,
/// or a config through `create`. Sections that fit the raw schema and carry finite values may be
/// refused (a plugin judges its values) but never written past; a batch that transforms gives
/// each candidate the row it gets alone; probabilities always post-process.
public func fuzzPlugins(_ data: UnsafeRawBufferPointer) {
    _ = plugins  // loaded on the first input, even a short one (the fuzzer's warm-up)
    guard data.count >= 3 else { return }
    let name = pluginNames[Int(data[0] & 3)]
    if data[0] & 0x80 != 0 {
        fuzzPluginConfig(name, UnsafeRawBufferPointer(rebasing: data[1...]))
        return
    }
    let plugin = plugins[name]!
    var input = ByteStream(UnsafeRawBufferPointer(rebasing: data[3...]))
    let n = Int(data[1] & 31)
    let shortSection = Int(data[1] >> 5)  // 1…4: that section lacks one value
    let raw = plugin.raw
    func section(_ count: Int, _ index: Int) -> [UInt8] {
        input.take(4 * max(0, count - (shortSection == index ? 1 : 0)))
    }
    let contextIDs = section(raw.contextIDs.count, 1), contextDense = section(raw.contextDense.count, 2)
    let itemIDs = section(n * raw.itemIDs.count, 3), itemDense = section(n * raw.itemDense.count, 4)

    let canonical = transform(plugin, n, contextIDs, contextDense, itemIDs, itemDense)
    trace("plugin \(name), \(n) candidates: " + (canonical.map { "transformed, item ids \($0.itemIDs.prefix(6))" } ?? "refused"))
    if let canonical, n >= 2 {
        // The last candidate alone gets the row it got in the batch.
        let last = n - 1
        let ids = Array(itemIDs[(4 * last * raw.itemIDs.count)...]), dense = Array(itemDense[(4 * last * raw.itemDense.count)...])
        guard let alone = transform(plugin, 1, contextIDs, contextDense, ids, dense) else {
            require(false, "plugin '\(name)': candidate \(last) transforms in a batch but not alone")
            return
        }
        let spec = FuzzModels.smallBackboneSpec
        let idWidth = spec.itemFields.count, denseWidth = spec.itemDense
        require(alone.contextIDs == canonical.contextIDs && bitsEqual(alone.contextDense, canonical.contextDense)
                && alone.itemIDs == Array(canonical.itemIDs[(last * idWidth)...])
                && bitsEqual(alone.itemDense, Array(canonical.itemDense[(last * denseWidth)...])),
                "plugin '\(name)': candidate \(last) transforms differently alone than in a batch")
    }

    let outputs = Array(["click", "purchase", "add_to_cart", "dwell"].prefix(Int(data[2] & 3) + 1))
    var scores = [Float](repeating: 0, count: n * outputs.count)
    for i in scores.indices {
        // Probabilities, as a head's sigmoid writes them (any value in 0…1, ends included).
        let word = input.word()
        scores[i] = word == 0xFFFF_FFFF ? 1 : Float(word) / Float(UInt32.max)
    }
    let before = scores
    do {
        try scores.withUnsafeMutableBufferPointer { s throws(PluginError) in try plugin.postprocess(s, candidates: n, outputs: outputs) }
        require(scores.allSatisfy(\.isFinite), "plugin '\(name)': postprocess wrote a non-finite score")
        trace("plugin \(name): postprocess \(before.prefix(4)) → \(scores.prefix(4))")
    } catch {
        require(false, "plugin '\(name)': postprocess refused probabilities \(before.prefix(8)) for \(outputs): \(error)")
    }
}

private struct Canonical {
    var contextIDs: [UInt32], contextDense: [Float], itemIDs: [UInt32], itemDense: [Float]
}

/// Validates and transforms into buffers of exactly the canonical size (so a write past them is
/// an AddressSanitizer report). Nil when refused.
private func transform(_ plugin: ScenePlugin, _ n: Int, _ contextIDs: [UInt8], _ contextDense: [UInt8],
                       _ itemIDs: [UInt8], _ itemDense: [UInt8]) -> Canonical? {
    let spec = FuzzModels.smallBackboneSpec
    let cids = UnsafeMutablePointer<UInt32>.allocate(capacity: max(spec.contextFields.count, 1))
    let cdense = UnsafeMutablePointer<Float>.allocate(capacity: max(spec.contextDense, 1))
    let iids = UnsafeMutablePointer<UInt32>.allocate(capacity: max(n * spec.itemFields.count, 1))
    let idense = UnsafeMutablePointer<Float>.allocate(capacity: max(n * spec.itemDense, 1))
    defer { cids.deallocate(); cdense.deallocate(); iids.deallocate(); idense.deallocate() }
    return contextIDs.withUnsafeBytes { ci in contextDense.withUnsafeBytes { cd in
        itemIDs.withUnsafeBytes { ii in itemDense.withUnsafeBytes { id in
            let raw = ScoringInput(candidates: n, contextIDs: ci, contextDense: cd, itemIDs: ii, itemDense: id)
            var fits = true
            do { try plugin.validate(raw) } catch { fits = false }
            do {
                try plugin.transform(raw, contextIDs: cids, contextDense: cdense, itemIDs: iids, itemDense: idense)
            } catch {
                trace("plugin \(plugin.name): \(error)")
                let kind = (error as? PluginError)?.kind
                require(kind == .failed, "plugin '\(plugin.name)': transform failed as \(String(describing: kind)): \(error)")
                return nil
            }
            require(fits, "plugin '\(plugin.name)': transform accepted sections that fail validate")
            return Canonical(contextIDs: Array(UnsafeBufferPointer(start: cids, count: spec.contextFields.count)),
                             contextDense: Array(UnsafeBufferPointer(start: cdense, count: spec.contextDense)),
                             itemIDs: Array(UnsafeBufferPointer(start: iids, count: n * spec.itemFields.count)),
                             itemDense: Array(UnsafeBufferPointer(start: idense, count: n * spec.itemDense)))
        }}
    }}
}

/// create() with a fuzzed config: loads or is refused as `.invalid`, never anything else. An
/// instance that passes the registry's load-time probe (post-processing 0.5 for each output)
/// post-processes every probability to finite scores: the registry serves it, so otherwise
/// requests would fail.
private func fuzzPluginConfig(_ name: String, _ config: UnsafeRawBufferPointer) {
    let text = String(decoding: config, as: UTF8.self)
    let plugin: ScenePlugin
    do {
        plugin = try ScenePlugin.load(name: name, directory: FuzzEnvironment.pluginDirectory, configJSON: text,
                                      canonical: FuzzModels.smallBackboneSpec)
        require(plugin.name == name, "loaded another plugin")
        trace("plugin \(name): config accepted")
    } catch {
        trace("plugin \(name): config refused: \(error)")
        require(error.kind == .invalid, "plugin '\(name)': config refused as \(error.kind): \(error)")
        return
    }
    let outputs = ["click", "purchase"]
    var probe: [Float] = [0.5, 0.5]
    do {
        try probe.withUnsafeMutableBufferPointer { p throws(PluginError) in try plugin.postprocess(p, candidates: 1, outputs: outputs) }
    } catch {
        return  // the registry refuses this instance (SceneRegistry.loadVersion)
    }
    let grid: [Float] = [0, 1e-7, 1e-4, 0.01, 0.25, 0.5, 0.75, 0.99, 1 - 1e-4, 1 - 1e-7, 1]
    var scores = grid.flatMap { [$0, $0] }
    do {
        try scores.withUnsafeMutableBufferPointer { s throws(PluginError) in
            try plugin.postprocess(s, candidates: grid.count, outputs: outputs)
        }
    } catch {
        require(false, "plugin '\(name)' with config \(text): passes the load-time probe, then fails on probabilities: \(error)")
    }
}

/// Reads an input front to back; zeros once it is used up.
struct ByteStream {
    private let bytes: UnsafeRawBufferPointer
    private var offset = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    mutating func take(_ count: Int) -> [UInt8] {
        let available = min(count, bytes.count - offset)
        var out = Array(bytes[offset..<(offset + available)])
        offset += available
        if available < count { out += [UInt8](repeating: 0, count: count - available) }
        return out
    }

    mutating func word() -> UInt32 {
        take(4).withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) }
    }

    mutating func byte() -> UInt8 { take(1)[0] }

    var remaining: Int { bytes.count - offset }
}
