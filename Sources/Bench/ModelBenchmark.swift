import Foundation
import Kernels
import Model

/// `scenescore bench model`: one request's forward pass (backbone + head) on one core, or (with
/// `requests` > 1) a batch of that many requests scored together, as the server batches requests
/// that arrive together (`Forward.score(batch:)`), reported per request.
public struct ModelReport: Encodable, Sendable {
    public struct Row: Encodable, Sendable {
        public let candidates: Int
        public let microsecondsPerRequest: Double
        public let candidatesPerSecond: Double
        /// Forward-pass GFLOP/s (the GEMMs' 2·M·N·K; gathers and epilogues count as overhead).
        public let forwardGFLOPS: Double
        /// The kernel alone on the same sequence of layer shapes.
        public let kernelGFLOPS: Double
        public var fractionOfKernel: Double { forwardGFLOPS / kernelGFLOPS }
        enum CodingKeys: String, CodingKey { case candidates, microsecondsPerRequest, candidatesPerSecond, forwardGFLOPS, kernelGFLOPS, fractionOfKernel }
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(candidates, forKey: .candidates)
            try c.encode(microsecondsPerRequest, forKey: .microsecondsPerRequest)
            try c.encode(candidatesPerSecond, forKey: .candidatesPerSecond)
            try c.encode(forwardGFLOPS, forKey: .forwardGFLOPS)
            try c.encode(kernelGFLOPS, forKey: .kernelGFLOPS)
            try c.encode(fractionOfKernel, forKey: .fractionOfKernel)
        }
    }
    public let model: String
    /// Requests per forward pass (1: each request alone).
    public let requestsPerBatch: Int
    public let rows: [Row]

    public static func measure(modelDirectory: String, scene: String?, candidates: [Int] = [1, 16, 256],
                               requests: Int = 1) throws -> ModelReport {
        precondition(requests >= 1, "requests must be at least 1")
        let set = try ModelSet(directory: modelDirectory)
        let head = try benchmarkHead(set, scene: scene)
        let spec = set.backbone.spec
        var rng = Random(seed: 1)
        var rows: [Row] = []
        let ws = ForwardWorkspace()
        for n in candidates {
            let ctxIDs = (0..<spec.contextFields.count).map { _ in UInt32(truncatingIfNeeded: rng.next()) }
            let ctxDense = (0..<spec.contextDense).map { _ in rng.nextFloat() }
            let itemIDs = (0..<(n * spec.itemFields.count)).map { _ in UInt32(truncatingIfNeeded: rng.next()) }
            let itemDense = (0..<(n * spec.itemDense)).map { _ in rng.nextFloat() }
            var out = [Float](repeating: 0, count: requests * n * head.spec.outputs.count)
            let seconds = ctxIDs.withUnsafeBytes { ci in ctxDense.withUnsafeBytes { cd in
                itemIDs.withUnsafeBytes { ii in itemDense.withUnsafeBytes { id in
                    out.withUnsafeMutableBufferPointer { o in
                        let input = ScoringInput(candidates: n, contextIDs: ci, contextDense: cd, itemIDs: ii, itemDense: id)
                        if requests == 1 {
                            return medianSecondsPerCall(minSeconds: 0.2) {
                                Forward.score(input, backbone: set.backbone, head: head, workspace: ws, into: o)
                            }
                        }
                        let batch = [ScoringInput](repeating: input, count: requests)
                        return medianSecondsPerCall(minSeconds: 0.2) {
                            Forward.score(batch: batch, backbone: set.backbone, head: head, workspace: ws, into: o)
                        } / Double(requests)
                    }
                }}
            }}
            let shapes = layerShapes(spec, head.spec, candidates: n, requests: requests)
            let flops = shapes.reduce(0.0) { $0 + 2.0 * Double($1.m * $1.k * $1.n) } / Double(requests)
            let kernelSeconds = kernelTime(shapes) / Double(requests)
            rows.append(Row(candidates: n, microsecondsPerRequest: seconds * 1e6,
                            candidatesPerSecond: Double(n) / seconds,
                            forwardGFLOPS: flops / seconds / 1e9, kernelGFLOPS: flops / kernelSeconds / 1e9))
        }
        let interaction = head.spec.interaction > 0 ? ", interaction \(head.spec.interaction)" : ""
        return ModelReport(model: "\(modelDirectory) (scene \(head.spec.scene), head \(head.spec.version)\(interaction))",
                           requestsPerBatch: requests, rows: rows)
    }

    /// `scene`'s head, or (scene nil) the first scene's.
    static func benchmarkHead(_ set: ModelSet, scene: String?) throws -> AdapterHead {
        if let scene {
            guard let head = set.heads[scene] else {
                throw PythonReference.Failure(description: "no head for scene '\(scene)' in \(set.directory)/heads (heads: \(set.heads.keys.sorted().joined(separator: ", ")))")
            }
            return head
        }
        guard let head = set.heads.values.sorted(by: { $0.spec.scene < $1.spec.scene }).first else {
            throw PythonReference.Failure(description: "no head in \(set.directory)/heads")
        }
        return head
    }

    /// The GEMMs of one forward pass over `requests` requests of `n` candidates each, in order
    /// (M, K, N). Layer 0's item part runs once per request (each with its own context row as bias).
    static func layerShapes(_ b: BackboneSpec, _ h: HeadSpec, candidates perRequest: Int, requests: Int = 1) -> [KernelBenchmark.Shape] {
        if requests == 1 && perRequest > Forward.candidatesPerPass {  // a large request runs in passes
            return stride(from: 0, to: perRequest, by: Forward.candidatesPerPass).flatMap { first in
                layerShapes(b, h, candidates: min(Forward.candidatesPerPass, perRequest - first))
            }
        }
        let n = perRequest * requests
        var shapes = [KernelBenchmark.Shape(m: requests, k: b.contextWidth, n: b.hidden[0])]
            + Array(repeating: KernelBenchmark.Shape(m: perRequest, k: b.itemWidth, n: b.hidden[0]), count: requests)
        var width = b.hidden[0]
        for w in b.hidden.dropFirst() { shapes.append(.init(m: n, k: width, n: w)); width = w }
        shapes.append(.init(m: n, k: width, n: h.bottleneck))
        shapes.append(.init(m: n, k: h.bottleneck, n: width))
        for t in h.tower { shapes.append(.init(m: n, k: width, n: t)); width = t }
        shapes.append(.init(m: n, k: width, n: h.outputs.count))
        // The towers run for heads with an interaction adapter: u, v, then w = uᵀ A (per output).
        if h.interaction > 0 {
            shapes += [.init(m: requests, k: b.contextWidth, n: h.interaction), .init(m: n, k: b.itemWidth, n: h.interaction),
                       .init(m: requests, k: h.interaction, n: h.outputs.count * h.interaction)]
        }
        return shapes
    }

    /// Seconds for the kernel alone to run `shapes` once (ReLU epilogue, warm caches).
    static func kernelTime(_ shapes: [KernelBenchmark.Shape]) -> Double {
        let setups = shapes.map { s -> (PackedWeights, [Float], [Float]) in
            let w = [Float](repeating: 0.01, count: s.k * s.n)
            return (w.withUnsafeBufferPointer { PackedWeights(outByIn: $0, out: s.n, in: s.k) },
                    [Float](repeating: 0.5, count: s.m * s.k), [Float](repeating: 0, count: s.m * s.n))
        }
        var outputs = setups.map(\.2)
        return medianSecondsPerCall(minSeconds: 0.2) {
            for i in setups.indices {
                let s = shapes[i]
                setups[i].1.withUnsafeBufferPointer { a in
                    outputs[i].withUnsafeMutableBufferPointer { c in
                        GEMM.multiply(a.baseAddress!, rows: s.m, stride: s.k, by: setups[i].0, activation: .relu,
                                      into: c.baseAddress!, stride: s.n)
                    }
                }
            }
        }
    }

    public var markdown: String {
        var lines = ["| candidates | µs / request | candidates / s | forward GFLOP/s | kernel GFLOP/s (same shapes) | fraction |",
                     "|---:|---:|---:|---:|---:|---:|"]
        for r in rows {
            lines.append("| \(r.candidates) | \(format(r.microsecondsPerRequest, 1)) | \(format(r.candidatesPerSecond, 0)) | "
                         + "\(format(r.forwardGFLOPS, 1)) | \(format(r.kernelGFLOPS, 1)) | \(format(r.fractionOfKernel, 2)) |")
        }
        lines.append("\nmodel: \(model)")
        if requestsPerBatch > 1 {
            lines.append("batches of \(requestsPerBatch) requests scored together (as the server batches them); figures per request")
        }
        return lines.joined(separator: "\n")
    }
}
