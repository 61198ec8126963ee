import Kernels
import Model

/// GFLOP/s of `GEMM.multiply` (bias + ReLU epilogue included) on the shapes.
public struct KernelBenchmark {
    public struct Shape: Hashable, Codable, Sendable {
        public let m: Int, k: Int, n: Int
        public init(m: Int, k: Int, n: Int) { self.m = m; self.k = k; self.n = n }
    }

    public static let standardShapes: [Shape] = {
        var shapes: [Shape] = []
        for (k, n) in [(256, 256), (512, 256), (128, 64)] {
            for m in [1, 4, 16, 64, 256, 1024] { shapes.append(Shape(m: m, k: k, n: n)) }
        }
        return shapes
    }()

    public init() {}

    /// Measures one shape; returns GFLOP/s (2·M·N·K flops per call).
    public func gflops(_ s: Shape, secondsPerTrial: Double = 0.1) -> Double {
        var rng = Random(seed: UInt64(s.m * 1_000_003 + s.k * 1009 + s.n))
        let a = (0..<(s.m * s.k)).map { _ in rng.nextFloat() - 0.5 }
        let w = (0..<(s.n * s.k)).map { _ in rng.nextFloat() - 0.5 }
        let bias = (0..<s.n).map { _ in rng.nextFloat() }
        let packed = w.withUnsafeBufferPointer { wp in
            bias.withUnsafeBufferPointer { PackedWeights(outByIn: wp, out: s.n, in: s.k, bias: $0) }
        }
        var c = [Float](repeating: 0, count: s.m * s.n)
        let seconds = a.withUnsafeBufferPointer { ap in
            c.withUnsafeMutableBufferPointer { cp in
                medianSecondsPerCall(minSeconds: secondsPerTrial) {
                    GEMM.multiply(ap.baseAddress!, rows: s.m, stride: s.k, by: packed,
                                  activation: .relu, into: cp.baseAddress!, stride: s.n)
                }
            }
        }
        return 2.0 * Double(s.m * s.n * s.k) / seconds / 1e9
    }
}

/// Benchmarks draw their inputs from the training module's seeded generator.
extension Random {
    /// Uniform in [0, 1), 24 bits.
    public mutating func nextFloat() -> Float { Float(next() >> 40) / Float(1 << 24) }
}
