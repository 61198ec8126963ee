internal import CCPUFeatures
import Kernels
#if canImport(Glibc)
import Glibc
#endif

/// The start-up check that the CPU runs the vector ISA this binary was compiled for. Without
/// it, a binary built for x86-64-v3 dies with SIGILL in the first GEMM instead of saying why.
enum CPUFeatures {
    static var buildISA: String {
        #if SCENESCORE_AVX512
        return "x86-64 with AVX-512"
        #elseif SCENESCORE_AVX2
        return "x86-64 with AVX2 + FMA"
        #else
        return "generic"
        #endif
    }

    /// The features `buildISA` needs, by name and shim bit.
    static var required: [(String, UInt32)] {
        var need: [(String, UInt32)] = []
        #if SCENESCORE_AVX2 && arch(x86_64)
        need += [("avx2", UInt32(SCENESCORE_CPU_AVX2)), ("fma", UInt32(SCENESCORE_CPU_FMA)),
                 ("bmi2", UInt32(SCENESCORE_CPU_BMI2)), ("f16c", UInt32(SCENESCORE_CPU_F16C))]
        #endif
        #if SCENESCORE_AVX512 && arch(x86_64)
        need += KernelISA.avx512Features.map { ($0.name, $0.bit) }
        #endif
        return need
    }

    /// Names of required features this CPU lacks (empty when it can run this build).
    static var missing: [String] {
        let have = scenescore_cpu_features()
        return required.filter { have & $0.1 == 0 }.map(\.0)
    }

    /// Exits with status 78 (EX_CONFIG) and a clear message on a CPU lacking a required feature.
    static func requireBuildISA() {
        let lacking = missing
        guard !lacking.isEmpty else { return }
        let message = "scenescore: this binary was built for \(buildISA) but this CPU lacks "
            + lacking.joined(separator: ", ")
            + ". Rebuild with SCENESCORE_TARGET_CPU set to this machine's level (e.g. SCENESCORE_TARGET_CPU=x86-64).\n"
        _ = message.withCString { write(2, $0, strlen($0)) }
        exit(78)
    }
}
