import ArgumentParser
import Bench

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Benchmarks (one core; ratios against the issue's anchors).",
        subcommands: [BenchKernel.self, BenchModel.self, BenchTrain.self])
}

struct BenchOutput: ParsableArguments {
    @Flag(help: "Print JSON instead of a Markdown table.") var json = false

    func emit(_ report: some Encodable, markdown: String) throws {
        print(json ? try report.jsonString() : markdown)
    }
}

struct BenchKernel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernel",
        abstract: "GEMM GFLOP/s (bias + ReLU epilogue) against numpy's OpenBLAS sgemm, one thread each.")
    @OptionGroup var output: BenchOutput
    @Option(help: "The numpy anchor script.") var reference = "scripts/numpy_sgemm.py"
    @Flag(help: "Skip the numpy anchor.") var noReference = false

    func run() throws {
        let report = try KernelReport.measure(referenceScript: noReference ? nil : reference)
        try output.emit(report, markdown: report.markdown)
    }
}

struct BenchModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Forward-pass latency and throughput per request (N = 1, 16, 256 candidates by default), one core.",
        discussion: """
            --against onnxruntime: the same model exported to ONNX (Proto/python/scenescore_onnx) in ONNX Runtime, \
            one thread each, both pinned to --core, interleaved rounds, N = 1, 4, 16, 64, 256, 1024; the scores must \
            agree within 1e-5 before anything is timed. Needs python3 with onnx and onnxruntime.
            """)
    enum Anchor: String, ExpressibleByArgument, CaseIterable { case onnxruntime }

    @OptionGroup var output: BenchOutput
    @OptionGroup var model: ModelDirectoryOption
    @Option(help: "Scene whose head to use (default: the first).") var scene: String?
    @Option(help: "Compare with this runtime on the same model: onnxruntime.") var against: Anchor?
    @Option(help: "Candidates per request, comma-separated (default 1,16,256; with --against 1,4,16,64,256,1024).",
            transform: parseCounts)
    var candidates: [Int]?
    @Option(help: "Requests scored together in one forward pass, as the server batches requests that arrive together (figures per request; not with --against).")
    var requests = 1
    @Option(help: "With --against: interleaved rounds (the figures are medians over rounds).") var rounds = 10
    @Option(help: "With --against: the core both sides are pinned to.") var core = 0
    @Option(help: "With --against onnxruntime: the ONNX Runtime side.") var ortReference = "scripts/bench/ort_reference.py"

    func validate() throws {
        guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1") }
        guard requests >= 1 else { throw ValidationError("--requests must be at least 1") }
        guard requests == 1 || against == nil else { throw ValidationError("--requests cannot be combined with --against (the ONNX graph scores one request)") }
    }

    func run() throws {
        try model.ensureModel()
        switch against {
        case .onnxruntime:
            let report = try OnnxRuntimeReport.measure(
                modelDirectory: model.modelDir, scene: scene, candidates: candidates ?? OnnxRuntimeReport.standardCandidates,
                rounds: rounds, core: core, script: ortReference)
            try output.emit(report, markdown: report.markdown)
        case nil:
            let report = try ModelReport.measure(modelDirectory: model.modelDir, scene: scene, candidates: candidates ?? [1, 16, 256],
                                                 requests: requests)
            try output.emit(report, markdown: report.markdown)
        }
    }
}

/// "1,16,256" → [1, 16, 256]; every count ≥ 1.
private func parseCounts(_ text: String) throws -> [Int] {
    try text.split(separator: ",", omittingEmptySubsequences: false).map { part in
        guard let n = Int(part), n >= 1 else {
            throw ValidationError("'\(part)' is not a count ≥ 1 (expected e.g. 1,16,256)")
        }
        return n
    }
}

struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Training samples/s on 1 and 2 threads and the fraction of the kernel's GFLOP/s reached on the same products.")
    @OptionGroup var output: BenchOutput
    @Option(help: "Mini-batch size.") var batchSize = 512

    func run() throws {
        let report = TrainingReport.measure(batchSize: batchSize)
        try output.emit(report, markdown: report.markdown)
    }
}
