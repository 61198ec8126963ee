import Foundation

/// SplitMix64: a tiny, fast generator with a 64-bit state, so every stream of the benchmark is
/// reproducible from its seed on every machine. Streams for different purposes are derived
/// with `Random(seed:stream:)`, so changing one part of the world (say ρ) leaves every other
/// draw unchanged — the common random numbers that make paired comparisons across ρ possible.
public struct Random: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// An independent stream for `purpose` under `seed`.
    public init(seed: UInt64, stream purpose: String) {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a of the purpose name
        for b in purpose.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        var mixer = Random(seed: seed ^ h)
        state = mixer.next()
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in (0, 1), never exactly 0 or 1.
    public mutating func uniform() -> Double { (Double(next() >> 11) + 0.5) / Double(1 << 53) }

    /// A standard normal deviate (Box–Muller; the second value is discarded for simplicity of
    /// stream bookkeeping: each call consumes exactly two uniforms).
    public mutating func normal() -> Double {
        let r = (-2 * Foundation.log(uniform())).squareRoot()
        return r * Foundation.cos(2 * Double.pi * uniform())
    }

    public mutating func normals(_ count: Int, scale: Double = 1) -> [Double] {
        (0..<count).map { _ in normal() * scale }
    }

    /// `count` normal deviates as Float, using both values of each Box–Muller pair (the
    /// seeded random default model's weights).
    public mutating func pairedNormals(_ count: Int, scale: Float) -> [Float] {
        var out = [Float]()
        out.reserveCapacity(count)
        while out.count < count {
            let r = (-2 * Foundation.log(uniform())).squareRoot(), theta = 2 * Double.pi * uniform()
            out.append(Float(r * Foundation.cos(theta)) * scale)
            if out.count < count { out.append(Float(r * Foundation.sin(theta)) * scale) }
        }
        return out
    }

    /// Uniform integer in 0..<n.
    public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }

    /// Fisher–Yates shuffle with this stream.
    public mutating func shuffle<T>(_ a: inout [T]) {
        guard a.count > 1 else { return }
        for i in stride(from: a.count - 1, to: 0, by: -1) { a.swapAt(i, below(i + 1)) }
    }
}

/// Draws indices with probability proportional to the given weights in O(log n): a cumulative
/// table searched by bisection.
public struct WeightedSampler: Sendable {
    private let cumulative: [Double]

    public init(weights: [Double]) {
        var total = 0.0
        cumulative = weights.map { total += $0; return total }
        precondition(total > 0, "weights must have a positive sum")
    }

    public func draw(_ rng: inout Random) -> Int {
        let u = rng.uniform() * cumulative.last!
        var lo = 0, hi = cumulative.count - 1
        while lo < hi {
            let mid = (lo + hi) / 2
            if cumulative[mid] < u { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}
