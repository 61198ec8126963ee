import Foundation
import Kernels
import Model
import Training

/// `scenescore bench train`: training samples/s on one and two cores, and the fraction of the
/// kernel's GFLOP/s the training loop reaches on its own product shapes.
public struct TrainingReport: Encodable, Sendable {
    public struct Row: Encodable, Sendable {
        public let threads: Int
        public let samplesPerSecond: Double
        public let samplesPerSecondPerCore: Double
        /// Forward + backward GEMM FLOPs per second of wall time, per core.
        public let trainingGFLOPSPerCore: Double
        /// The kernel alone, one core, on the same products (forward, dX = dY·W, dW = dYᵀ·X).
        public let kernelGFLOPS: Double
        public let fractionOfKernel: Double
    }
    public let batchSize: Int
    public let rows: [Row]

    public static func measure(threadCounts: [Int] = [1, 2], batchSize: Int = 512) -> TrainingReport {
        let spec = ExperimentConfig()
        var rows: [Row] = []
        for threads in threadCounts {
            let log = TrainingThroughput.measure(threads: threads, batchSize: batchSize)
            let shapes = productShapes(spec, rows: batchSize / threads)
            let flops = shapes.reduce(0.0) { $0 + 2.0 * Double($1.m * $1.k * $1.n) }
            let kernel = flops / ModelReport.kernelTime(shapes) / 1e9
            let perCore = log.flops / log.seconds / 1e9 / Double(threads)
            rows.append(Row(threads: threads, samplesPerSecond: log.samplesPerSecond,
                            samplesPerSecondPerCore: log.samplesPerSecond / Double(threads),
                            trainingGFLOPSPerCore: perCore, kernelGFLOPS: kernel, fractionOfKernel: perCore / kernel))
        }
        return TrainingReport(batchSize: batchSize, rows: rows)
    }

    /// One worker's products per step: per layer the forward product (M, in, out), dX = dY·W
    /// (M, out, in) and dW = dYᵀ·X (out, M, in).
    static func productShapes(_ e: ExperimentConfig, rows m: Int) -> [KernelBenchmark.Shape] {
        var layers: [(Int, Int)] = []
        var width = e.backbone.contextWidth + e.backbone.itemWidth
        for h in e.backbone.hidden { layers.append((width, h)); width = h }
        layers.append((width, e.bottleneck)); layers.append((e.bottleneck, width))
        for t in e.tower { layers.append((width, t)); width = t }
        layers.append((width, 1))
        return layers.flatMap { (k, n) in
            [KernelBenchmark.Shape(m: m, k: k, n: n), KernelBenchmark.Shape(m: m, k: n, n: k), KernelBenchmark.Shape(m: n, k: m, n: k)]
        }
    }

    public var markdown: String {
        var lines = ["| threads | samples / s | samples / s per core | training GFLOP/s per core | kernel GFLOP/s (same products, 1 core) | fraction |",
                     "|---:|---:|---:|---:|---:|---:|"]
        for r in rows {
            lines.append("| \(r.threads) | \(format(r.samplesPerSecond, 0)) | \(format(r.samplesPerSecondPerCore, 0)) | \(format(r.trainingGFLOPSPerCore, 1)) | \(format(r.kernelGFLOPS, 1)) | \(format(r.fractionOfKernel, 2)) |")
        }
        lines.append("\nmulti-task pretraining, default architecture (\(ExperimentConfig().backbone.hidden) + heads), batch \(batchSize), 300k impressions")
        return lines.joined(separator: "\n")
    }
}
