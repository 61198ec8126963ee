import KernelsCore

/// The GEMM loop for AVX-512, in a module compiled for skylake-avx512 (Package.swift), called by
/// `GEMM.multiply` only when the CPU and OS support it (`KernelISA`). Everything it runs per
/// element is inlined from KernelsCore, so it is all 512-bit code; only pointers and integers
/// cross into it.
///
/// With 32 zmm registers the main tile is 8 rows × 2 panels (16 accumulators, 2 loads of B and
/// 8 broadcasts of A per k step), twice the FMAs per loaded byte of the AVX2 loop's 6 × 1 tile.
/// Loops, outermost first: MC = 96 rows of A (kept in L2), pairs of 16-column panels of B,
/// 8-row tiles; rows left below 8 take 4- and 2-row tiles over the same panel pair, and a last
/// odd row runs across all panels four at a time (the M = 1 GEMV shape).
public enum GEMMAVX512 {
    static let rowBlock = 96

    /// `GEMM.multiply` on resolved arguments: `bias` is the one to use (the caller picked
    /// between the call's and the packed one); shapes are checked by the caller.
    public static func multiply(
        _ a: UnsafePointer<Float>, rows m: Int, stride lda: Int, by b: PackedWeights,
        bias: UnsafePointer<Float>?, addend: UnsafePointer<Float>?, addendStride: Int,
        activation: Activation, into c: UnsafeMutablePointer<Float>, stride ldc: Int
    ) {
        let e = Epilogue(bias: bias, n: b.n, addend: addend, addendStride: addendStride,
                         activation: activation, c: c, ldc: ldc)
        let k = b.k
        var ic = 0
        while ic < m {
            let rowEnd = min(ic + rowBlock, m)
            let pairedEnd = rowEnd - (rowEnd - ic) % 2  // an odd last row runs across all panels below
            var p = 0
            while p + 2 <= b.panels {
                let b0 = b.panel(p), b1 = b.panel(p + 1)
                var i = ic
                while i + 8 <= pairedEnd {
                    let t = Tile.rows8panels2(k: k, a: a + i * lda, lda: lda, b0: b0, b1: b1)
                    e.store(t.first.0, row: i, panel: p); e.store(t.second.0, row: i, panel: p + 1)
                    e.store(t.first.1, row: i + 1, panel: p); e.store(t.second.1, row: i + 1, panel: p + 1)
                    e.store(t.first.2, row: i + 2, panel: p); e.store(t.second.2, row: i + 2, panel: p + 1)
                    e.store(t.first.3, row: i + 3, panel: p); e.store(t.second.3, row: i + 3, panel: p + 1)
                    e.store(t.first.4, row: i + 4, panel: p); e.store(t.second.4, row: i + 4, panel: p + 1)
                    e.store(t.first.5, row: i + 5, panel: p); e.store(t.second.5, row: i + 5, panel: p + 1)
                    e.store(t.first.6, row: i + 6, panel: p); e.store(t.second.6, row: i + 6, panel: p + 1)
                    e.store(t.first.7, row: i + 7, panel: p); e.store(t.second.7, row: i + 7, panel: p + 1)
                    i += 8
                }
                if i + 4 <= pairedEnd {
                    let t = Tile.rows4panels2(k: k, a: a + i * lda, lda: lda, b0: b0, b1: b1)
                    e.store(t.0, row: i, panel: p); e.store(t.4, row: i, panel: p + 1)
                    e.store(t.1, row: i + 1, panel: p); e.store(t.5, row: i + 1, panel: p + 1)
                    e.store(t.2, row: i + 2, panel: p); e.store(t.6, row: i + 2, panel: p + 1)
                    e.store(t.3, row: i + 3, panel: p); e.store(t.7, row: i + 3, panel: p + 1)
                    i += 4
                }
                if i + 2 <= pairedEnd {
                    let t = Tile.rows2panels2(k: k, a: a + i * lda, lda: lda, b0: b0, b1: b1)
                    e.store(t.0, row: i, panel: p); e.store(t.1, row: i, panel: p + 1)
                    e.store(t.2, row: i + 1, panel: p); e.store(t.3, row: i + 1, panel: p + 1)
                }
                p += 2
            }
            if p < b.panels {  // an odd last panel
                let b0 = b.panel(p)
                var i = ic
                while i + 8 <= pairedEnd {
                    let t = Tile.rows8(k: k, a: a + i * lda, lda: lda, b: b0)
                    e.store(t.0, row: i, panel: p); e.store(t.1, row: i + 1, panel: p)
                    e.store(t.2, row: i + 2, panel: p); e.store(t.3, row: i + 3, panel: p)
                    e.store(t.4, row: i + 4, panel: p); e.store(t.5, row: i + 5, panel: p)
                    e.store(t.6, row: i + 6, panel: p); e.store(t.7, row: i + 7, panel: p)
                    i += 8
                }
                if i + 4 <= pairedEnd {
                    let t = Tile.rows4(k: k, a: a + i * lda, lda: lda, b: b0)
                    e.store(t.0, row: i, panel: p); e.store(t.1, row: i + 1, panel: p)
                    e.store(t.2, row: i + 2, panel: p); e.store(t.3, row: i + 3, panel: p)
                    i += 4
                }
                if i + 2 <= pairedEnd {
                    let t = Tile.rows2(k: k, a: a + i * lda, lda: lda, b: b0)
                    e.store(t.0, row: i, panel: p); e.store(t.1, row: i + 1, panel: p)
                }
            }
            if pairedEnd < rowEnd {
                let row = pairedEnd, ar = a + row * lda
                var p = 0
                while p + 4 <= b.panels {
                    let t = Tile.row1panels4(k: k, a: ar, b0: b.panel(p), b1: b.panel(p + 1), b2: b.panel(p + 2), b3: b.panel(p + 3))
                    e.store(t.0, row: row, panel: p); e.store(t.1, row: row, panel: p + 1)
                    e.store(t.2, row: row, panel: p + 2); e.store(t.3, row: row, panel: p + 3)
                    p += 4
                }
                while p < b.panels {
                    e.store(Tile.row1(k: k, a: ar, b: b.panel(p)), row: row, panel: p)
                    p += 1
                }
            }
            ic = rowEnd
        }
    }
}
