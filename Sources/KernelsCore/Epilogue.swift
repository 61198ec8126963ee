/// Writes one accumulator row (16 columns of one panel) to C after bias, addend, activation.
public struct Epilogue {
    @usableFromInline let bias: UnsafePointer<Float>?
    @usableFromInline let n: Int
    @usableFromInline let addend: UnsafePointer<Float>?
    @usableFromInline let addendStride: Int
    @usableFromInline let activation: Activation
    @usableFromInline let c: UnsafeMutablePointer<Float>
    @usableFromInline let ldc: Int

    @inlinable @inline(__always)
    public init(bias: UnsafePointer<Float>?, n: Int, addend: UnsafePointer<Float>?, addendStride: Int,
                 activation: Activation, c: UnsafeMutablePointer<Float>, ldc: Int) {
        self.bias = bias
        self.n = n
        self.addend = addend
        self.addendStride = addendStride
        self.activation = activation
        self.c = c
        self.ldc = ldc
    }

    @_transparent
    public func store(_ acc: SIMD16<Float>, row: Int, panel: Int) {
        let col = panel &* 16
        let cols = min(16, n &- col)
        var v = acc
        if let bias { v += loadPartial(bias + col, cols) }
        if let addend { v += loadPartial(addend + (row &* addendStride &+ col), cols) }
        v = v.applying(activation)
        let out = c + (row &* ldc &+ col)
        if cols == 16 {
            UnsafeMutableRawPointer(out).storeBytes(of: v, as: SIMD16<Float>.self)
        } else {
            for j in 0..<cols { out[j] = v[j] }
        }
    }

    @inlinable @inline(__always)
    func loadPartial(_ p: UnsafePointer<Float>, _ cols: Int) -> SIMD16<Float> {
        if cols == 16 { return UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self) }
        var v = SIMD16<Float>()
        for j in 0..<cols { v[j] = p[j] }
        return v
    }
}
