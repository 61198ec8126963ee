#include "CCPUFeatures.h"

uint32_t scenescore_cpu_features(void) {
    uint32_t f = 0;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) f |= SCENESCORE_CPU_AVX2;
    if (__builtin_cpu_supports("fma")) f |= SCENESCORE_CPU_FMA;
    if (__builtin_cpu_supports("bmi2")) f |= SCENESCORE_CPU_BMI2;
    if (__builtin_cpu_supports("f16c")) f |= SCENESCORE_CPU_F16C;
    if (__builtin_cpu_supports("avx512f")) f |= SCENESCORE_CPU_AVX512F;
    if (__builtin_cpu_supports("avx512bw")) f |= SCENESCORE_CPU_AVX512BW;
    if (__builtin_cpu_supports("avx512vl")) f |= SCENESCORE_CPU_AVX512VL;
    if (__builtin_cpu_supports("avx512dq")) f |= SCENESCORE_CPU_AVX512DQ;
#endif
    return f;
}
