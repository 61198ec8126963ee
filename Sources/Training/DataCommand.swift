import Foundation
import Model

/// `scenescore datagen`: writes a generated world as .npy directories plus world.json.
public enum DataGeneration {
    public struct Summary: Codable, Sendable {
        public struct SceneSummary: Codable, Sendable {
            public let name: String, role: String
            public let trainImpressions: Int, testImpressions: Int
            public let clickRate: Double
            /// Soft AUC of η on the test set.
            public let aucStar: Double?
            /// Target only: soft AUC of the source label function on the test set.
            public let zeroShotCeiling: Double?
        }
        public let config: WorldConfig
        public let scenes: [SceneSummary]
    }

    public static func summarize(_ world: World) -> Summary {
        Summary(config: world.config, scenes: world.scenes.map { s in
            .init(name: s.name, role: s.config.role, trainImpressions: s.train.count, testImpressions: s.test.count,
                  clickRate: s.train.clickRate, aucStar: s.aucStar,
                  zeroShotCeiling: s.config.role == "target" ? world.zeroShotCeiling : nil)
        })
    }

    /// `<out>/<scene>/{train,test}/*.npy` and `<out>/world.json`.
    public static func write(_ world: World, to out: String) throws -> Summary {
        for s in world.scenes {
            try s.train.write(to: "\(out)/\(s.name)/train")
            try s.test.write(to: "\(out)/\(s.name)/test")
        }
        let summary = summarize(world)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try Model.AtomicFile.write(Array(try encoder.encode(summary)), to: "\(out)/world.json")
        return summary
    }
}
