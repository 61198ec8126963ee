import ArgumentParser
import H2

struct SceneScore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scenescore",
        abstract: "A model server for e-commerce shopping-guide ranking.",
        subcommands: [ServeCommand.self, SceneCommand.self, ModelCommand.self, ScoreCommand.self, DatagenCommand.self, TrainCommand.self, EvalCommand.self, BenchCommand.self, LoadCommand.self])
}

@main
struct Main {
    static func main() async {
        CPUFeatures.requireBuildISA()
        TLSContext.useThreadCachingAllocator()  // before anything touches OpenSSL
        await SceneScore.main()
    }
}
