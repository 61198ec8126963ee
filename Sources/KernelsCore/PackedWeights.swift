/// A weight matrix B (K × N) packed once, at load time, into the layout the micro-kernels read.
///
/// Layout: ⌈N / 16⌉ column panels, each K rows of 16 contiguous floats (one `SIMD16<Float>`,
/// 64 bytes, one cache line), the last panel zero-padded. Walking k in a panel is then one
/// aligned vector load per step and a purely sequential stream for the prefetcher. The storage
/// is 64-byte aligned and owned by this class; it is immutable after `init`, hence `Sendable`.
public final class PackedWeights: @unchecked Sendable {
    /// Columns per panel: the micro-kernel's NR.
    public static let panelWidth = 16

    /// Rows of B: the reduction dimension.
    public let k: Int
    /// Columns of B: the output width.
    public let n: Int
    /// Number of 16-wide panels.
    public let panels: Int
    /// The bias added in the epilogue (length n, zero-padded to panels × 16), or nil.
    package let bias: UnsafeMutablePointer<Float>?
    @usableFromInline let storage: UnsafeMutablePointer<Float>

    /// Packs a weight matrix stored as PyTorch's `nn.Linear` keeps it: `[n][k]` (out × in),
    /// row-major, so that `C = A · Wᵀ`. `bias`, when given, has `n` values.
    public convenience init(outByIn weights: UnsafeBufferPointer<Float>, out n: Int, in k: Int,
                            bias: UnsafeBufferPointer<Float>? = nil) {
        precondition(weights.count == n * k, "weights hold \(weights.count) values, \(n)×\(k) expected")
        self.init(k: k, n: n, bias: bias) { kk, nn in weights[nn * k + kk] }
    }

    /// Packs B given row-major `[k][n]` (in × out). Each panel row is a contiguous run of B's
    /// row, so this is a strided copy — it runs on every training step (backprop packs the
    /// activations and the weights this way), not only at load time.
    public convenience init(inByOut weights: UnsafeBufferPointer<Float>, in k: Int, out n: Int,
                            bias: UnsafeBufferPointer<Float>? = nil) {
        precondition(weights.count == n * k, "weights hold \(weights.count) values, \(k)×\(n) expected")
        self.init(k: k, n: n, bias: bias)
        guard let source = weights.baseAddress else { return }
        for p in 0..<panels {
            let columns = min(Self.panelWidth, n - p * Self.panelWidth)
            let panel = storage + p * k * Self.panelWidth
            for kk in 0..<k {
                (panel + kk * Self.panelWidth).update(from: source + kk * n + p * Self.panelWidth, count: columns)
            }
        }
    }

    /// Packs B from any element accessor `(k, n) -> value`, e.g. a column slice of a larger matrix.
    public convenience init(k: Int, n: Int, bias: UnsafeBufferPointer<Float>?, element: (Int, Int) -> Float) {
        self.init(k: k, n: n, bias: bias)
        for p in 0..<panels {
            let panel = storage + p * k * Self.panelWidth
            for kk in 0..<k {
                for j in 0..<Self.panelWidth where p * Self.panelWidth + j < n {
                    panel[kk * Self.panelWidth + j] = element(kk, p * Self.panelWidth + j)
                }
            }
        }
    }

    /// Allocates zeroed panels and copies the bias.
    private init(k: Int, n: Int, bias: UnsafeBufferPointer<Float>?) {
        precondition(k >= 0 && n > 0, "a packed matrix needs n > 0 (k = \(k), n = \(n))")
        self.k = k
        self.n = n
        self.panels = (n + Self.panelWidth - 1) / Self.panelWidth
        let width = panels * Self.panelWidth
        storage = Self.allocateAligned(count: max(k * width, Self.panelWidth))
        storage.initialize(repeating: 0, count: max(k * width, Self.panelWidth))
        if let bias {
            precondition(bias.count == n, "bias holds \(bias.count) values, \(n) expected")
            let b = Self.allocateAligned(count: width)
            b.initialize(repeating: 0, count: width)
            for j in 0..<n { b[j] = bias[j] }
            self.bias = b
        } else {
            self.bias = nil
        }
    }

    deinit {
        storage.deallocate()
        bias?.deallocate()
    }

    /// Bytes held, for the memory accounting of loaded models.
    public var byteCount: Int { (k * panels * Self.panelWidth + (bias == nil ? 0 : panels * Self.panelWidth)) * 4 }

    @inlinable @inline(__always)
    public func panel(_ p: Int) -> UnsafePointer<Float> { UnsafePointer(storage + p * k * Self.panelWidth) }

    private static func allocateAligned(count: Int) -> UnsafeMutablePointer<Float> {
        UnsafeMutableRawPointer.allocate(byteCount: count * 4, alignment: 64)
            .bindMemory(to: Float.self, capacity: count)
    }
}
