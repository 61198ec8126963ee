import Foundation
import FuzzTargets
import Testing

/// Replays every committed fuzz input through its target's entry function, as the fuzzer runs
/// it: the seed corpora (Tests/Fuzz/corpus/TARGET) and the minimised inputs of every crash
/// found and fixed (Tests/Fuzz/regressions/TARGET). A finding that comes back crashes this
/// test process with the invariant's message (or a sanitizer-free trap), naming the target.
///
/// Serialized: the targets share process-wide fixtures (a scratch directory, one event loop).
@Suite(.serialized) struct FuzzRegressionTests {
    static let fuzzDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fuzz").path

    static func inputs(_ kind: String, _ target: String) -> [String] {
        let dir = fuzzDirectory + "/\(kind)/\(target)"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return names.filter { !$0.hasPrefix(".") }.sorted().map { dir + "/" + $0 }
    }

    @Test(arguments: FuzzTargets.all.map(\.name))
    func replay(target name: String) throws {
        let target = try #require(FuzzTargets.named(name))
        let seeds = Self.inputs("corpus", name)
        #expect(seeds.count >= 3, "\(name): the seed corpus has \(seeds.count) files")
        #expect(FileManager.default.fileExists(atPath: Self.fuzzDirectory + "/dict/\(name).dict"), "\(name): no dictionary")
        for file in seeds + Self.inputs("regressions", name) {
            let bytes = try #require(FileManager.default.contents(atPath: file), "\(file) cannot be read")
            bytes.withUnsafeBytes { target($0) }
        }
    }

    @Test func everyCorpusDirectoryNamesATarget() throws {
        for kind in ["corpus", "regressions"] {
            let dirs = (try? FileManager.default.contentsOfDirectory(atPath: Self.fuzzDirectory + "/" + kind)) ?? []
            for dir in dirs { #expect(FuzzTargets.named(dir) != nil, "Tests/Fuzz/\(kind)/\(dir) names no target") }
        }
    }
}
