import Foundation
import Testing
@testable import Kernels

/// A tiny deterministic generator so failures reproduce.
struct LCG {
    var state: UInt64
    mutating func next() -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(state >> 40) / Float(1 << 24) - 0.5
    }
    mutating func values(_ n: Int) -> [Float] { (0..<n).map { _ in next() } }
}

/// The naive triple loop in Double: the reference every GEMM result is checked against.
func reference(a: [Float], lda: Int, m: Int, k: Int, w: [Float], n: Int, bias: [Float]?,
               addend: [Float]?, activation: Activation) -> (values: [Double], magnitude: [Double]) {
    var out = [Double](repeating: 0, count: m * n), mag = out
    for i in 0..<m {
        for j in 0..<n {
            var s = Double(bias?[j] ?? 0) + Double(addend?[i * n + j] ?? 0)
            var sa = abs(Double(bias?[j] ?? 0)) + abs(Double(addend?[i * n + j] ?? 0))
            for kk in 0..<k {
                s += Double(a[i * lda + kk]) * Double(w[j * k + kk])
                sa += abs(Double(a[i * lda + kk]) * Double(w[j * k + kk]))
            }
            switch activation {
            case .identity: break
            case .relu: s = max(s, 0)
            case .sigmoid: s = 1 / (1 + Foundation.exp(-s))
            }
            out[i * n + j] = s
            mag[i * n + j] = sa
        }
    }
    return (out, mag)
}

/// Runs GEMM on the given shape and checks every element against the reference within a
/// bound proportional to K: |c − ref| ≤ 8·(K+2)·ε_f32·Σ|terms| + 1e-6.
func check(m: Int, k: Int, n: Int, activation: Activation, misalign: Int = 0, extraStride: Int = 0,
           withBias: Bool = true, withAddend: Bool = false, seed: UInt64 = 1, isa: KernelISA = KernelISA.active) {
    var rng = LCG(state: seed &+ UInt64(m * 7919 + k * 31 + n))
    let lda = k + extraStride
    let storage = rng.values(misalign + m * lda + 1)
    let a = Array(storage[misalign...])
    let w = rng.values(n * k)
    let bias = withBias ? rng.values(n) : nil
    let addend = withAddend ? rng.values(m * n) : nil
    let packed = w.withUnsafeBufferPointer { wp in
        (bias ?? []).withUnsafeBufferPointer { bp in
            PackedWeights(outByIn: wp, out: n, in: k, bias: withBias ? bp : nil)
        }
    }
    var c = [Float](repeating: .nan, count: m * n + 1)
    storage.withUnsafeBufferPointer { sp in
        (addend ?? [0]).withUnsafeBufferPointer { ap in
            c.withUnsafeMutableBufferPointer { cp in
                GEMM.multiply(sp.baseAddress! + misalign, rows: m, stride: lda, by: packed, bias: nil,
                              addend: withAddend ? ap.baseAddress : nil, addendStride: n,
                              activation: activation, into: cp.baseAddress!, stride: n, isa: isa)
            }
        }
    }
    let (ref, mag) = reference(a: a, lda: lda, m: m, k: k, w: w, n: n, bias: bias, addend: addend, activation: activation)
    let eps = Double(Float.ulpOfOne)
    var worst = 0.0
    for idx in 0..<(m * n) {
        let err = abs(Double(c[idx]) - ref[idx])
        let bound = 8 * Double(k + 2) * eps * mag[idx] + 1e-6
        worst = max(worst, err / bound)
    }
    #expect(worst <= 1, "\(isa) m=\(m) k=\(k) n=\(n) \(activation) misalign=\(misalign): error \(worst)× the bound")
    #expect(c[m * n].isNaN, "GEMM wrote past the end of C")
}

/// Every loop this CPU can run (AVX2 always; AVX-512 where the CPU has it) gets every check.
@Suite struct GEMMTests {
    static let sizes = [1, 3, 15, 16, 17, 63, 64, 65, 255, 257]
    static let isas = KernelISA.allCases.filter { KernelISA.supported.contains($0) }

    @Test(arguments: sizes, isas)
    func rowsAgainstNaive(m: Int, isa: KernelISA) {
        // n = 33 and 65: an odd last panel after pairs; m ≡ 1…7 (mod 8): every remainder tile.
        for (k, n) in [(1, 1), (3, 17), (16, 16), (17, 65), (64, 63), (257, 15), (5, 33)] {
            check(m: m, k: k, n: n, activation: .identity, isa: isa)
        }
    }

    @Test(arguments: sizes, isas)
    func reductionAndWidthAgainstNaive(size: Int, isa: KernelISA) {
        check(m: 7, k: size, n: 33, activation: .relu, isa: isa)
        check(m: 5, k: 40, n: size, activation: .relu, isa: isa)
        check(m: 1, k: size, n: size, activation: .identity, isa: isa)
        check(m: 97, k: 9, n: size, activation: .sigmoid, withAddend: true, isa: isa)  // past one 96-row block
    }

    @Test(arguments: isas)
    func everyRowRemainderAndPanelCount(isa: KernelISA) {
        for m in 1...19 {
            for n in [16, 32, 48, 80, 129] { check(m: m, k: 11, n: n, activation: .relu, withAddend: m % 2 == 0, isa: isa) }
        }
    }

    @Test(arguments: isas)
    func randomShapesWithEveryEpilogue(isa: KernelISA) {
        var rng = LCG(state: 42)
        for trial in 0..<40 {
            let pick = { (r: inout LCG) in GEMMTests.sizes[Int((r.next() + 0.5) * Float(GEMMTests.sizes.count)) % GEMMTests.sizes.count] }
            let m = pick(&rng), k = pick(&rng), n = pick(&rng)
            let act = Activation.allCases[trial % 3]
            check(m: m, k: min(k, 129), n: min(n, 129), activation: act, misalign: trial % 4,
                  extraStride: trial % 5, withBias: trial % 2 == 0, withAddend: trial % 3 == 1, seed: UInt64(trial), isa: isa)
        }
    }

    @Test(arguments: isas)
    func misalignedInputAndPaddedStrides(isa: KernelISA) {
        for misalign in 0..<8 {
            check(m: 13, k: 37, n: 40, activation: .relu, misalign: misalign, extraStride: 3, isa: isa)
        }
    }

    @Test func zeroRowsAndZeroDepth() {
        let packed = PackedWeights(k: 0, n: 5, bias: nil) { _, _ in 1 }
        let c = GEMM.multiply([], rows: 3, by: packed, activation: .sigmoid)
        #expect(c == [Float](repeating: 0.5, count: 15))
        let none = GEMM.multiply([], rows: 0, by: packed)
        #expect(none.isEmpty)
    }

    @Test(arguments: isas)
    func addendMayAliasOutput(isa: KernelISA) {
        let n = 20, k = 9, m = 7
        var rng = LCG(state: 9)
        let a = rng.values(m * k), w = rng.values(n * k), h = rng.values(m * n)
        let packed = w.withUnsafeBufferPointer { PackedWeights(outByIn: $0, out: n, in: k) }
        var c = h
        c.withUnsafeMutableBufferPointer { cp in
            a.withUnsafeBufferPointer { ap in
                GEMM.multiply(ap.baseAddress!, rows: m, stride: k, by: packed, bias: nil, addend: cp.baseAddress, addendStride: n,
                              activation: .identity, into: cp.baseAddress!, stride: n, isa: isa)
            }
        }
        let (ref, _) = reference(a: a, lda: k, m: m, k: k, w: w, n: n, bias: nil, addend: h, activation: .identity)
        for i in 0..<(m * n) { #expect(abs(Double(c[i]) - ref[i]) < 1e-5) }
    }

    @Test func vectorSigmoidMatchesScalarAcrossRange() {
        var x = SIMD16<Float>()
        var worst: Float = 0
        var v: Float = -100
        while v < 100 {
            for lane in 0..<16 { x[lane] = v + Float(lane) * 0.0137 }
            let s = x.sigmoid
            for lane in 0..<16 {
                let ref = Activation.sigmoid.apply(x[lane])
                worst = max(worst, abs(s[lane] - ref) / max(ref, 1e-30))
                #expect(s[lane].isFinite)
            }
            v += 0.25
        }
        #expect(worst < 1e-5, "vector sigmoid relative error \(worst)")
    }

    @Test func packingLayoutsAgree() {
        let k = 5, n = 19
        var rng = LCG(state: 3)
        let w = rng.values(n * k)
        let transposed = (0..<(k * n)).map { idx in w[(idx % n) * k + idx / n] }
        let p1 = w.withUnsafeBufferPointer { PackedWeights(outByIn: $0, out: n, in: k) }
        let p2 = transposed.withUnsafeBufferPointer { PackedWeights(inByOut: $0, in: k, out: n) }
        let a = rng.values(3 * k)
        #expect(GEMM.multiply(a, rows: 3, by: p1) == GEMM.multiply(a, rows: 3, by: p2))
    }

    @Test func theBestSupportedLoopRunsUnlessOverridden() {
        let override = ProcessInfo.processInfo.environment["SCENESCORE_KERNEL_ISA"] ?? "auto"
        let best: KernelISA = KernelISA.supported.contains(.avx512) ? .avx512 : .avx2
        if let asked = KernelISA(rawValue: override), KernelISA.supported.contains(asked) {
            #expect(KernelISA.active == asked, "\(KernelISA.selection.reason)")
        } else {
            #expect(KernelISA.active == best, "\(KernelISA.selection.reason)")
        }
        #expect(KernelISA.supported.contains(.avx2))
    }
}
