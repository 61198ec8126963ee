@_exported import KernelsCore
import KernelsAVX512

/// C = act(A · B + bias + addend), float32, with B prepacked (`PackedWeights`).
///
/// Each call runs the loop of the ISA chosen once per process (`KernelISA.active`): AVX-512
/// (`GEMMAVX512`, compiled for skylake-avx512 in a module of its own) where the CPU and OS have
/// it, otherwise the AVX2 loop below, which is what the rest of the binary is compiled for.
///
/// AVX2 blocking, BLIS-style (loop numbers count outwards from the micro-kernel):
///
/// | loop | iterates | block | why |
/// |---|---|---|---|
/// | 3 | rows of A | MC = 96 | an MC × K slice of A (≤ 192 KB at K = 512) stays in L2 (1 MB on Zen 4, ≥ 256 KB elsewhere) while every panel of B passes it |
/// | 2 | 16-column panels of B | NR = 16 | one panel row is one cache line; a K × 16 panel (16–32 KB) streams from L2 sequentially |
/// | 1 | rows inside the MC slice | MR = 6 | 6 rows × 16 columns = 6 `SIMD16` = 12 ymm accumulators, + 2 for B + 1 broadcast = 15 of 16 registers |
///
/// K is not blocked: each k step needs 2 vector loads of B (from L2) and 6 broadcasts for 12
/// FMAs, so even an L2-resident panel keeps the FMA ports busy, and accumulating the whole K in
/// registers lets the epilogue (bias, addend, activation) run once, on registers, before the
/// only store of C. A is not packed: for inference M is small and the copy would cost as much
/// as it saves; A is read as MR sequential row streams, at any alignment.
///
/// Rows left over below MR use kernels that span several panels instead (1 × 64, 2 × 32), so
/// they still have 8 independent accumulator chains — one row times one panel would be bound by
/// FMA latency at a quarter of peak. That matters most for M = 1 (one user's context).
public enum GEMM {
    /// Rows of A kept in L2 across all panels of B (loop 3).
    public static let rowBlock = 96

    /// Computes `c[i][j] = act(Σ_k a[i][k] · B[k][j] + bias[j] + addend[i][j])` for i < m, j < b.n.
    ///
    /// - Parameters:
    ///   - a: row-major m × b.k, row stride `lda` (≥ b.k); any alignment.
    ///   - bias: n values, overriding the bias packed with `b` (e.g. a per-request bias); when
    ///     nil, `b`'s own bias, if any, is used.
    ///   - addend: an optional row-major m × n matrix added before the activation (residuals).
    ///   - c: row-major m × b.n, row stride `ldc` (≥ b.n). May alias `addend` exactly, not `a`.
    public static func multiply(
        _ a: UnsafePointer<Float>, rows m: Int, stride lda: Int,
        by b: PackedWeights,
        bias: UnsafePointer<Float>? = nil,
        addend: UnsafePointer<Float>? = nil, addendStride: Int = 0,
        activation: Activation,
        into c: UnsafeMutablePointer<Float>, stride ldc: Int
    ) {
        precondition(m >= 0 && lda >= b.k && ldc >= b.n, "GEMM: bad strides (lda \(lda) < k \(b.k) or ldc \(ldc) < n \(b.n))")
        precondition(addend == nil || addendStride >= b.n, "GEMM: addend stride \(addendStride) < n \(b.n)")
        if m == 0 { return }
        multiply(a, rows: m, stride: lda, by: b, bias: bias, addend: addend, addendStride: addendStride,
                 activation: activation, into: c, stride: ldc, isa: KernelISA.active)
    }

    /// `multiply` with an explicit ISA (tests and benchmarks compare the two). The caller has
    /// checked the shapes, and `isa` must be supported (`KernelISA.supported`).
    package static func multiply(
        _ a: UnsafePointer<Float>, rows m: Int, stride lda: Int, by b: PackedWeights,
        bias: UnsafePointer<Float>?, addend: UnsafePointer<Float>?, addendStride: Int,
        activation: Activation, into c: UnsafeMutablePointer<Float>, stride ldc: Int, isa: KernelISA
    ) {
        let bias = bias ?? b.bias.map { UnsafePointer($0) }
        switch isa {
        case .avx512:
            GEMMAVX512.multiply(a, rows: m, stride: lda, by: b, bias: bias, addend: addend, addendStride: addendStride,
                                activation: activation, into: c, stride: ldc)
        case .avx2:
            multiplyAVX2(a, rows: m, stride: lda, by: b, bias: bias, addend: addend, addendStride: addendStride,
                         activation: activation, into: c, stride: ldc)
        }
    }

    private static func multiplyAVX2(
        _ a: UnsafePointer<Float>, rows m: Int, stride lda: Int, by b: PackedWeights,
        bias: UnsafePointer<Float>?, addend: UnsafePointer<Float>?, addendStride: Int,
        activation: Activation, into c: UnsafeMutablePointer<Float>, stride ldc: Int
    ) {
        let epilogue = Epilogue(bias: bias, n: b.n,
                                addend: addend, addendStride: addendStride,
                                activation: activation, c: c, ldc: ldc)
        let k = b.k
        var ic = 0
        while ic < m {  // loop 3: MC rows of A
            let rowEnd = min(ic + rowBlock, m)
            for p in 0..<b.panels {  // loop 2: one NR panel of B
                let panel = b.panel(p)
                var i = ic
                while i + 6 <= rowEnd {  // loop 1: MR rows
                    let t = Tile.rows6(k: k, a: a + i * lda, lda: lda, b: panel)
                    epilogue.store(t.0, row: i, panel: p); epilogue.store(t.1, row: i + 1, panel: p)
                    epilogue.store(t.2, row: i + 2, panel: p); epilogue.store(t.3, row: i + 3, panel: p)
                    epilogue.store(t.4, row: i + 4, panel: p); epilogue.store(t.5, row: i + 5, panel: p)
                    i += 6
                }
                if i + 4 <= rowEnd {
                    let t = Tile.rows4(k: k, a: a + i * lda, lda: lda, b: panel)
                    epilogue.store(t.0, row: i, panel: p); epilogue.store(t.1, row: i + 1, panel: p)
                    epilogue.store(t.2, row: i + 2, panel: p); epilogue.store(t.3, row: i + 3, panel: p)
                }
            }
            // Rows the 6- and 4-row tiles left: at most 3.
            var i = ic + (rowEnd - ic) / 6 * 6 + ((rowEnd - ic) % 6 >= 4 ? 4 : 0)
            if i + 2 <= rowEnd {
                twoRows(k: k, a: a + i * lda, lda: lda, b: b, row: i, epilogue: epilogue)
                i += 2
            }
            if i < rowEnd {
                oneRow(k: k, a: a + i * lda, b: b, row: i, epilogue: epilogue)
            }
            ic = rowEnd
        }
    }

    /// Two rows across all panels: 2 × 32 tiles, then a 2 × 16 one for an odd panel.
    @inline(__always)
    private static func twoRows(k: Int, a: UnsafePointer<Float>, lda: Int, b: PackedWeights,
                                row: Int, epilogue: Epilogue) {
        var p = 0
        while p + 2 <= b.panels {
            let t = Tile.rows2panels2(k: k, a: a, lda: lda, b0: b.panel(p), b1: b.panel(p + 1))
            epilogue.store(t.0, row: row, panel: p); epilogue.store(t.1, row: row, panel: p + 1)
            epilogue.store(t.2, row: row + 1, panel: p); epilogue.store(t.3, row: row + 1, panel: p + 1)
            p += 2
        }
        if p < b.panels {
            let t = Tile.rows2(k: k, a: a, lda: lda, b: b.panel(p))
            epilogue.store(t.0, row: row, panel: p); epilogue.store(t.1, row: row + 1, panel: p)
        }
    }

    /// One row across all panels: 1 × 64 tiles, then 1 × 16 ones.
    @inline(__always)
    private static func oneRow(k: Int, a: UnsafePointer<Float>, b: PackedWeights, row: Int,
                               epilogue: Epilogue) {
        var p = 0
        while p + 4 <= b.panels {
            let t = Tile.row1panels4(k: k, a: a, b0: b.panel(p), b1: b.panel(p + 1),
                                     b2: b.panel(p + 2), b3: b.panel(p + 3))
            epilogue.store(t.0, row: row, panel: p); epilogue.store(t.1, row: row, panel: p + 1)
            epilogue.store(t.2, row: row, panel: p + 2); epilogue.store(t.3, row: row, panel: p + 3)
            p += 4
        }
        while p < b.panels {
            epilogue.store(Tile.row1(k: k, a: a, b: b.panel(p)), row: row, panel: p)
            p += 1
        }
    }
}

extension GEMM {
    /// Safe convenience over arrays: returns act(A · B + bias) as a new row-major m × n array.
    public static func multiply(_ a: [Float], rows m: Int, by b: PackedWeights,
                                activation: Activation = .identity) -> [Float] {
        precondition(a.count == m * b.k, "A holds \(a.count) values, \(m)×\(b.k) expected")
        var c = [Float](repeating: 0, count: m * b.n)
        a.withUnsafeBufferPointer { ap in
            c.withUnsafeMutableBufferPointer { cp in
                guard let abase = ap.baseAddress ?? (b.k == 0 ? UnsafePointer(cp.baseAddress) : nil),
                      let cbase = cp.baseAddress else { return }
                multiply(abase, rows: m, stride: max(b.k, 1), by: b, activation: activation,
                         into: cbase, stride: b.n)
            }
        }
        return c
    }
}
