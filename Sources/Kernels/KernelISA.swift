import CCPUFeatures
#if canImport(Glibc)
import Glibc
#endif

/// Which GEMM loop runs: chosen once per process from the running CPU, so one binary built for
/// x86-64-v3 uses AVX-512 where it exists (the vector ISA is otherwise fixed at build time).
public enum KernelISA: String, Sendable, CaseIterable {
    case avx2
    case avx512

    /// The loop every `GEMM.multiply` runs. `SCENESCORE_KERNEL_ISA=avx2` (or `avx512`, `auto`)
    /// overrides the choice, e.g. to compare the two; asking for an ISA the CPU lacks keeps the
    /// detected one and says so in `selection`.
    public static let active: KernelISA = selection.isa

    /// The choice and, for the logs, why it was made.
    public static let selection: (isa: KernelISA, reason: String) = {
        let best: KernelISA = supported.contains(.avx512) ? .avx512 : .avx2
        guard let raw = getenv("SCENESCORE_KERNEL_ISA").map({ String(cString: $0) }), !raw.isEmpty, raw != "auto" else {
            return (best, best == .avx512 ? "the CPU has AVX-512 (F, BW, DQ, VL)" : "the CPU has no usable AVX-512")
        }
        guard let asked = KernelISA(rawValue: raw) else {
            return (best, "SCENESCORE_KERNEL_ISA=\(raw) is not avx2, avx512 or auto; detected \(best.rawValue)")
        }
        guard supported.contains(asked) else {
            return (best, "SCENESCORE_KERNEL_ISA=\(raw), but this CPU lacks it; detected \(best.rawValue)")
        }
        return (asked, "SCENESCORE_KERNEL_ISA=\(raw)")
    }()

    /// What "AVX-512" means here, by name and `scenescore_cpu_features` bit: the AVX-512 loop's
    /// needs, and a whole build's when it targets an AVX-512 CPU (the start-up check).
    public static let avx512Features: [(name: String, bit: UInt32)] = [
        ("avx512f", UInt32(SCENESCORE_CPU_AVX512F)), ("avx512bw", UInt32(SCENESCORE_CPU_AVX512BW)),
        ("avx512vl", UInt32(SCENESCORE_CPU_AVX512VL)), ("avx512dq", UInt32(SCENESCORE_CPU_AVX512DQ)),
    ]

    /// The ISAs this CPU (and its OS) can run. AVX2 is the build's baseline: the binary checks
    /// for it at start-up.
    public static let supported: Set<KernelISA> = {
        let avx512 = avx512Features.reduce(UInt32(0)) { $0 | $1.bit }
        #if arch(x86_64)
        return scenescore_cpu_features() & avx512 == avx512 ? [.avx2, .avx512] : [.avx2]
        #else
        return [.avx2]
        #endif
    }()
}
