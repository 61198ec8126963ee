import ArgumentParser

struct SceneScore: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scenescore",
        abstract: "A model server for e-commerce shopping-guide ranking.",
        subcommands: [ModelCommand.self, ScoreCommand.self, BenchCommand.self])
}

CPUFeatures.requireBuildISA()
SceneScore.main()
