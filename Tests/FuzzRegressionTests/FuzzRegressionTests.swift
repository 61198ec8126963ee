import Foundation
import FuzzTargets
import Testing

/// Replays every committed fuzz input through its target's entry function, as the fuzzer runs
/// it: the seed corpora (Tests/Fuzz/corpus/TARGET) and the minimised inputs of every crash
/// found and fixed (Tests/Fuzz/regressions/TARGET).
///
/// Each target replays in a process of its own, the `scenescore-fuzz` executable of the same
/// build (its ordinary main replays files through `FuzzTargets`): a finding that comes back ends
/// that process, not the test run, and fails the test with its message; and the targets'
/// process-wide fixtures (a registry, plugin instances) stay out of this process, whose other
/// suites count live plugin instances and head versions.
@Suite struct FuzzRegressionTests {
    static let fuzzDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fuzz").path

    /// The build products directory: the test executable's, where SwiftPM also puts executables.
    static let executable: String = {
        var url = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 where !FileManager.default.fileExists(atPath: url.path + "/scenescore-fuzz") {
            url.deleteLastPathComponent()
        }
        return url.path + "/scenescore-fuzz"
    }()

    static func inputs(_ kind: String, _ target: String) -> [String] {
        let dir = fuzzDirectory + "/\(kind)/\(target)"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return names.filter { !$0.hasPrefix(".") }.sorted().map { dir + "/" + $0 }
    }

    @Test(arguments: FuzzTargets.all.map(\.name))
    func replay(target name: String) throws {
        let seeds = Self.inputs("corpus", name)
        #expect(seeds.count >= 3, "\(name): the seed corpus has \(seeds.count) files")
        #expect(FileManager.default.fileExists(atPath: Self.fuzzDirectory + "/dict/\(name).dict"), "\(name): no dictionary")
        let files = seeds + Self.inputs("regressions", name)
        try #require(FileManager.default.isExecutableFile(atPath: Self.executable),
                     "\(Self.executable) is missing: build with `swift build --build-tests` first")

        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.executable)
        process.arguments = [name] + files
        var environment = ProcessInfo.processInfo.environment
        environment["SWIFT_BACKTRACE"] = "enable=no"  // a finding is reported at once, not after 30 s
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let tail = text.split(separator: "\n").suffix(12).joined(separator: "\n")
        #expect(process.terminationReason == .exit && process.terminationStatus == 0, "\(name): \(tail)")
        #expect(text.contains("\(name): \(files.count) inputs replayed, no finding"), "\(name): \(tail)")
    }

    @Test func everyCorpusDirectoryNamesATarget() throws {
        for kind in ["corpus", "regressions"] {
            let dirs = (try? FileManager.default.contentsOfDirectory(atPath: Self.fuzzDirectory + "/" + kind)) ?? []
            for dir in dirs { #expect(FuzzTargets.named(dir) != nil, "Tests/Fuzz/\(kind)/\(dir) names no target") }
        }
    }
}
