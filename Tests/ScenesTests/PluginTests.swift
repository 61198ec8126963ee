import Foundation
import Model
import Scenes
import Testing

/// The scene plugin loader against the real plugin libraries the build produced (the bundled
/// apparel, electronics and beauty plugins and the fixtures of Tests/PluginFixtures), each test
/// in a plugin directory of its own. Serialized: `ScenePlugin.liveInstances` is process-wide.
@Suite(.serialized) struct PluginTests {
    static let backbone = DefaultModel.backboneSpec

    // MARK: Loading

    @Test func bundledPluginsLoadAndDescribeThemselves() throws {
        let dir = try PluginDirectory()
        let content = (0..<16).map { "content_\($0)" }
        let expected: [(name: String, raw: PluginSchema, postprocess: Bool)] = [
            ("apparel", PluginSchema(contextIDs: ["user_id"], contextDense: ["log_activity"],
                                     itemIDs: ["style_id", "category", "brand", "colour", "size"],
                                     itemDense: content + ["list_price", "discount"]), false),
            ("electronics", PluginSchema(contextIDs: ["user_id", "device"], contextDense: ["sessions_30d"],
                                         itemIDs: ["sku", "category", "brand", "spec_hash"],
                                         itemDense: content + ["price", "rating"]), true),
            ("beauty", PluginSchema(contextIDs: ["user_id", "skin_type"], contextDense: ["activity_z"],
                                    itemIDs: ["product_id", "line_id", "brand_id"],
                                    itemDense: content + ["price_cents"]), true),
        ]
        for (name, raw, postprocess) in expected {
            let plugin = try load(name, dir)
            #expect(plugin.name == name)
            #expect(plugin.scene == name)
            #expect(!plugin.summary.isEmpty)
            #expect(plugin.raw == raw, "\(name)")
            #expect(plugin.hasPostprocess == postprocess, "\(name)")
            #expect(plugin.canonical.contextIDs == ["user"])
            #expect(plugin.canonical.itemIDs == ["item", "category", "brand"])
            #expect(plugin.canonical.contextDense.count == Self.backbone.contextDense)
            #expect(plugin.canonical.itemDense.count == Self.backbone.itemDense)
            #expect(plugin.path == dir.path + "/\(name).so")
        }
    }

    @Test func fixturePluginsAreRefusedWithTheirReason() throws {
        let dir = try PluginDirectory()
        let cases: [(name: String, reason: String)] = [
            ("bad_abi", "ABI version 99"),
            ("no_entry", "does not export scenescore_plugin_entry"),
            ("failing_create", "create() failed: fixture cannot start: feature store unreachable"),
            ("wrong_counts", "16 item dense values, the backbone expects 17"),
        ]
        for (name, reason) in cases {
            let error = refusal(name, dir)
            #expect(error?.kind == .invalid, "\(name): \(String(describing: error))")
            #expect(error?.message.contains("plugin '\(name)'") == true, "\(String(describing: error))")
            #expect(error?.message.contains(reason) == true, "\(name): '\(String(describing: error))' lacks '\(reason)'")
        }
        // A backbone with other counts refuses even a good plugin, naming the counts.
        var other = Self.backbone
        other.contextDense = 3
        let error = refusal("apparel", dir, backbone: other)
        #expect(error?.kind == .invalid)
        #expect(error?.message.contains("4 context dense values, the backbone expects 3") == true, "\(String(describing: error))")
        #expect(ScenePlugin.liveInstances == 0)
    }

    @Test func namesAndPathsOutsideTheDirectoryAreForbidden() throws {
        let dir = try PluginDirectory()
        for name in ["../x", "a/b", "", "Apparel", "beauty.so", "/etc/passwd", String(repeating: "a", count: 65), "é"] {
            #expect(refusal(name, dir)?.kind == .forbidden, "'\(name)'")
        }
        // A symlink to a library outside the directory is forbidden; one inside is fine.
        let outside = try PluginDirectory()
        try FileManager.default.createSymbolicLink(atPath: dir.path + "/evil.so", withDestinationPath: outside.path + "/beauty.so")
        let evil = refusal("evil", dir)
        #expect(evil?.kind == .forbidden)
        #expect(evil?.message.contains("outside the plugin directory") == true, "\(String(describing: evil))")
        try FileManager.default.createSymbolicLink(atPath: dir.path + "/alias.so", withDestinationPath: "beauty.so")
        #expect(try load("alias", dir).scene == "beauty")
        // Missing files and directories, broken links.
        #expect(refusal("nothere", dir)?.kind == .notFound)
        #expect(refusal("apparel", PluginDirectory(unchecked: dir.path + "/missing"))?.kind == .notFound)
        try FileManager.default.createSymbolicLink(atPath: dir.path + "/broken.so", withDestinationPath: "gone.so")
        #expect(refusal("broken", dir)?.kind == .notFound)
        // A directory or a non-library under the plugin name is not a plugin.
        try FileManager.default.createDirectory(atPath: dir.path + "/folder.so", withIntermediateDirectories: false)
        #expect(refusal("folder", dir)?.kind == .invalid)
        try Data("not an ELF file".utf8).write(to: URL(fileURLWithPath: dir.path + "/text.so"))
        let text = refusal("text", dir)
        #expect(text?.kind == .invalid)
        #expect(text?.message.contains("cannot load text.so") == true, "\(String(describing: text))")
    }

    @Test func badConfigsAreRefusedWithThePluginsMessage() throws {
        let dir = try PluginDirectory()
        let cases: [(name: String, config: String, reason: String)] = [
            ("apparel", #"{"mean_log_price": "3"}"#, "mean_log_price must be a number, not a string"),
            ("apparel", #"{"mean_log_prise": 3}"#, "unknown key 'mean_log_prise'"),
            ("apparel", #"{"activity_log_sigma": 0}"#, "activity_log_sigma 0.0 must be positive"),
            ("electronics", #"{"purchase_weight": 2}"#, "purchase_weight 2.0 must be in 0…1"),
            ("electronics", #"{"scene_index": 1.5}"#, "scene_index must be an integer"),
            ("electronics", #"{"scene_index": 1, "scene_index": 2}"#, "key 'scene_index' repeats"),
            ("electronics", "[1]", "expected a JSON object"),
            ("electronics", #"{"mean_log_price": 4} x"#, "trailing bytes"),
            ("beauty", #"{"click_scale": -1}"#, "click_scale must be positive"),
            ("beauty", #"{"click_scale": 3e38, "click_shift": -1e39}"#, "click_shift -1e+39 is out of the float range"),
            ("beauty", #"{"click_scale": true}"#, "'click_scale' must be a finite number"),
            ("beauty", #"{"colour": 1}"#, "unknown key 'colour'"),
            ("beauty", #"{"scene_index": 1"#, "expected ',' or '}'"),
        ]
        for (name, config, reason) in cases {
            let error = refusal(name, dir, config: config)
            #expect(error?.kind == .invalid, "\(name) \(config)")
            #expect(error?.message.contains("create() failed: config: ") == true && error?.message.contains(reason) == true,
                    "\(name) \(config): '\(String(describing: error))' lacks '\(reason)'")
        }
        // Empty and whitespace-only objects take the defaults.
        _ = try load("apparel", dir, config: "")
        _ = try load("beauty", dir, config: " { } ")
        #expect(ScenePlugin.liveInstances == 0)
    }

    // MARK: Transform

    @Test func knownRawBatchesTransformIntoTheExpectedCanonicalFields() throws {
        let dir = try PluginDirectory()
        for example in Example.all {
            let plugin = try load(example.name, dir, config: example.config)
            let got = try example.raw.transform(with: plugin)
            #expect(got.contextIDs == example.canonical.contextIDs, "\(example.name)")
            #expect(got.itemIDs == example.canonical.itemIDs, "\(example.name)")
            #expect(near(got.contextDense, example.canonical.contextDense), "\(example.name): \(got.contextDense)")
            #expect(near(got.itemDense, example.canonical.itemDense), "\(example.name): \(got.itemDense)")
        }
    }

    @Test func scoringThroughAPluginEqualsScoringTheCanonicalBatch() throws {
        let dir = try PluginDirectory()
        let model = try SmallModel()
        for example in Example.all {
            let plugin = try load(example.name, dir, config: example.config)
            let viaPlugin = try model.score(example.raw.transform(with: plugin))
            let direct = try model.score(example.canonical)
            #expect(viaPlugin.count == example.raw.candidates * 2)
            #expect(near(viaPlugin, direct, tolerance: 1e-6), "\(example.name): \(viaPlugin) vs \(direct)")
            #expect(Set(viaPlugin).count > 1, "scores should differ between candidates")
        }
    }

    @Test func misalignedRawSectionsTransformLikeAlignedOnes() throws {
        let dir = try PluginDirectory()
        for example in Example.all {
            let plugin = try load(example.name, dir, config: example.config)
            let aligned = try example.raw.transform(with: plugin)
            for shift in [1, 2, 3] {
                #expect(try example.raw.transform(with: plugin, misalignedBy: shift) == aligned, "\(example.name) +\(shift)")
            }
        }
    }

    @Test func concurrentTransformsOnOneInstanceAgree() throws {
        let dir = try PluginDirectory()
        let example = Example.all[1]
        let plugin = try load(example.name, dir, config: example.config)
        let expected = try example.raw.transform(with: plugin)
        let results = Locked<[Canonical]>([])
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            for round in 0..<50 {
                if let got = try? example.raw.transform(with: plugin, misalignedBy: (i + round) % 4) {
                    results.withValue { $0.append(got) }
                }
            }
        }
        let all = results.withValue { $0 }
        #expect(all.count == 400)
        #expect(all.allSatisfy { $0 == expected })
    }

    @Test func requestTimeFailuresNameTheProblem() throws {
        let dir = try PluginDirectory()
        let electronics = try load("electronics", dir)
        var raw = Example.all[1].raw
        // The plugin's own check.
        raw.itemDense[1 * 18 + 16] = -5
        var error = transformError(raw, electronics)
        #expect(error?.kind == .failed)
        #expect(error?.message.contains("transform failed: candidate 1: price -5.0 must be positive") == true, "\(String(describing: error))")
        // The loader's finiteness check on what the plugin wrote (content passes through).
        raw = Example.all[1].raw
        raw.itemDense[2 * 18 + 3] = .nan
        error = transformError(raw, electronics)
        #expect(error?.kind == .failed)
        #expect(error?.message.contains("item dense 'content_3' (index 3) of candidate 2") == true, "\(String(describing: error))")
        // An out-of-range local id.
        raw = Example.all[1].raw
        raw.itemIDs[0] = 1_000_000
        #expect(transformError(raw, electronics)?.message.contains("sku 1000000") == true)
        // Raw counts that don't fit the raw schema: validate says what, transform refuses too.
        raw = Example.all[1].raw
        raw.contextIDs = [7]
        let mismatch = raw.withInput { input in #expect(throws: RawSchemaMismatch.self) { try electronics.validate(input) } }
        #expect(mismatch?.description == "context has 1 ids, scene 'electronics' (plugin 'electronics') expects 2 (user_id, device)")
        #expect(transformError(raw, electronics)?.kind == .failed)
        raw = Example.all[1].raw
        raw.itemDense.removeLast(18)
        #expect(raw.withInput { input in #expect(throws: RawSchemaMismatch.self) { try electronics.validate(input) } } != nil)
    }

    // MARK: Postprocess

    @Test func postprocessBlendsAndCalibrates() throws {
        let dir = try PluginDirectory()
        let scores: [Float] = [0.10, 0.02, 0.40, 0.05, 0.90, 0.30]
        // Electronics: column 0 becomes (1 − w)·click + w·purchase.
        let electronics = try load("electronics", dir, config: #"{"purchase_weight": 0.25}"#)
        var out = scores
        try out.withUnsafeMutableBufferPointer { try electronics.postprocess($0, candidates: 3, outputs: ["click", "purchase"]) }
        for c in 0..<3 {
            #expect(abs(out[2 * c] - (0.75 * scores[2 * c] + 0.25 * scores[2 * c + 1])) < 1e-6)
            #expect(out[2 * c + 1] == scores[2 * c + 1])
        }
        // Column order comes from the names; a pre-made name array gives the same result.
        let swapped = PluginOutputNames(["purchase", "click"])
        var viaNames = [scores[1], scores[0], scores[3], scores[2], scores[5], scores[4]]
        try viaNames.withUnsafeMutableBufferPointer { try electronics.postprocess($0, candidates: 3, outputs: swapped) }
        for c in 0..<3 { #expect(abs(viaNames[2 * c] - out[2 * c]) < 1e-6) }
        // A click-only head has nothing to blend; a head without click is refused.
        var clickOnly = scores
        try clickOnly.withUnsafeMutableBufferPointer { try electronics.postprocess($0, candidates: 6, outputs: ["click"]) }
        #expect(clickOnly == scores)
        var missing = scores
        let error = missing.withUnsafeMutableBufferPointer { buffer in
            #expect(throws: PluginError.self) { try electronics.postprocess(buffer, candidates: 3, outputs: ["purchase", "cart"]) }
        }
        #expect(error?.kind == .failed)
        #expect(error?.message.contains("lack 'click'") == true, "\(String(describing: error))")

        // Beauty: Platt recalibration of click, p' = sigmoid(a·logit(p) + b).
        let beauty = try load("beauty", dir, config: #"{"click_scale": 2, "click_shift": -0.5}"#)
        out = scores
        try out.withUnsafeMutableBufferPointer { try beauty.postprocess($0, candidates: 3, outputs: ["click", "purchase"]) }
        for c in 0..<3 {
            let p = Double(scores[2 * c]), z = 2 * log(p / (1 - p)) - 0.5
            #expect(abs(Double(out[2 * c]) - 1 / (1 + exp(-z))) < 1e-5)
            #expect(out[2 * c + 1] == scores[2 * c + 1])
        }
        // Apparel has none: scores are untouched.
        let apparel = try load("apparel", dir)
        out = scores
        try out.withUnsafeMutableBufferPointer { try apparel.postprocess($0, candidates: 3, outputs: ["click", "purchase"]) }
        #expect(out == scores)
    }

    // MARK: Lifetime

    @Test func aCPluginIsUnmappedAfterItsLastInstanceAndCountsGoBackDown() throws {
        let dir = try PluginDirectory()
        let before = ScenePlugin.liveInstances
        let path = dir.path + "/beauty.so"
        #expect(!mapped(path))
        var first: ScenePlugin? = try load("beauty", dir)
        var second: ScenePlugin? = try load("beauty", dir)
        #expect(first?.unloadsWhenReleased == true)
        #expect(ScenePlugin.liveInstances == before + 2)
        #expect(mapped(path))
        #expect(first?.path == path)
        first = nil
        #expect(ScenePlugin.liveInstances == before + 1)
        #expect(mapped(path), "still used by the second instance")
        _ = try Example.all[2].raw.transform(with: second!)
        second = nil
        #expect(ScenePlugin.liveInstances == before)
        #expect(!mapped(path), "dlclose after the last instance should unmap \(path)")
        #expect(second == nil)
        // A Swift plugin counts the same way, but its library stays mapped: it registered with
        // the Swift runtime, which would crash walking an unmapped image.
        let swiftPath = dir.path + "/electronics.so"
        var swift: ScenePlugin? = try load("electronics", dir)
        #expect(swift?.unloadsWhenReleased == false)
        #expect(ScenePlugin.liveInstances == before + 1)
        swift = nil
        #expect(ScenePlugin.liveInstances == before)
        #expect(mapped(swiftPath))
        #expect(swift == nil)
    }

    @Test func aReplacedLibraryIsRefusedWhileItsOldBuildIsLoaded() throws {
        let dir = try PluginDirectory()
        // Replace like install-plugins.sh does: a new file renamed over the old name.
        func replace(_ name: String, with other: String) throws {
            try FileManager.default.copyItem(atPath: dir.path + "/\(other).so", toPath: dir.path + "/.new.so")
            guard rename(dir.path + "/.new.so", dir.path + "/\(name).so") == 0 else {
                throw PluginTestFailure(description: "rename failed: errno \(errno)")
            }
        }
        var old: ScenePlugin? = try load("beauty", dir)
        try replace("beauty", with: "failing_create")
        let refused = refusal("beauty", dir)
        #expect(refused?.kind == .invalid)
        #expect(refused?.message.contains("was replaced while its previous build is still loaded") == true, "\(String(describing: refused))")
        // Once the old build is gone, the new file is what loads (this one's create() fails).
        #expect(old?.scene == "beauty")
        old = nil
        #expect(refusal("beauty", dir)?.message.contains("feature store unreachable") == true)
        // A Swift library never unloads, so a replaced one is refused for good.
        _ = try load("electronics", dir)
        try replace("electronics", with: "apparel")
        #expect(refusal("electronics", dir)?.message.contains("a Swift library stays loaded") == true)
    }

    // MARK: Helpers

    func load(_ name: String, _ dir: PluginDirectory, config: String = "{}", backbone: BackboneSpec = backbone) throws -> ScenePlugin {
        try ScenePlugin.load(name: name, directory: dir.path, configJSON: config, canonical: backbone)
    }

    func refusal(_ name: String, _ dir: PluginDirectory, config: String = "{}", backbone: BackboneSpec = backbone) -> PluginError? {
        do {
            _ = try ScenePlugin.load(name: name, directory: dir.path, configJSON: config, canonical: backbone)
            return nil
        } catch {
            return error
        }
    }

    func transformError(_ raw: Raw, _ plugin: ScenePlugin) -> PluginError? {
        do {
            _ = try raw.transform(with: plugin)
            return nil
        } catch let error as PluginError {
            return error
        } catch {
            return nil
        }
    }

    /// Whether `path` is mapped into this process. /proc files report size 0, so they are read
    /// to the end rather than by their size.
    func mapped(_ path: String) -> Bool {
        guard let file = fopen("/proc/self/maps", "r") else { return false }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let got = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
            if got == 0 { break }
            bytes += chunk[0..<got]
        }
        return String(decoding: bytes, as: UTF8.self).contains(path)
    }
}

func near(_ a: [Float], _ b: [Float], tolerance: Float = 1e-6) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= tolerance * max(1, abs($1)) }
}

/// A temporary plugin directory holding the built libraries under their install names, as
/// scripts/install-plugins.sh lays them out (plus the test fixtures); removed on deinit.
final class PluginDirectory {
    let path: String
    private let owned: Bool

    static let installNames = [
        "ApparelPlugin": "apparel", "ElectronicsPlugin": "electronics", "BeautyPlugin": "beauty",
        "PluginFixtureBadABI": "bad_abi", "PluginFixtureNoEntry": "no_entry",
        "PluginFixtureFailingCreate": "failing_create", "PluginFixtureWrongCounts": "wrong_counts",
    ]

    /// The build products directory: the test executable's (SwiftPM puts the libraries next to
    /// it), or SCENESCORE_PLUGIN_BUILD_DIR.
    static let productsDirectory: String = {
        if let dir = ProcessInfo.processInfo.environment["SCENESCORE_PLUGIN_BUILD_DIR"] { return dir }
        var url = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 where !FileManager.default.fileExists(atPath: url.path + "/libApparelPlugin.so") {
            url.deleteLastPathComponent()
        }
        return url.path
    }()

    init() throws {
        path = URL(fileURLWithPath: NSTemporaryDirectory() + "scenescore-plugins-" + UUID().uuidString)
            .resolvingSymlinksInPath().path
        owned = true
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        for (library, name) in Self.installNames {
            let source = Self.productsDirectory + "/lib\(library).so"
            guard FileManager.default.fileExists(atPath: source) else {
                throw PluginTestFailure(description: "\(source) is missing: build with `swift build --build-tests` first")
            }
            try FileManager.default.copyItem(atPath: source, toPath: path + "/\(name).so")
        }
    }

    /// A path that is not created (for not-found tests).
    init(unchecked path: String) { self.path = path; owned = false }

    deinit { if owned { try? FileManager.default.removeItem(atPath: path) } }
}

struct PluginTestFailure: Error, CustomStringConvertible { let description: String }

final class Locked<Value>: @unchecked Sendable {
    private var value: Value
    private let lock = NSLock()
    init(_ value: Value) { self.value = value }
    func withValue<R>(_ body: (inout Value) -> R) -> R { lock.withLock { body(&value) } }
}

/// The four canonical sections a transform wrote.
struct Canonical: Equatable {
    var contextIDs: [UInt32]
    var contextDense: [Float]
    var itemIDs: [UInt32]
    var itemDense: [Float]
    var candidates: Int { itemIDs.count / 3 }

    func withInput<R>(_ body: (ScoringInput) throws -> R) rethrows -> R {
        try contextIDs.withUnsafeBytes { a in try contextDense.withUnsafeBytes { b in
            try itemIDs.withUnsafeBytes { c in try itemDense.withUnsafeBytes { d in
                try body(ScoringInput(candidates: candidates, contextIDs: a, contextDense: b, itemIDs: c, itemDense: d))
            } }
        } }
    }
}

/// One raw request in a plugin's raw schema.
struct Raw {
    var candidates: Int
    var contextIDs: [UInt32]
    var contextDense: [Float]
    var itemIDs: [UInt32]
    var itemDense: [Float]

    func withInput<R>(_ body: (ScoringInput) throws -> R) rethrows -> R {
        try contextIDs.withUnsafeBytes { a in try contextDense.withUnsafeBytes { b in
            try itemIDs.withUnsafeBytes { c in try itemDense.withUnsafeBytes { d in
                try body(ScoringInput(candidates: candidates, contextIDs: a, contextDense: b, itemIDs: c, itemDense: d))
            } }
        } }
    }

    /// Transforms through `plugin`, with every section at an offset ≡ `shift` (mod 4) in one
    /// byte buffer when `shift` is not 0.
    func transform(with plugin: ScenePlugin, misalignedBy shift: Int = 0) throws -> Canonical {
        let spec = DefaultModel.backboneSpec
        // Four separate arrays: nested mutable accesses to one struct's fields would overlap.
        var contextIDs = [UInt32](repeating: 0, count: spec.contextFields.count)
        var contextDense = [Float](repeating: -1, count: spec.contextDense)
        var itemIDs = [UInt32](repeating: 0, count: candidates * spec.itemFields.count)
        var itemDense = [Float](repeating: -1, count: candidates * spec.itemDense)
        let run = { (input: ScoringInput) throws in
            try contextIDs.withUnsafeMutableBufferPointer { a in try contextDense.withUnsafeMutableBufferPointer { b in
                try itemIDs.withUnsafeMutableBufferPointer { c in try itemDense.withUnsafeMutableBufferPointer { d in
                    try plugin.transform(input, contextIDs: a.baseAddress!, contextDense: b.baseAddress!,
                                         itemIDs: c.baseAddress!, itemDense: d.baseAddress!)
                } }
            } }
        }
        var out: Canonical { Canonical(contextIDs: contextIDs, contextDense: contextDense, itemIDs: itemIDs, itemDense: itemDense) }
        if shift == 0 {
            try withInput(run)
            return out
        }
        // One body: each section starts `shift` bytes past a multiple of 8.
        var bytes: [UInt8] = []
        var ranges: [Range<Int>] = []
        func append<T>(_ values: [T]) {
            while bytes.count % 8 != shift { bytes.append(0xAB) }
            let start = bytes.count
            values.withUnsafeBytes { bytes += $0 }
            ranges.append(start..<bytes.count)
        }
        append(self.contextIDs); append(self.contextDense); append(self.itemIDs); append(self.itemDense)
        try bytes.withUnsafeBytes { body in
            let section = { (i: Int) in UnsafeRawBufferPointer(rebasing: body[ranges[i]]) }
            try run(ScoringInput(candidates: candidates, contextIDs: section(0), contextDense: section(1),
                                 itemIDs: section(2), itemDense: section(3)))
        }
        return out
    }
}

/// A raw batch of each bundled plugin and the canonical batch its documented mapping gives,
/// computed here independently of the plugins (Plugins/README.md).
struct Example {
    let name: String
    let config: String
    let raw: Raw
    let canonical: Canonical

    static let all: [Example] = [apparel, electronics, beauty]

    static func content(_ c: Int) -> [Float] { (0..<16).map { (k: Int) -> Float in Float((k * 7 + c * 3) % 11) / 5 - 1 } }

    /// scene 0; style/colour/size variants fold to the style; paid price = list × (1 − discount).
    static let apparel: Example = {
        let styles: [UInt32] = [12, 4_999, 12], categories: [UInt32] = [3, 19, 3], brands: [UInt32] = [31, 199, 31]
        let list: [Float] = [40, 120, 40], discount: [Float] = [0, 0.25, 0.5]
        let raw = Raw(candidates: 3, contextIDs: [777], contextDense: [0.8],
                      itemIDs: (0..<3).flatMap { i -> [UInt32] in [styles[i], categories[i], brands[i], UInt32(i + 1), UInt32(40 + i)] },
                      itemDense: (0..<3).flatMap { i -> [Float] in content(i) + [list[i], discount[i]] })
        let canonical = Canonical(
            contextIDs: [777], contextDense: [Float((0.8 - 0.2) / 0.5), 0, 0, 0],
            itemIDs: (0..<3).flatMap { i -> [UInt32] in [styles[i], categories[i], brands[i]] },
            itemDense: (0..<3).flatMap { i -> [Float] in
                let paid: Double = Double(list[i]) * (1 - Double(discount[i]))
                return content(i) + [Float(log(paid) - 3.2)]
            })
        return Example(name: "apparel", config: #"{"mean_log_price": 3.2, "activity_log_mean": 0.2, "activity_log_sigma": 0.5}"#,
                       raw: raw, canonical: canonical)
    }()

    /// scene 2 (configured); sku 0xFFFFFFFF falls back to the spec hash; price in currency.
    static let electronics: Example = {
        let skus: [UInt32] = [17, .max, 2_999, 0], specs: [UInt32] = [5, 123_456_789, 9, 9]
        let categories: [UInt32] = [1, 14, 7, 0], brands: [UInt32] = [10, 149, 70, 0]
        let prices: [Float] = [99, 1_499, 250, 12.5]
        let raw = Raw(candidates: 4, contextIDs: [4242, 1], contextDense: [12],
                      itemIDs: (0..<4).flatMap { i -> [UInt32] in [skus[i], categories[i], brands[i], specs[i]] },
                      itemDense: (0..<4).flatMap { i -> [Float] in content(i) + [prices[i], 4.5] })
        let items: [UInt32] = [2_000_017, 2_456_789, 2_002_999, 2_000_000]
        let canonical = Canonical(
            contextIDs: [4242], contextDense: [Float((log(13.0) - 1.5) / 2), 0, 0, 0],
            itemIDs: (0..<4).flatMap { i -> [UInt32] in [items[i], 2_000 + categories[i], 200_000 + brands[i]] },
            itemDense: (0..<4).flatMap { i -> [Float] in content(i) + [Float(log(Double(prices[i])) - 4.5)] })
        return Example(name: "electronics", config: #"{"scene_index": 2, "mean_log_price": 4.5, "log_sessions_sigma": 2}"#,
                       raw: raw, canonical: canonical)
    }()

    /// scene 1 (default); price in cents.
    static let beauty: Example = {
        let products: [UInt32] = [0, 4_321], lines: [UInt32] = [5, 19], brands: [UInt32] = [55, 190]
        let cents: [Float] = [1_299, 450]
        let raw = Raw(candidates: 2, contextIDs: [99, 3], contextDense: [-1.25],
                      itemIDs: (0..<2).flatMap { i -> [UInt32] in [products[i], lines[i], brands[i]] },
                      itemDense: (0..<2).flatMap { i -> [Float] in content(i) + [cents[i]] })
        let canonical = Canonical(
            contextIDs: [99], contextDense: [-1.25, 0, 0, 0],
            itemIDs: (0..<2).flatMap { i -> [UInt32] in [1_000_000 + products[i], 1_000 + lines[i], 100_000 + brands[i]] },
            itemDense: (0..<2).flatMap { i -> [Float] in content(i) + [Float(log(Double(cents[i]) / 100) - 2.5)] })
        return Example(name: "beauty", config: "{}", raw: raw, canonical: canonical)
    }()
}

/// A small seeded random model with the default backbone's field counts.
struct SmallModel {
    let backbone: Backbone
    let head: AdapterHead

    init() throws {
        let dir = NSTemporaryDirectory() + "scenescore-plugin-model-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let spec = BackboneSpec(contextFields: [FieldSpec(name: "user", vocab: 1024, dim: 8)], contextDense: 4,
                                itemFields: [FieldSpec(name: "item", vocab: 4096, dim: 8), FieldSpec(name: "category", vocab: 256, dim: 4),
                                             FieldSpec(name: "brand", vocab: 512, dim: 4)],
                                itemDense: 17, hidden: [32, 16])
        try DefaultModel.writeBackbone(spec, seed: 7, to: dir + "/backbone.safetensors")
        backbone = try Backbone(path: dir + "/backbone.safetensors")
        try DefaultModel.writeHead(HeadSpec(scene: "s", version: "s-1", input: 16, bottleneck: 4, tower: [8],
                                            outputs: ["click", "purchase"]), seed: 8, to: dir + "/head.safetensors")
        head = try AdapterHead(path: dir + "/head.safetensors", backbone: spec)
    }

    func score(_ batch: Canonical) throws -> [Float] {
        try batch.withInput { input in
            try Forward.validate(input, against: backbone.spec)
            var out = [Float](repeating: .nan, count: batch.candidates * head.spec.outputs.count)
            out.withUnsafeMutableBufferPointer {
                Forward.score(input, backbone: backbone, head: head, workspace: ForwardWorkspace(), into: $0)
            }
            return out
        }
    }
}
