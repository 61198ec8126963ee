import Foundation
import Kernels

/// `scenescore bench kernel`: the GEMM kernel against numpy's OpenBLAS sgemm, side by side.
public struct KernelReport: Encodable, Sendable {
    public struct Row: Encodable, Sendable {
        public let m: Int, k: Int, n: Int
        public let scenescoreGFLOPS: Double
        public let openblasGFLOPS: Double?
        public var ratio: Double? { openblasGFLOPS.map { scenescoreGFLOPS / $0 } }
        /// The target ratio for this M: ≥ 1.2 where M ≤ 16, ≥ 0.9 where M ≥ 64.
        public var target: Double? { m <= 16 ? 1.2 : (m >= 64 ? 0.9 : nil) }
        public var meetsTarget: Bool? {
            guard let ratio, let target else { return nil }
            return ratio >= target
        }
        enum CodingKeys: String, CodingKey { case m, k, n, scenescoreGFLOPS, openblasGFLOPS, ratio, target, meetsTarget }
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(m, forKey: .m); try c.encode(k, forKey: .k); try c.encode(n, forKey: .n)
            try c.encode(scenescoreGFLOPS, forKey: .scenescoreGFLOPS)
            try c.encodeIfPresent(openblasGFLOPS, forKey: .openblasGFLOPS)
            try c.encodeIfPresent(ratio, forKey: .ratio)
            try c.encodeIfPresent(target, forKey: .target)
            try c.encodeIfPresent(meetsTarget, forKey: .meetsTarget)
        }
    }

    public let reference: String?
    /// scenescore's GEMM loop (`KernelISA`) and why it was chosen.
    public let kernels: String
    public let rows: [Row]

    private struct NumpyOutput: Decodable {
        struct Result: Decodable { let m: Int, k: Int, n: Int, gflops: Double }
        let library: String
        let results: [Result]
    }

    /// Measures every standard shape with the Swift kernel, then (unless `referenceScript` is
    /// nil) the same shapes with numpy in a child process.
    public static func measure(referenceScript: String?, shapes: [KernelBenchmark.Shape] = KernelBenchmark.standardShapes) throws -> KernelReport {
        let bench = KernelBenchmark()
        let ours = shapes.map { bench.gflops($0) }
        var theirs: [KernelBenchmark.Shape: Double] = [:]
        var library: String?
        if let referenceScript {
            let arg = String(decoding: try JSONEncoder().encode(shapes), as: UTF8.self)
            let out = try PythonReference.run(script: referenceScript, arguments: [arg], decoding: NumpyOutput.self)
            library = out.library
            for r in out.results { theirs[.init(m: r.m, k: r.k, n: r.n)] = r.gflops }
        }
        let rows = zip(shapes, ours).map { s, g in
            Row(m: s.m, k: s.k, n: s.n, scenescoreGFLOPS: g, openblasGFLOPS: theirs[s])
        }
        return KernelReport(reference: library, kernels: "\(KernelISA.active.rawValue) (\(KernelISA.selection.reason))", rows: rows)
    }

    public var markdown: String {
        var lines = ["| M | K | N | scenescore GFLOP/s | OpenBLAS GFLOP/s | ratio | target |",
                     "|---:|---:|---:|---:|---:|---:|:---|"]
        for r in rows {
            let target = r.target.map { t in "≥ \(format(t, 1)) " + ((r.meetsTarget ?? false) ? "met" : "MISSED") } ?? "–"
            lines.append("| \(r.m) | \(r.k) | \(r.n) | \(format(r.scenescoreGFLOPS, 1)) | "
                         + "\(r.openblasGFLOPS.map { format($0, 1) } ?? "–") | \(r.ratio.map { format($0, 2) } ?? "–") | \(target) |")
        }
        lines.append("\nscenescore kernels: \(kernels) (SCENESCORE_KERNEL_ISA=avx2 measures the other loop)")
        if let reference { lines.append("anchor: \(reference)") }
        return lines.joined(separator: "\n")
    }
}

func format(_ x: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", x) }

extension Encodable {
    /// Pretty, key-sorted JSON for the benchmarks' --json output.
    public func jsonString() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}
