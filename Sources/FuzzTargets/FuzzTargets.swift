// One entry function per input boundary, each taking one input as libFuzzer hands it over.
// The fuzz executable (Sources/scenescore-fuzz) picks one by name; the regression tests
// (Tests/FuzzRegressionTests) replay the committed corpora through the same functions.
//
// A target runs the real code on the input. An error the code throws is an expected outcome;
// a crash, a sanitizer report or a failed invariant (`require`) is a finding.

/// A fuzz target: its name (the corpus and dictionary directories are named after it), what it
/// feeds, and its entry function.
public struct FuzzTarget: Sendable {
    public let name: String
    public let summary: String
    public let run: @Sendable (UnsafeRawBufferPointer) -> Void

    /// Runs one input.
    public func callAsFunction(_ input: UnsafeRawBufferPointer) { run(input) }
}

public enum FuzzTargets {
    public static let all: [FuzzTarget] = [
        FuzzTarget(name: "wire-binary", summary: "binary request bodies (Wire: decodeBinaryRequest)", run: fuzzBinaryRequest),
        FuzzTarget(name: "wire-json", summary: "JSON request bodies (Wire: decodeJSONRequest)", run: fuzzJSONRequest),
        FuzzTarget(name: "safetensors", summary: "safetensors files, and heads and backbones loaded from them (Model)", run: fuzzSafeTensors),
        FuzzTarget(name: "npy", summary: ".npy arrays, float32 and uint32 (Training: NumpyArray)", run: fuzzNumpy),
        FuzzTarget(name: "h2-server", summary: "h2c client byte streams: nghttp2 session, routes, scoring with plugins (H2, Server)", run: fuzzH2Server),
        FuzzTarget(name: "plugins", summary: "raw sections, scores and configs through the bundled plugins (Scenes)", run: fuzzPlugins),
        FuzzTarget(name: "admin", summary: "admin API requests: head uploads, labels, rollback, removal (Server: AdminApp)", run: fuzzAdmin),
    ]

    public static func named(_ name: String) -> FuzzTarget? { all.first { $0.name == name } }
}
