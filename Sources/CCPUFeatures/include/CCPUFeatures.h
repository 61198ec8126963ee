// The compiler's CPU-feature builtins, which Swift cannot call: what the start-up check and the
// kernels' runtime ISA dispatch read. No dependencies, so the kernels can sit at the bottom.
#ifndef SCENESCORE_CCPUFEATURES_H
#define SCENESCORE_CCPUFEATURES_H

#include <stdint.h>

/// Bit set of the x86 features the kernels and the release build may use (see CPUFeatures.swift
/// and Sources/Kernels/KernelISA.swift).
enum {
    SCENESCORE_CPU_AVX2 = 1 << 0,
    SCENESCORE_CPU_FMA = 1 << 1,
    SCENESCORE_CPU_BMI2 = 1 << 2,
    SCENESCORE_CPU_F16C = 1 << 3,
    SCENESCORE_CPU_AVX512F = 1 << 4,
    SCENESCORE_CPU_AVX512BW = 1 << 5,
    SCENESCORE_CPU_AVX512VL = 1 << 6,
    SCENESCORE_CPU_AVX512DQ = 1 << 7,
};
/// The features of the running CPU that the OS has enabled (compiler-rt checks XGETBV, so an
/// AVX-512 CPU whose kernel does not save zmm state reports no AVX-512).
uint32_t scenescore_cpu_features(void);

#endif
