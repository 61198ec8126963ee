import Foundation
import Kernels
import Model

/// A float array with a stable, 64-byte-aligned address: activations, gradients and weights
/// that the kernel reads and writes through pointers for the whole training run.
final class FloatBuffer: @unchecked Sendable {
    private(set) var pointer: UnsafeMutablePointer<Float>
    private(set) var count: Int

    init(count: Int, value: Float = 0) {
        self.count = count
        pointer = Self.allocate(count)
        pointer.initialize(repeating: value, count: max(count, 1))
    }

    convenience init(_ values: [Float]) {
        self.init(count: values.count)
        values.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: values.count) }
    }

    deinit { pointer.deallocate() }

    /// Grows to at least `count` floats; contents are undefined afterwards.
    func reserve(_ needed: Int) {
        guard needed > count else { return }
        pointer.deallocate()
        pointer = Self.allocate(needed)
        count = needed
    }

    func zero(_ n: Int? = nil) { pointer.update(repeating: 0, count: n ?? count) }
    var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
    var buffer: UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: pointer, count: count) }

    private static func allocate(_ n: Int) -> UnsafeMutablePointer<Float> {
        UnsafeMutableRawPointer.allocate(byteCount: max(n, 16) * 4, alignment: 64).bindMemory(to: Float.self, capacity: max(n, 16))
    }
}

/// Adam's hyper-parameters (Kingma & Ba), plus L2 decay towards an anchor: zero for weights
/// trained from scratch, the source head's weights when fine-tuning (L2-SP), so a head trained
/// on a few hundred clicks stays near what it was initialised from.
public struct AdamOptions: Codable, Sendable, Equatable {
    public var learningRate: Float = 1e-3
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var epsilon: Float = 1e-8
    public var weightDecay: Float = 0
    public init() {}
}

/// A dense tensor trained with Adam. Gradients are accumulated per worker thread and summed in
/// worker order, so a run is bit-for-bit the same however the threads are scheduled.
final class Parameter: @unchecked Sendable {
    let value: FloatBuffer
    let workerGradients: [FloatBuffer]
    private let m: FloatBuffer, v: FloatBuffer
    /// The point weight decay pulls towards (nil: zero).
    var anchor: [Float]?

    init(_ values: [Float], workers: Int) {
        value = FloatBuffer(values)
        workerGradients = (0..<workers).map { _ in FloatBuffer(count: values.count) }
        m = FloatBuffer(count: values.count)
        v = FloatBuffer(count: values.count)
    }

    var count: Int { value.count }

    func zeroGradients() { workerGradients.forEach { $0.zero() } }

    /// One Adam step with the summed worker gradients; `step` counts from 1.
    func update(step: Int, options o: AdamOptions) {
        let n = count, g0 = workerGradients[0].pointer
        for w in workerGradients.dropFirst() { let g = w.pointer; for i in 0..<n { g0[i] += g[i] } }
        let c1 = 1 - Foundation.pow(o.beta1, Float(step)), c2 = 1 - Foundation.pow(o.beta2, Float(step))
        let x = value.pointer, mp = m.pointer, vp = v.pointer
        if o.weightDecay != 0 {
            if let anchor { for i in 0..<n { g0[i] += o.weightDecay * (x[i] - anchor[i]) } }
            else { for i in 0..<n { g0[i] += o.weightDecay * x[i] } }
        }
        for i in 0..<n {
            let g = g0[i]
            mp[i] = o.beta1 * mp[i] + (1 - o.beta1) * g
            vp[i] = o.beta2 * vp[i] + (1 - o.beta2) * g * g
            x[i] -= o.learningRate * (mp[i] / c1) / ((vp[i] / c2).squareRoot() + o.epsilon)
        }
    }
}

/// y = act(x · Wᵀ + b), W stored out × in (PyTorch's nn.Linear layout, the served format).
///
/// Backprop maps onto the same packed-B kernel: the forward product packs W as out×in; dX =
/// dY · W packs W read as a K = out, N = in matrix; dW = dYᵀ · X takes a transposed copy of dY
/// as A and packs X (K = batch rows). Packing is O(weights) or O(batch × in) per step, against
/// O(batch × in × out) for the product, so the kernel does the work.
final class Linear: @unchecked Sendable {
    let inputs: Int, outputs: Int
    let weight: Parameter, bias: Parameter
    private(set) var forwardPacked: PackedWeights
    private(set) var backwardPacked: PackedWeights
    var trainable = true

    init(inputs: Int, outputs: Int, weight: [Float], bias: [Float], workers: Int) {
        self.inputs = inputs; self.outputs = outputs
        self.weight = Parameter(weight, workers: workers)
        self.bias = Parameter(bias, workers: workers)
        forwardPacked = PackedWeights(k: 1, n: 1, bias: nil) { _, _ in 0 }
        backwardPacked = forwardPacked
        repack()
    }

    /// He-initialised weights (variance gain / inputs; 2 for a ReLU layer, 1 for a linear
    /// one), constant bias.
    convenience init(inputs: Int, outputs: Int, bias: Float = 0, gain: Double = 2, workers: Int, rng: inout Random) {
        let scale = (gain / Double(inputs)).squareRoot()
        self.init(inputs: inputs, outputs: outputs, weight: (0..<(inputs * outputs)).map { _ in Float(rng.normal() * scale) },
                  bias: [Float](repeating: bias, count: outputs), workers: workers)
    }

    /// Re-packs the kernel's copies after the weights changed.
    func repack() {
        forwardPacked = PackedWeights(outByIn: weight.value.buffer, out: outputs, in: inputs, bias: bias.value.buffer)
        backwardPacked = PackedWeights(inByOut: weight.value.buffer, in: outputs, out: inputs)
    }

    func forward(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>, activation: Activation,
                 addend: UnsafePointer<Float>? = nil) {
        GEMM.multiply(x, rows: rows, stride: inputs, by: forwardPacked, addend: addend, addendStride: outputs,
                      activation: activation, into: y, stride: outputs)
    }

    /// Given dL/dy (rows × out, already through the activation), accumulates dL/dW and dL/db
    /// into `worker`'s gradients and writes dL/dx (rows × in) when `dx` is given.
    func backward(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, rows: Int, worker: Int,
                  scratch: FloatBuffer, dx: UnsafeMutablePointer<Float>?) {
        if let dx {
            GEMM.multiply(dy, rows: rows, stride: outputs, by: backwardPacked, activation: .identity, into: dx, stride: inputs)
        }
        guard trainable, rows > 0 else { return }
        let gb = bias.workerGradients[worker].pointer
        for r in 0..<rows { for j in 0..<outputs { gb[j] += dy[r * outputs + j] } }
        // dW (out × in) += dYᵀ (out × rows) · X (rows × in).
        scratch.reserve(outputs * rows)
        let dyT = scratch.pointer
        // Transposed in 16 × 16 tiles, so reads and writes both stay within a few cache lines.
        for r0 in stride(from: 0, to: rows, by: 16) {
            for j0 in stride(from: 0, to: outputs, by: 16) {
                for r in r0..<min(r0 + 16, rows) {
                    for j in j0..<min(j0 + 16, outputs) { dyT[j * rows + r] = dy[r * outputs + j] }
                }
            }
        }
        let packedX = PackedWeights(inByOut: UnsafeBufferPointer(start: x, count: rows * inputs), in: rows, out: inputs)
        let gw = weight.workerGradients[worker].pointer
        GEMM.multiply(dyT, rows: outputs, stride: rows, by: packedX, addend: gw, addendStride: inputs,
                      activation: .identity, into: gw, stride: inputs)
    }

    func update(step: Int, options: AdamOptions) {
        guard trainable else { return }
        weight.update(step: step, options: options)
        var biasOptions = options
        biasOptions.weightDecay = 0
        bias.update(step: step, options: biasOptions)
        repack()
    }

    func zeroGradients() { weight.zeroGradients(); bias.zeroGradients() }

    /// A copy with the same weights (e.g. a target head initialised from a source head).
    func copy(workers: Int) -> Linear {
        Linear(inputs: inputs, outputs: outputs, weight: weight.value.array, bias: bias.value.array, workers: workers)
    }
}

/// A hashed embedding table (row = fmix32(id) mod vocab, as served). Rows start at zero and
/// only rows that appear in a batch are updated (lazy Adam), so an id never seen in training
/// keeps a zero row and adds nothing at serving time.
final class EmbeddingTable: @unchecked Sendable {
    let vocab: Int, dim: Int
    let value: FloatBuffer
    private let m: FloatBuffer, v: FloatBuffer
    let gradient: FloatBuffer
    private var touched: [Int32] = []
    private var isTouched: [Bool]
    var trainable = true

    init(vocab: Int, dim: Int, values: [Float]? = nil) {
        self.vocab = vocab; self.dim = dim
        value = values.map(FloatBuffer.init) ?? FloatBuffer(count: vocab * dim)
        m = FloatBuffer(count: vocab * dim); v = FloatBuffer(count: vocab * dim)
        gradient = FloatBuffer(count: vocab * dim)
        isTouched = [Bool](repeating: false, count: vocab)
    }

    @inline(__always)
    func row(of id: UInt32) -> Int { Int(Model.fmix32(id) % UInt32(vocab)) }

    /// Adds one sample's gradient to a row (single-threaded, in sample order).
    func accumulate(row: Int, _ g: UnsafePointer<Float>) {
        if !isTouched[row] { isTouched[row] = true; touched.append(Int32(row)) }
        let dst = gradient.pointer + row * dim
        for j in 0..<dim { dst[j] += g[j] }
    }

    /// Lazy Adam on the touched rows, with L2 decay on those rows; then clears the gradient.
    func update(step: Int, options o: AdamOptions) {
        let c1 = 1 - Foundation.pow(o.beta1, Float(step)), c2 = 1 - Foundation.pow(o.beta2, Float(step))
        let x = value.pointer, g = gradient.pointer, mp = m.pointer, vp = v.pointer
        for r in touched {  // rows update independently: any order gives the same result
            let base = Int(r) * dim
            for j in base..<(base + dim) {
                let gj = g[j] + o.weightDecay * x[j]
                mp[j] = o.beta1 * mp[j] + (1 - o.beta1) * gj
                vp[j] = o.beta2 * vp[j] + (1 - o.beta2) * gj * gj
                x[j] -= o.learningRate * (mp[j] / c1) / ((vp[j] / c2).squareRoot() + o.epsilon)
                g[j] = 0
            }
            isTouched[Int(r)] = false
        }
        touched.removeAll(keepingCapacity: true)
    }

    /// Plain SGD with L2 decay on the touched rows, then clears the gradient. For rows seen a
    /// few dozen times with noisy gradients (users) — a ridge fit, which Adam's per-coordinate
    /// normalisation would turn into sign descent that L2 cannot balance.
    func updateSGD(learningRate lr: Float, decay: Float) {
        let x = value.pointer, g = gradient.pointer
        for r in touched {
            let base = Int(r) * dim
            for j in base..<(base + dim) {
                x[j] -= lr * (g[j] + decay * x[j])
                g[j] = 0
            }
            isTouched[Int(r)] = false
        }
        touched.removeAll(keepingCapacity: true)
    }

    func discardGradients() {
        for r in touched { (gradient.pointer + Int(r) * dim).update(repeating: 0, count: dim); isTouched[Int(r)] = false }
        touched.removeAll(keepingCapacity: true)
    }
}
