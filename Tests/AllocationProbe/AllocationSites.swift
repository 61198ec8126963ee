import AllocationProbeC
import Foundation
import MallocInterposerSwift
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Where the counted allocations come from: a call stack for each of the first `capacity`
/// allocations of the measured run, taken by malloc-interposer's per-allocation hook into
/// preallocated memory (the hook must not allocate), then symbolized and grouped after the run.
enum AllocationSites {
    static let depth = 20
    static let capacity = 8192
    nonisolated(unsafe) static var frames: UnsafeMutablePointer<UnsafeMutableRawPointer?> = {
        let p = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: capacity * depth)
        p.initialize(repeating: nil, count: capacity * depth)
        return p
    }()
    static let recorded = Atomic<Int>(0)

    /// Starts recording (call before hook()).
    static func start() {
        _ = frames
        var warm = [UnsafeMutableRawPointer?](repeating: nil, count: 4)
        _ = backtrace(&warm, 4)  // the first backtrace() loads the unwinder, which allocates
        recorded.store(0, ordering: .relaxed)
        MallocInterposerSwift.setAllocationHook { _ in
            let i = AllocationSites.recorded.wrappingAdd(1, ordering: .relaxed).oldValue
            guard i < AllocationSites.capacity else { return }
            _ = backtrace(AllocationSites.frames + i * AllocationSites.depth, Int32(AllocationSites.depth))
        }
    }

    static func stop() { MallocInterposerSwift.setAllocationHook(nil) }

    /// The recorded stacks grouped by their first frame in SceneScore's own code (or, failing
    /// that, in a package), with how many allocations per request each accounts for.
    static func report(requests: Int) -> [[String: Any]] {
        let n = min(recorded.load(ordering: .relaxed), capacity)
        guard n > 0 else { return [] }
        var names: [UnsafeMutableRawPointer: String] = [:]
        var sites: [String: Int] = [:]
        for i in 0..<n {
            var chain: [String] = []
            for d in 0..<depth {
                guard let address = frames[i * depth + d] else { break }
                let name = names[address] ?? symbolize(address)
                names[address] = name
                chain.append(name)
            }
            // Skip the allocator and runtime frames: the site is the first frame of our code.
            let ours = chain.firstIndex { isOurs($0) } ?? chain.firstIndex { !isRuntime($0) } ?? 0
            let site = chain[ours..<min(ours + 3, chain.count)].joined(separator: " ← ")
            sites[site, default: 0] += 1
        }
        let scale = Double(recorded.load(ordering: .relaxed)) / Double(n) / Double(requests)
        return sites.sorted { $0.value > $1.value }.prefix(15).map {
            ["site": $0.key, "allocations_per_request": (Double($0.value) * scale * 100).rounded() / 100]
        }
    }

    private static let ourModules = ["H2.", "Server.", "Scenes.", "Model.", "Wire.", "Kernels."]
    private static func isOurs(_ name: String) -> Bool { ourModules.contains { name.contains($0) } }
    private static func isRuntime(_ name: String) -> Bool {
        name.hasPrefix("?") || name.hasPrefix("Swift.") || name.contains("swift_") || name.contains("malloc")
            || name.contains("MallocInterposer") || name.hasPrefix("merged Swift.") || name.hasPrefix("generic specialization")
    }

    /// The function's name via dladdr (the probe is linked with --export-dynamic), demangled;
    /// "?" for unknown frames.
    private static func symbolize(_ address: UnsafeMutableRawPointer) -> String {
        var info = Dl_info()
        guard dladdr(address, &info) != 0 else { return "?" }
        guard let symbol = info.dli_sname else {
            // A stripped library (libssl, libnghttp2): its name, so the site still says whose it is.
            guard let file = info.dli_fname else { return "?" }
            return "?(" + (String(cString: file).split(separator: "/").last.map(String.init) ?? "") + ")"
        }
        return demangle(String(cString: symbol))
    }

    private static func demangle(_ mangled: String) -> String {
        typealias Demangle = @convention(c) (UnsafePointer<CChar>?, Int, UnsafeMutablePointer<CChar>?, UnsafeMutablePointer<Int>?, UInt32) -> UnsafeMutablePointer<CChar>?
        guard let f = dlsym(nil, "swift_demangle") else { return mangled }  // nil: RTLD_DEFAULT
        let demangleFunction = unsafeBitCast(f, to: Demangle.self)
        guard let out = mangled.withCString({ demangleFunction($0, strlen($0), nil, nil, 0) }) else { return mangled }
        defer { free(out) }
        return String(cString: out)
    }
}
