import ArgumentParser
import Bench
import Kernels

struct SceneScore: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scenescore",
        abstract: "A model server for e-commerce shopping-guide ranking.",
        subcommands: [BenchCommand.self])
}

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench", abstract: "Benchmarks.",
                                                    subcommands: [BenchKernel.self])
}

struct BenchKernel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernel",
        abstract: "GEMM GFLOP/s (bias + ReLU epilogue) against numpy's OpenBLAS sgemm, one thread each.")
    @Flag(help: "Print JSON instead of a Markdown table.") var json = false
    @Option(help: "The numpy anchor script.") var reference = "scripts/numpy_sgemm.py"
    @Flag(help: "Skip the numpy anchor.") var noReference = false

    func run() throws {
        let report = try KernelReport.measure(referenceScript: noReference ? nil : reference)
        print(json ? try report.jsonString() : report.markdown)
    }
}

CPUFeatures.requireBuildISA()
SceneScore.main()
