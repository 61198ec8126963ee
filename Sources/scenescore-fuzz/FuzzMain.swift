import CShims
import FuzzTargets
import Foundation

// The one fuzz executable, for every target (one link keeps the build short).
//
// Every build's binary replays files through a target (the regression tests run it):
//   scenescore-fuzz TARGET FILE|DIR...      scenescore-fuzz --list
// scripts/fuzz.sh builds it in the AddressSanitizer build (.build-asan, with coverage
// instrumentation) with SCENESCORE_LIBFUZZER set: then it links libFuzzer without libFuzzer's
// main (Package.swift) and is compiled with -DSCENESCORE_FUZZING, and when SCENESCORE_FUZZ_TARGET
// names a target, main hands it to LLVMFuzzerRunDriver with the command line as libFuzzer's.

@main
struct FuzzMain {
    static func main() {
        #if SCENESCORE_FUZZING
        if let name = ProcessInfo.processInfo.environment["SCENESCORE_FUZZ_TARGET"] { exit(fuzz(name)) }
        #endif
        replay()
    }
}

#if SCENESCORE_FUZZING

nonisolated(unsafe) private var selected: FuzzTarget?

/// Runs libFuzzer on a target.
private func fuzz(_ name: String) -> Int32 {
    guard let target = FuzzTargets.named(name) else {
        FileHandle.standardError.write(Data("SCENESCORE_FUZZ_TARGET='\(name)' names no target; targets: \(FuzzTargets.all.map(\.name).joined(separator: ", "))\n".utf8))
        return 2
    }
    selected = target
    // An empty input first: the targets make their fixtures (models, registry, plugins) on
    // first use, which must not count against the first real input's time.
    target(UnsafeRawBufferPointer(start: nil, count: 0))
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in
        selected!(UnsafeRawBufferPointer(start: data, count: size))
        return 0
    }
}

#endif

/// Replays files or directories of inputs through one target, with no fuzzing.
private func replay() {
    let arguments = Array(CommandLine.arguments.dropFirst())
    if arguments.first == "--list" || arguments.isEmpty {
        print("usage: scenescore-fuzz TARGET FILE|DIR...   (replays inputs; scripts/fuzz.sh fuzzes)")
        for target in FuzzTargets.all { print("  \(target.name.padding(toLength: 12, withPad: " ", startingAt: 0)) \(target.summary)") }
        exit(arguments.isEmpty ? 2 : 0)
    }
    guard let target = FuzzTargets.named(arguments[0]) else {
        FileHandle.standardError.write(Data("no target '\(arguments[0])'; --list lists them\n".utf8))
        exit(2)
    }
    var count = 0
    for path in arguments.dropFirst() {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            FileHandle.standardError.write(Data("\(path): no such file\n".utf8))
            exit(2)
        }
        let files = isDirectory.boolValue
            ? ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { path + "/" + $0 }
            : [path]
        for file in files {
            let bytes = FileManager.default.contents(atPath: file) ?? Data()
            print("\(target.name): \(file) (\(bytes.count) bytes)")
            bytes.withUnsafeBytes { target($0) }
            count += 1
        }
    }
    print("\(target.name): \(count) inputs replayed, no finding")
}
