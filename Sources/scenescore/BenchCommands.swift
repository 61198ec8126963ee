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
        abstract: "Forward-pass latency and throughput per request for N = 1, 16, 256 candidates, one core.")
    @OptionGroup var output: BenchOutput
    @OptionGroup var model: ModelDirectoryOption
    @Option(help: "Scene whose head to use (default: the first).") var scene: String?

    func run() throws {
        try model.ensureModel()
        let report = try ModelReport.measure(modelDirectory: model.modelDir, scene: scene)
        try output.emit(report, markdown: report.markdown)
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
