import Foundation
import Model
import NIOPosix
import Scenes

// What the targets share, made once per process: a scratch directory, the small and the
// default model, the bundled plugins installed into a plugin directory, one event loop.
// Made on first use (the fuzzer's first input), never per input.

/// An invariant of the code under test does not hold: stop with a message the crash
/// report and the regression test both show.
func require(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
             file: StaticString = #fileID, line: UInt = #line) {
    if !condition() { fatalError("fuzz invariant: \(message())", file: file, line: line) }
}

/// With SCENESCORE_FUZZ_VERBOSE set, says what an input did (to check that seeds reach the
/// paths they were made for); silent otherwise, as a fuzzer needs it.
func trace(_ message: @autoclosure () -> String) {
    // Unbuffered: a finding ends the process before stdout would be flushed.
    if FuzzEnvironment.verbose { FileHandle.standardError.write(Data((message() + "\n").utf8)) }
}

enum FuzzEnvironment {
    static let verbose = ProcessInfo.processInfo.environment["SCENESCORE_FUZZ_VERBOSE"] != nil

    /// Per-process scratch: on tmpfs when there is one, since the admin and server targets
    /// fsync every state-directory write. Removed at exit.
    static let scratch: String = {
        let dir = scratchPath()
        try? FileManager.default.removeItem(atPath: dir)
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: FuzzEnvironment.scratchPath()) }
        return dir
    }()

    // atexit takes a C function pointer, which cannot capture `scratch`: recompute its name.
    private static func scratchPath() -> String {
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        return base + "/scenescore-fuzz-\(getpid())"
    }

    /// One loop for the in-memory connections and their deferred responses.
    static let eventLoop = MultiThreadedEventLoopGroup(numberOfThreads: 1).next()

    /// The plugin directory: the bundled plugins, copied as `<scene>.so` (as
    /// scripts/install-plugins.sh installs them) from the build products directory: the
    /// executable's (SwiftPM puts the libraries next to it) or SCENESCORE_PLUGIN_BUILD_DIR.
    static let pluginDirectory: String = {
        let dir = scratch + "/plugins"
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for (library, name) in bundledPlugins {
            let source = productsDirectory + "/lib\(library).so"
            guard FileManager.default.fileExists(atPath: source) else {
                fatalError("\(source) is missing: build the plugin products first (scripts/fuzz.sh does)")
            }
            try! FileManager.default.copyItem(atPath: source, toPath: dir + "/\(name).so")
            // libFuzzer keeps the coverage counters of every instrumented library it saw, and
            // reads them after each input: a library unmapped by dlclose() (the loader unloads
            // a C plugin with its last instance) would crash it. RTLD_NODELETE keeps each copy
            // mapped for the process; the loader's own dlopen and dlclose of it work as ever.
            precondition(dlopen(dir + "/\(name).so", RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) != nil,
                         "cannot load \(name).so: \(String(cString: dlerror()))")
        }
        return dir
    }()

    static let bundledPlugins = ["ApparelPlugin": "apparel", "ElectronicsPlugin": "electronics", "BeautyPlugin": "beauty"]

    static let productsDirectory: String = {
        if let dir = ProcessInfo.processInfo.environment["SCENESCORE_PLUGIN_BUILD_DIR"] { return dir }
        var url = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 where !FileManager.default.fileExists(atPath: url.path + "/libApparelPlugin.so") {
            url.deleteLastPathComponent()
        }
        return url.path
    }()
}

/// The models the targets load: a small one (the default model's fields and counts, so the
/// bundled plugins fit it, with tiny tables and layers: its files are a few KB, which keeps
/// seed inputs small and loads cheap) and the default model as `scenescore model init --random`
/// writes it.
public enum FuzzModels {
    /// The default backbone's fields, counts and names, in miniature.
    public static let smallBackboneSpec = BackboneSpec(
        contextFields: [FieldSpec(name: "user", vocab: 97, dim: 4)], contextDense: 4,
        itemFields: [FieldSpec(name: "item", vocab: 101, dim: 4), FieldSpec(name: "category", vocab: 13, dim: 2),
                     FieldSpec(name: "brand", vocab: 17, dim: 2)],
        itemDense: 17, hidden: [16, 8])

    /// A head for the small backbone.
    public static func smallHeadSpec(scene: String, version: String) -> HeadSpec {
        HeadSpec(scene: scene, version: version, input: smallBackboneSpec.outputWidth, bottleneck: 4, tower: [8],
                 outputs: ["click", "purchase"])
    }

    /// The small model's directory: backbone.safetensors and heads/<scene>.safetensors for the
    /// default model's scenes.
    static let smallModelDirectory: String = {
        let dir = FuzzEnvironment.scratch + "/small-model"
        try! FileManager.default.createDirectory(atPath: dir + "/heads", withIntermediateDirectories: true)
        try! DefaultModel.writeBackbone(smallBackboneSpec, seed: 7, to: dir + "/backbone.safetensors")
        for (i, scene) in DefaultModel.scenes.enumerated() {
            try! DefaultModel.writeHead(smallHeadSpec(scene: scene, version: "\(scene)-1"), seed: UInt64(11 + i),
                                        to: dir + "/heads/\(scene).safetensors")
        }
        return dir
    }()

    static let smallBackbone: Backbone = try! Backbone(path: smallModelDirectory + "/backbone.safetensors")

    /// The served model: SCENESCORE_FUZZ_MODEL_DIR (e.g. var/models/default after
    /// `scenescore model init`) or the default model with seeded random weights.
    static let servedModelDirectory: String = {
        if let dir = ProcessInfo.processInfo.environment["SCENESCORE_FUZZ_MODEL_DIR"] { return dir }
        let dir = FuzzEnvironment.scratch + "/default-model"
        try! DefaultModel.write(to: dir)
        return dir
    }()
}
