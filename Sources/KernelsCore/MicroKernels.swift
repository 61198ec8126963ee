/// The micro-kernels: register tiles of `SIMD16<Float>` accumulators over the whole K. They are
/// `@inlinable` and always inlined, so each ISA's GEMM loop (Sources/Kernels for AVX2,
/// Sources/KernelsAVX512) compiles them for its own register file: two ymm per `SIMD16` there,
/// one zmm here. No `SIMD16` may cross a call between those modules: the two ISAs pass it in
/// different registers.
///
/// Assumptions shared by all of them:
/// - `b`, `b0`… point at a packed panel (`PackedWeights`): K rows of 16 floats, 64-byte aligned.
/// - `a` points at row 0 of the tile in row-major A with row stride `lda`; any alignment.
/// - K ≥ 0; the tiles are returned by value and stored by `Epilogue`.
/// Built for x86-64-v3, each `SIMD16` is two ymm registers and `addProduct` with a scalar is a
/// broadcast plus two `vfmadd231ps`; for AVX-512, one zmm and one FMA. They are written out one
/// per shape, as BLIS does, because the accumulators must stay in named registers: a loop over
/// an accumulator array spills.
public enum Tile {
    public typealias V = SIMD16<Float>

    @inlinable @inline(__always)
    public static func load(_ p: UnsafePointer<Float>) -> V {
        UnsafeRawPointer(p).load(as: V.self)
    }

    /// 8 rows × 2 panels: 16 zmm accumulators, the AVX-512 main tile (2 loads of B and 8
    /// broadcasts of A feed 16 FMAs per k step; 32 registers leave room for all of them).
    /// Returns row r's two panels as (first.r, second.r).
    @inlinable @inline(__always)
    public static func rows8panels2(k: Int, a: UnsafePointer<Float>, lda: Int, b0: UnsafePointer<Float>,
                                     b1: UnsafePointer<Float>) -> (first: (V, V, V, V, V, V, V, V), second: (V, V, V, V, V, V, V, V)) {
        var c0 = V(), c1 = V(), c2 = V(), c3 = V(), c4 = V(), c5 = V(), c6 = V(), c7 = V()
        var d0 = V(), d1 = V(), d2 = V(), d3 = V(), d4 = V(), d5 = V(), d6 = V(), d7 = V()
        let a0 = a, a1 = a + lda, a2 = a + 2 * lda, a3 = a + 3 * lda
        let a4 = a + 4 * lda, a5 = a + 5 * lda, a6 = a + 6 * lda, a7 = a + 7 * lda
        for kk in 0..<k {
            let x = load(b0 + kk &* 16), y = load(b1 + kk &* 16)
            var s = a0[kk]; c0.addProduct(s, x); d0.addProduct(s, y)
            s = a1[kk]; c1.addProduct(s, x); d1.addProduct(s, y)
            s = a2[kk]; c2.addProduct(s, x); d2.addProduct(s, y)
            s = a3[kk]; c3.addProduct(s, x); d3.addProduct(s, y)
            s = a4[kk]; c4.addProduct(s, x); d4.addProduct(s, y)
            s = a5[kk]; c5.addProduct(s, x); d5.addProduct(s, y)
            s = a6[kk]; c6.addProduct(s, x); d6.addProduct(s, y)
            s = a7[kk]; c7.addProduct(s, x); d7.addProduct(s, y)
        }
        return ((c0, c1, c2, c3, c4, c5, c6, c7), (d0, d1, d2, d3, d4, d5, d6, d7))
    }

    /// 8 rows × 1 panel: 8 accumulators (AVX-512, an odd last panel).
    @inlinable @inline(__always)
    public static func rows8(k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>)
        -> (V, V, V, V, V, V, V, V) {
        var c0 = V(), c1 = V(), c2 = V(), c3 = V(), c4 = V(), c5 = V(), c6 = V(), c7 = V()
        let a0 = a, a1 = a + lda, a2 = a + 2 * lda, a3 = a + 3 * lda
        let a4 = a + 4 * lda, a5 = a + 5 * lda, a6 = a + 6 * lda, a7 = a + 7 * lda
        for kk in 0..<k {
            let x = load(b + kk &* 16)
            c0.addProduct(a0[kk], x); c1.addProduct(a1[kk], x); c2.addProduct(a2[kk], x); c3.addProduct(a3[kk], x)
            c4.addProduct(a4[kk], x); c5.addProduct(a5[kk], x); c6.addProduct(a6[kk], x); c7.addProduct(a7[kk], x)
        }
        return (c0, c1, c2, c3, c4, c5, c6, c7)
    }

    /// 4 rows × 2 panels: 8 accumulators. Returns (r0p0, r1p0, r2p0, r3p0, r0p1, r1p1, r2p1, r3p1).
    @inlinable @inline(__always)
    public static func rows4panels2(k: Int, a: UnsafePointer<Float>, lda: Int, b0: UnsafePointer<Float>,
                                     b1: UnsafePointer<Float>) -> (V, V, V, V, V, V, V, V) {
        var c0 = V(), c1 = V(), c2 = V(), c3 = V(), d0 = V(), d1 = V(), d2 = V(), d3 = V()
        let a0 = a, a1 = a + lda, a2 = a + 2 * lda, a3 = a + 3 * lda
        for kk in 0..<k {
            let x = load(b0 + kk &* 16), y = load(b1 + kk &* 16)
            var s = a0[kk]; c0.addProduct(s, x); d0.addProduct(s, y)
            s = a1[kk]; c1.addProduct(s, x); d1.addProduct(s, y)
            s = a2[kk]; c2.addProduct(s, x); d2.addProduct(s, y)
            s = a3[kk]; c3.addProduct(s, x); d3.addProduct(s, y)
        }
        return (c0, c1, c2, c3, d0, d1, d2, d3)
    }

    /// 6 rows × 1 panel: 12 ymm accumulators.
    @inlinable @inline(__always)
    public static func rows6(k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>)
        -> (V, V, V, V, V, V) {
        var c0 = V(), c1 = V(), c2 = V(), c3 = V(), c4 = V(), c5 = V()
        let a0 = a, a1 = a + lda, a2 = a + 2 * lda, a3 = a + 3 * lda, a4 = a + 4 * lda, a5 = a + 5 * lda
        var bp = b
        for kk in 0..<k {
            let bv = load(bp)
            c0.addProduct(a0[kk], bv); c1.addProduct(a1[kk], bv); c2.addProduct(a2[kk], bv)
            c3.addProduct(a3[kk], bv); c4.addProduct(a4[kk], bv); c5.addProduct(a5[kk], bv)
            bp += 16
        }
        return (c0, c1, c2, c3, c4, c5)
    }

    /// 4 rows × 1 panel: 8 ymm accumulators.
    @inlinable @inline(__always)
    public static func rows4(k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>)
        -> (V, V, V, V) {
        var c0 = V(), c1 = V(), c2 = V(), c3 = V()
        let a0 = a, a1 = a + lda, a2 = a + 2 * lda, a3 = a + 3 * lda
        var bp = b
        for kk in 0..<k {
            let bv = load(bp)
            c0.addProduct(a0[kk], bv); c1.addProduct(a1[kk], bv)
            c2.addProduct(a2[kk], bv); c3.addProduct(a3[kk], bv)
            bp += 16
        }
        return (c0, c1, c2, c3)
    }

    /// 2 rows × 2 panels: 8 ymm accumulators. Returns (r0p0, r0p1, r1p0, r1p1).
    @inlinable @inline(__always)
    public static func rows2panels2(k: Int, a: UnsafePointer<Float>, lda: Int,
                             b0: UnsafePointer<Float>, b1: UnsafePointer<Float>) -> (V, V, V, V) {
        var c00 = V(), c01 = V(), c10 = V(), c11 = V()
        let a0 = a, a1 = a + lda
        for kk in 0..<k {
            let x = load(b0 + kk &* 16), y = load(b1 + kk &* 16)
            let s0 = a0[kk], s1 = a1[kk]
            c00.addProduct(s0, x); c01.addProduct(s0, y)
            c10.addProduct(s1, x); c11.addProduct(s1, y)
        }
        return (c00, c01, c10, c11)
    }

    /// 2 rows × 1 panel, k split in even/odd halves for 4 independent chains.
    @inlinable @inline(__always)
    public static func rows2(k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>) -> (V, V) {
        var c0 = V(), c1 = V(), d0 = V(), d1 = V()
        let a0 = a, a1 = a + lda
        var kk = 0
        while kk + 2 <= k {
            let x = load(b + kk &* 16), y = load(b + (kk &+ 1) &* 16)
            c0.addProduct(a0[kk], x); c1.addProduct(a1[kk], x)
            d0.addProduct(a0[kk + 1], y); d1.addProduct(a1[kk + 1], y)
            kk += 2
        }
        if kk < k {
            let x = load(b + kk &* 16)
            c0.addProduct(a0[kk], x); c1.addProduct(a1[kk], x)
        }
        return (c0 + d0, c1 + d1)
    }

    /// 1 row × 4 panels: 8 ymm accumulators; the GEMV shape (M = 1), bound by streaming B.
    @inlinable @inline(__always)
    public static func row1panels4(k: Int, a: UnsafePointer<Float>, b0: UnsafePointer<Float>,
                            b1: UnsafePointer<Float>, b2: UnsafePointer<Float>,
                            b3: UnsafePointer<Float>) -> (V, V, V, V) {
        var c0 = V(), c1 = V(), c2 = V(), c3 = V()
        for kk in 0..<k {
            let s = a[kk], o = kk &* 16
            c0.addProduct(s, load(b0 + o)); c1.addProduct(s, load(b1 + o))
            c2.addProduct(s, load(b2 + o)); c3.addProduct(s, load(b3 + o))
        }
        return (c0, c1, c2, c3)
    }

    /// 1 row × 1 panel, k split four ways for independent chains.
    @inlinable @inline(__always)
    public static func row1(k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>) -> V {
        var c0 = V(), c1 = V(), c2 = V(), c3 = V()
        var kk = 0
        while kk + 4 <= k {
            c0.addProduct(a[kk], load(b + kk &* 16)); c1.addProduct(a[kk + 1], load(b + (kk + 1) &* 16))
            c2.addProduct(a[kk + 2], load(b + (kk + 2) &* 16)); c3.addProduct(a[kk + 3], load(b + (kk + 3) &* 16))
            kk += 4
        }
        while kk < k {
            c0.addProduct(a[kk], load(b + kk &* 16))
            kk += 1
        }
        return (c0 + c1) + (c2 + c3)
    }
}
