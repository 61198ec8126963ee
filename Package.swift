// swift-tools-version: 6.0
import PackageDescription
import Foundation

// The SIMD kernel only becomes vector code when the compiler may use the vector ISA: without
// a target CPU, SIMD16<Float>.addProduct lowers to 16 scalar fmaf calls. Haswell (AVX2 + FMA,
// the x86-64-v3 level) is the default: on AMD Zen 4 the 512-bit FMAs are double-pumped 256-bit
// ones, so it loses no peak there and still runs on every AVX2 server. SCENESCORE_TARGET_CPU
// (any LLVM CPU name, e.g. znver4, skylake-avx512) overrides it; the binary checks the running
// CPU against the level it was built for at start-up (Sources/scenescore/CPUFeatures.swift).
let targetCPU = ProcessInfo.processInfo.environment["SCENESCORE_TARGET_CPU"] ?? "haswell"
let avx512CPUs: Set<String> = ["skylake-avx512", "skx", "cascadelake", "cooperlake", "icelake-server",
                               "icelake-client", "tigerlake", "sapphirerapids", "emeraldrapids",
                               "graniterapids", "znver4", "znver5"]
let vectorISA: [SwiftSetting] = [
    .unsafeFlags(["-target-cpu", targetCPU], .when(platforms: [.linux])),
    .define("SCENESCORE_AVX2", .when(platforms: [.linux])),
] + (avx512CPUs.contains(targetCPU) ? [.define("SCENESCORE_AVX512", .when(platforms: [.linux]))] : [])

// libFuzzer without its main (the toolchain's libclang_rt.fuzzer_no_main archive), linked into
// the fuzz executable when scripts/fuzz.sh and scripts/sanitizers.sh set it.
let libFuzzer = ProcessInfo.processInfo.environment["SCENESCORE_LIBFUZZER"]

// Scene plugins (C ABI): swiftc links the Swift runtime's image registration (swiftrt.o) into
// every library it links, C ones too, and an image registered with the Swift runtime must never
// be unmapped. -nostartfiles leaves it out, so a C plugin is a plain C library that dlclose()
// can unload (the loader pins libraries that carry Swift metadata: Sources/Scenes/PluginLoader.swift).
let plainCPlugin: [LinkerSetting] = [.unsafeFlags(["-nostartfiles"], .when(platforms: [.linux]))]

// Numeric code is optimised in debug builds too: unoptimised SIMD and array code runs a
// hundred times slower, which would turn the training tests (a few seconds of real training)
// into an hour.
let numericISA: [SwiftSetting] = vectorISA + [.unsafeFlags(["-O"], .when(configuration: .debug))]

// The AVX-512 GEMM loop (Sources/KernelsAVX512) is compiled for an AVX-512 CPU whatever the
// rest of the binary targets, and runs only where the CPU has it (Sources/Kernels/KernelISA.swift).
let avx512KernelCPU = avx512CPUs.contains(targetCPU) ? targetCPU : "skylake-avx512"
let avx512ISA: [SwiftSetting] = [
    .unsafeFlags(["-target-cpu", avx512KernelCPU], .when(platforms: [.linux])),
    .unsafeFlags(["-O"], .when(configuration: .debug)),
]

let package = Package(
    name: "SceneScore",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "scenescore", targets: ["scenescore"]),
        // Scene plugins (C ABI): the bundled plugins and the loader's test fixtures, each a
        // shared library (lib<Name>.so); scripts/install-plugins.sh copies the bundled ones into
        // a plugin directory as <scene>.so.
        .library(name: "ApparelPlugin", type: .dynamic, targets: ["ApparelPlugin"]),
        .library(name: "ElectronicsPlugin", type: .dynamic, targets: ["ElectronicsPlugin"]),
        .library(name: "BeautyPlugin", type: .dynamic, targets: ["BeautyPlugin"]),
        .library(name: "PluginFixtureBadABI", type: .dynamic, targets: ["PluginFixtureBadABI"]),
        .library(name: "PluginFixtureNoEntry", type: .dynamic, targets: ["PluginFixtureNoEntry"]),
        .library(name: "PluginFixtureFailingCreate", type: .dynamic, targets: ["PluginFixtureFailingCreate"]),
        .library(name: "PluginFixtureWrongCounts", type: .dynamic, targets: ["PluginFixtureWrongCounts"]),
        // End scene plugins.
        // Coverage-guided fuzzing (scripts/fuzz.sh): one executable for every target.
        .executable(name: "scenescore-fuzz", targets: ["scenescore-fuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        // Heap allocations counted per request (Tests/AllocationProbe), LD_PRELOADed there only.
        .package(url: "https://github.com/ordo-one/malloc-interposer", from: "1.6.1"),
    ],
    targets: [
        // C libraries from Debian, and the one-line wrappers for macros Swift cannot import.
        .systemLibrary(name: "CNGHTTP2", path: "Sources/CNGHTTP2", pkgConfig: "libnghttp2",
                       providers: [.apt(["libnghttp2-dev"])]),
        .systemLibrary(name: "COpenSSL", path: "Sources/COpenSSL", pkgConfig: "openssl",
                       providers: [.apt(["libssl-dev"])]),
        .target(name: "CShims", dependencies: ["COpenSSL", "CNGHTTP2"], path: "Sources/CShims"),
        // PostgreSQL's own client library (libpq) for the shared registry: a C library from
        // Debian like the two above, so builds (debug, release, each sanitizer, fuzzing) compile
        // no second TLS stack.
        .systemLibrary(name: "CLibPQ", path: "Sources/CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),

        .target(name: "CCPUFeatures", path: "Sources/CCPUFeatures"),

        // The kernel: shared types and inlinable micro-kernels, the AVX-512 loop, and the
        // public GEMM that picks a loop at run time.
        .target(name: "KernelsCore", path: "Sources/KernelsCore", swiftSettings: numericISA),
        .target(name: "KernelsAVX512", dependencies: ["KernelsCore"], path: "Sources/KernelsAVX512", swiftSettings: avx512ISA),
        .target(name: "Kernels", dependencies: ["KernelsCore", "KernelsAVX512", "CCPUFeatures"], path: "Sources/Kernels",
                swiftSettings: numericISA),
        .target(name: "Model", dependencies: ["Kernels", "COpenSSL"], path: "Sources/Model",
                swiftSettings: numericISA),
        .target(name: "Wire", path: "Sources/Wire"),
        .target(name: "H2", dependencies: [
            "CNGHTTP2", "COpenSSL", "CShims",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
        ], path: "Sources/H2"),
        .target(name: "Scenes", dependencies: [
            "Model", "ScenePluginABI", .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ], path: "Sources/Scenes"),
        // The scene registry shared by replicas: PostgreSQL tables + LISTEN/NOTIFY.
        .target(name: "RegistryPostgres", dependencies: ["Scenes", "CLibPQ"], path: "Sources/RegistryPostgres"),
        .target(name: "Server", dependencies: [
            "Kernels", "Model", "Wire", "H2", "Scenes", "RegistryPostgres", "CShims",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ], path: "Sources/Server", swiftSettings: vectorISA),
        .target(name: "Training", dependencies: ["Kernels", "Model"], path: "Sources/Training",
                exclude: ["README.md", "results"], swiftSettings: numericISA),
        .target(name: "Bench", dependencies: ["Kernels", "Model", "Training", "CShims"], path: "Sources/Bench",
                swiftSettings: vectorISA),
        // The bundled load generator (`scenescore load`): HTTP/2 client connections pinned to
        // event loops, closed and open loop, HdrHistogram latencies (Sources/LoadTool).
        .target(name: "LoadTool", dependencies: [
            "H2", "Wire",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Histogram", package: "hdrhistogram-swift"),
        ], path: "Sources/LoadTool"),
        .executableTarget(
            name: "scenescore",
            dependencies: [
                "Kernels", "Model", "Training", "Bench", "CShims", "CCPUFeatures", "Server", "LoadTool",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/scenescore",
            swiftSettings: vectorISA),

        // Scene plugins (C ABI): the header-only ABI target, a Swift helper for plugins written in
        // Swift (linked into each), the bundled plugins, the loader's fixtures and its tests.
        .target(name: "ScenePluginABI", path: "Sources/ScenePluginABI"),
        .target(name: "ScenePluginKit", dependencies: ["ScenePluginABI"], path: "Plugins/Kit"),
        .target(name: "ApparelPlugin", dependencies: ["ScenePluginABI", "ScenePluginKit"], path: "Plugins/apparel"),
        .target(name: "ElectronicsPlugin", dependencies: ["ScenePluginABI", "ScenePluginKit"], path: "Plugins/electronics"),
        .target(name: "BeautyPlugin", dependencies: ["ScenePluginABI"], path: "Plugins/beauty",
                publicHeadersPath: ".", linkerSettings: [.linkedLibrary("m")] + plainCPlugin),
        .target(name: "PluginFixtureBadABI", dependencies: ["ScenePluginABI"], path: "Tests/PluginFixtures/bad_abi",
                publicHeadersPath: ".", linkerSettings: plainCPlugin),
        .target(name: "PluginFixtureNoEntry", dependencies: ["ScenePluginABI"], path: "Tests/PluginFixtures/no_entry",
                publicHeadersPath: ".", linkerSettings: plainCPlugin),
        .target(name: "PluginFixtureFailingCreate", dependencies: ["ScenePluginABI"], path: "Tests/PluginFixtures/failing_create",
                publicHeadersPath: ".", linkerSettings: plainCPlugin),
        .target(name: "PluginFixtureWrongCounts", dependencies: ["ScenePluginABI"], path: "Tests/PluginFixtures/wrong_counts",
                publicHeadersPath: ".", linkerSettings: plainCPlugin),
        .testTarget(name: "ScenesTests", dependencies: ["Scenes", "Model"], path: "Tests/ScenesTests"),
        .testTarget(name: "RegistryPostgresTests", dependencies: ["RegistryPostgres", "Scenes", "Model"], path: "Tests/RegistryPostgresTests"),
        // End scene plugins.

        // Fuzzing: one entry function per input boundary (FuzzTargets, a library so the
        // regression tests replay the committed inputs through exactly what the fuzzer runs) and
        // one executable for all of them, so a fuzz build links once. scripts/fuzz.sh builds it
        // in the AddressSanitizer build with coverage instrumentation and SCENESCORE_LIBFUZZER
        // set: only this executable links libFuzzer (without libFuzzer's main, which would clash
        // with every other executable's), so one instrumented build serves the ASan tests and
        // fuzzing. An ordinary build gives it a main that replays files. The plugin targets load
        // the bundled plugin products with dlopen, from beside the executable.
        .target(name: "FuzzTargets", dependencies: [
            "Wire", "Model", "Training", "H2", "Scenes", "Server", "CNGHTTP2",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ], path: "Sources/FuzzTargets"),
        .executableTarget(name: "scenescore-fuzz", dependencies: ["FuzzTargets", "CShims"], path: "Sources/scenescore-fuzz",
                          swiftSettings: libFuzzer == nil ? [] : [.define("SCENESCORE_FUZZING")],
                          linkerSettings: libFuzzer.map { [.unsafeFlags(["-Xlinker", $0]), .linkedLibrary("stdc++")] } ?? []),
        .testTarget(name: "FuzzRegressionTests", dependencies: ["FuzzTargets"], path: "Tests/FuzzRegressionTests"),

        .testTarget(name: "KernelsTests", dependencies: ["Kernels"], path: "Tests/KernelsTests",
                    swiftSettings: vectorISA),
        .testTarget(name: "H2Tests", dependencies: [
            "H2", .product(name: "NIOPosix", package: "swift-nio"), .product(name: "Logging", package: "swift-log"),
        ], path: "Tests/H2Tests"),
        .testTarget(name: "ServerTests", dependencies: [
            "Server", "Model", "Scenes", "Wire", "H2", .product(name: "Logging", package: "swift-log"),
        ], path: "Tests/ServerTests", swiftSettings: vectorISA),
        .testTarget(name: "WireTests", dependencies: ["Wire"], path: "Tests/WireTests"),
        .testTarget(name: "LoadToolTests", dependencies: ["LoadTool", "Wire"], path: "Tests/LoadToolTests"),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Model", "Kernels"],
                    path: "Tests/TrainingTests", swiftSettings: numericISA),
        // Heap allocations per scored request, counted in a real server process (the server in
        // process, h2load outside it) with malloc-interposer preloaded: Tests/e2e/test_allocations.py.
        .target(name: "AllocationProbeC", path: "Tests/AllocationProbeC"),
        .executableTarget(name: "AllocationProbe", dependencies: [
            "Server", "H2", "Wire", "LoadTool", "AllocationProbeC",
            .product(name: "MallocInterposerSwift", package: "malloc-interposer"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ], path: "Tests/AllocationProbe",
        // Function names for the allocation sites it reports (dladdr reads the dynamic symbol table).
        linkerSettings: [.unsafeFlags(["-Xlinker", "--export-dynamic"])]),
        .testTarget(name: "ModelTests", dependencies: ["Model"], path: "Tests/ModelTests",
                    swiftSettings: vectorISA),
    ]
)

// ThreadSanitizer runs only the transport, server and registry tests (scripts/sanitizers.sh
// thread). SCENESCORE_TEST_SUBSET=concurrency makes that build compile only those tests and what
// they import, not the training, benchmark, load-tool, fuzzing, plugin and command-line targets
// (which every other build and test run covers). A target the kept ones start to depend on
// must be added here: the TSan build then says which is missing.
if ProcessInfo.processInfo.environment["SCENESCORE_TEST_SUBSET"] == "concurrency" {
    let kept: Set<String> = [
        "CNGHTTP2", "COpenSSL", "CShims", "CLibPQ", "CCPUFeatures", "KernelsCore", "KernelsAVX512", "Kernels",
        "Model", "Wire", "H2", "ScenePluginABI", "Scenes", "RegistryPostgres", "Server",
        "H2Tests", "ServerTests", "ScenesTests", "RegistryPostgresTests",
    ]
    package.targets.removeAll { !kept.contains($0.name) }
    package.products.removeAll()
}
