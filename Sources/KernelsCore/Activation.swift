/// The element-wise function applied in the GEMM epilogue, while the tile is in registers.
public enum Activation: String, Sendable, CaseIterable, Codable {
    case identity
    case relu
    case sigmoid
}

extension SIMD16 where Scalar == Float {
    /// max(x, 0), lane-wise.
    @inlinable @inline(__always)
    public var relu: Self { self.replacing(with: 0, where: self .< 0) }

    /// 1 / (1 + e^-x), lane-wise, via `vectorExp`. Relative error below 2e-7 on [-87, 87];
    /// saturates cleanly to 0 and 1 beyond.
    @inlinable @inline(__always)
    public var sigmoid: Self {
        let one = Self(repeating: 1)
        return one / (one + (-self).vectorExp)
    }

    /// e^x, lane-wise: x = n·ln2 + r with |r| ≤ ln2/2, a degree-6 polynomial for e^r, and 2^n
    /// built in the exponent bits. Swift has no vector exp, and a scalar `exp` per lane would
    /// leave the epilogue ten times slower than the FMAs before it.
    @inlinable @inline(__always)
    public var vectorExp: Self {
        // The clamp as two selects: `clamped(lowerBound:upperBound:)` calls the standard
        // library's prespecialised pointwiseMin/Max, built for baseline x86-64, and a SIMD16
        // passed from AVX-512 code to it travels in registers the callee does not read.
        let low = Self(repeating: -87.3), high = Self(repeating: 88.3)
        var x = self.replacing(with: low, where: self .< low)
        x.replace(with: high, where: x .> high)
        // Round to nearest with the 1.5·2^23 trick: adding it pushes the fraction out of the
        // mantissa, and the low mantissa bits then hold n in two's complement. Plain vector
        // adds and integer ops; the generic SIMD rounding and conversions are scalar loops.
        let magic = Self(repeating: 12_582_912)
        let shifted = x * 1.442_695_04 + magic
        let n = shifted - magic
        // Cody–Waite: ln2 split in a high part exact in float and a small correction.
        var r = x - n * 0.693_145_751_953_125
        r = r - n * 1.428_606_765_330_187_045e-6
        var p = Self(repeating: 1.0 / 720)
        p = p * r + 1.0 / 120
        p = p * r + 1.0 / 24
        p = p * r + 1.0 / 6
        p = p * r + 0.5
        p = p * r + 1
        p = p * r + 1
        // 2^n: n + 127 in the exponent field (n ∈ [−126, 127] after the clamp).
        let exponent = (shifted.bitPattern &- magic.bitPattern &+ 127) &<< 23
        return p * Self(bitPattern: exponent)
    }

    @inlinable @inline(__always)
    public func applying(_ activation: Activation) -> Self {
        switch activation {
        case .identity: return self
        case .relu: return relu
        case .sigmoid: return sigmoid
        }
    }
}

extension SIMD16 where Scalar == Float {
    @inlinable @inline(__always)
    public init(bitPattern bits: SIMD16<UInt32>) {
        self = unsafeBitCast(bits, to: SIMD16<Float>.self)
    }

    @inlinable @inline(__always)
    public var bitPattern: SIMD16<UInt32> { unsafeBitCast(self, to: SIMD16<UInt32>.self) }
}

extension Activation {
    /// The scalar reference, used by tests and by code paths outside the kernel.
    public func apply(_ x: Float) -> Float {
        switch self {
        case .identity: return x
        case .relu: return max(x, 0)
        case .sigmoid: return 1 / (1 + _exp(-x))
        }
    }
}

#if canImport(Glibc)
import Glibc
@inline(__always) func _exp(_ x: Float) -> Float { Glibc.expf(x) }
#else
import Darwin
@inline(__always) func _exp(_ x: Float) -> Float { Darwin.expf(x) }
#endif
