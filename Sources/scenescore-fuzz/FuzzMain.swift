import FuzzTargets
import Foundation

// The one fuzz executable, for every target (one link keeps the build short).
//
// Built by scripts/fuzz.sh with libFuzzer, AddressSanitizer and -DSCENESCORE_FUZZING:
// libFuzzer provides main() and calls the two functions below; SCENESCORE_FUZZ_TARGET names the
// target. In an ordinary build (no SCENESCORE_FUZZING, e.g. `swift build --build-tests`, which
// builds every target) it has a main of its own that replays files through a target:
//   scenescore-fuzz TARGET FILE|DIR...      scenescore-fuzz --list

#if SCENESCORE_FUZZING

nonisolated(unsafe) private var selected: FuzzTarget?

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<Int32>,
                           _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> Int32 {
    let name = ProcessInfo.processInfo.environment["SCENESCORE_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTargets.named(name) else {
        FileHandle.standardError.write(Data("SCENESCORE_FUZZ_TARGET='\(name)' names no target; targets: \(FuzzTargets.all.map(\.name).joined(separator: ", "))\n".utf8))
        exit(2)
    }
    selected = target
    // An empty input first: the targets make their fixtures (models, registry, plugins) on
    // first use, which must not count against the first real input's time.
    target(UnsafeRawBufferPointer(start: nil, count: 0))
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    selected!(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

#else

@main
struct Replay {
    static func main() {
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
}

#endif
