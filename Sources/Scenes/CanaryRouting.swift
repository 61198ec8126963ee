/// Which version answers a request, reproducibly from its request id (Proto/ADMIN.md): the
/// canary when mix64(request_id) / 2^64 < share. SplitMix64's finaliser spreads sequential ids.
public enum CanaryRouting {
    @inline(__always)
    public static func mix64(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    @inline(__always)
    public static func choosesCanary(requestID: UInt64, share: Double) -> Bool {
        if share <= 0 { return false }
        if share >= 1 { return true }
        // 53 bits: exactly representable, so the comparison is the same in every language.
        return Double(mix64(requestID) >> 11) < share * 9_007_199_254_740_992.0
    }
}
