#if canImport(Glibc)
import Glibc
#endif

/// Monotonic nanoseconds, for benchmarks only.
@inline(__always)
func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Runs `body` in batches until `minSeconds` pass, `trials` times, and returns the median
/// seconds per call. The median of trials resists a noisy neighbour on a shared machine.
func medianSecondsPerCall(trials: Int = 5, minSeconds: Double = 0.1, _ body: () -> Void) -> Double {
    body()  // warm caches and page in
    var perCall: [Double] = []
    for _ in 0..<trials {
        var calls = 0
        let start = monotonicNanos()
        var elapsed = 0.0
        repeat {
            body()
            calls += 1
            elapsed = Double(monotonicNanos() - start) / 1e9
        } while elapsed < minSeconds
        perCall.append(elapsed / Double(calls))
    }
    perCall.sort()
    return perCall[perCall.count / 2]
}
