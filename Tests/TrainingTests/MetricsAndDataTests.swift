import Foundation
import Model
import Testing
@testable import Training

@Suite struct MetricsTests {
    static func phi(_ x: Double) -> Double { 0.5 * erfc(-x / 2.0.squareRoot()) }

    /// AUC* for a probit link with η ~ N(μ, s²), from its closed form
    /// ∫∫_{a>b} Φ(a)(1−Φ(b)) φ(a) φ(b) da db / (E[Φ(η)] · E[1−Φ(η)]), with E[Φ(η)] = Φ(μ/√(1+s²)),
    /// the double integral reduced to one running sum on a fine grid.
    static func probitAUCStar(mu: Double, s: Double) -> Double {
        let steps = 20_000, lo = mu - 9 * s, hi = mu + 9 * s, h = (hi - lo) / Double(steps)
        var below = 0.0, numerator = 0.0
        for i in 0..<steps {
            let x = lo + (Double(i) + 0.5) * h
            let density = exp(-0.5 * ((x - mu) / s) * ((x - mu) / s)) / (s * (2 * Double.pi).squareRoot()) * h
            numerator += phi(x) * density * (below + 0.5 * (1 - phi(x)) * density)
            below += (1 - phi(x)) * density
        }
        let mean = phi(mu / (1 + s * s).squareRoot())
        return numerator / (mean * (1 - mean))
    }

    @Test(arguments: [(-1.5, 1.0), (0.0, 0.5), (-2.5, 1.5)])
    func softAUCMatchesTheClosedFormProbitCase(mu: Double, s: Double) {
        var rng = Random(seed: 7)
        let eta = (0..<200_000).map { _ in Float(mu + s * rng.normal()) }
        let p = eta.map { Float(Self.phi(Double($0))) }
        let expected = Self.probitAUCStar(mu: mu, s: s)
        let soft = RankingMetrics.softAUC(scores: eta, probabilities: p)
        #expect(abs(soft - expected) < 0.003, "soft AUC \(soft), closed form \(expected)")
        // Labels drawn from p: the ordinary AUC of η estimates the same quantity, noisier.
        let labels = p.map { rng.uniform() < Double($0) ? Float(1) : 0 }
        let auc = RankingMetrics.auc(scores: eta, labels: labels)
        #expect(abs(auc - expected) < 0.012, "AUC \(auc), closed form \(expected)")
    }

    @Test func aucCountsTiesAsHalfAndMatchesPairCounting() {
        var rng = Random(seed: 3)
        let scores = (0..<300).map { _ in Float(rng.below(12)) }   // many ties
        let labels = (0..<300).map { _ in rng.uniform() < 0.3 ? Float(1) : 0 }
        var wins = 0.0, pairs = 0.0
        for i in 0..<300 where labels[i] == 1 {
            for j in 0..<300 where labels[j] == 0 {
                pairs += 1
                wins += scores[i] > scores[j] ? 1 : scores[i] == scores[j] ? 0.5 : 0
            }
        }
        #expect(abs(RankingMetrics.auc(scores: scores, labels: labels) - wins / pairs) < 1e-12)
        // Soft AUC with fractional p against the O(n²) definition, ties and j ≠ i included.
        let p = (0..<300).map { _ in Float(rng.uniform()) }
        var num = 0.0
        for i in 0..<300 { for j in 0..<300 where j != i {
            let w = Double(p[i]) * (1 - Double(p[j]))
            num += w * (scores[i] > scores[j] ? 1 : scores[i] == scores[j] ? 0.5 : 0)
        } }
        let sp = p.reduce(0.0) { $0 + Double($1) }, sq = p.reduce(0.0) { $0 + 1 - Double($1) }
        let spq = p.reduce(0.0) { $0 + Double($1) * (1 - Double($1)) }
        #expect(abs(RankingMetrics.softAUC(scores: scores, probabilities: p) - num / (sp * sq - spq)) < 1e-9)
    }

    /// A diverged model's scores: the AUC is undefined, and computing it must not hang.
    @Test func aucOfNaNScoresIsNaN() {
        #expect(RankingMetrics.auc(scores: [0.3, .nan, 0.1, .nan], labels: [1, 0, 0, 1]).isNaN)
    }

    @Test func loglossIsStableForLargeLogits() {
        let l = RankingMetrics.logloss(logits: [100, -100, 0], labels: [1, 0, 1])
        #expect(abs(l - log(2) / 3) < 1e-9)
    }
}

@Suite struct DataTests {
    static func tinyWorld(seed: UInt64 = 5, rho: Double = 0.8) -> WorldConfig {
        var w = WorldConfig()
        w.seed = seed; w.rho = rho; w.users = 500
        w.scenes = [
            .init(name: "apparel", role: "source", items: 200, categories: 5, meanLogPrice: 3, trainImpressions: 3000, testImpressions: 1000),
            .init(name: "electronics", role: "target", items: 100, categories: 4, meanLogPrice: 5, trainImpressions: 2000, testImpressions: 1000),
        ]
        return w
    }

    @Test func generationIsDeterministicAndOnlyTargetLabelsDependOnRho() {
        let a = WorldGenerator.generate(Self.tinyWorld()), b = WorldGenerator.generate(Self.tinyWorld())
        #expect(a.target.train.labels == b.target.train.labels && a.target.test.eta == b.target.test.eta)
        let other = WorldGenerator.generate(Self.tinyWorld(rho: 0.0))
        #expect(other.sources[0].train.labels == a.sources[0].train.labels)
        #expect(other.target.train.itemIDs == a.target.train.itemIDs && other.target.train.contextIDs == a.target.train.contextIDs)
        #expect(other.target.test.eta != a.target.test.eta)
        let reseeded = WorldGenerator.generate(Self.tinyWorld(seed: 6))
        #expect(reseeded.sources[0].train.labels != a.sources[0].train.labels)
    }

    @Test func skewSymmetricRotationIsOrthogonal() {
        var rng = Random(seed: 9)
        let r = WorldGenerator.skewSymmetricOrthogonal(8, &rng)
        for i in 0..<8 { for j in 0..<8 {
            #expect(abs(r[i][j] + r[j][i]) < 1e-9)
            let dot = (0..<8).reduce(0.0) { $0 + r[i][$1] * r[j][$1] }
            #expect(abs(dot - (i == j ? 1 : 0)) < 1e-9)
        } }
    }

    @Test func npyRoundTripAndValidation() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("npy-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let world = WorldGenerator.generate(Self.tinyWorld())
        try world.target.test.write(to: dir)
        let back = try Impressions(directory: dir)
        #expect(back.count == world.target.test.count && back.itemDense == world.target.test.itemDense)
        #expect(back.contextIDs == world.target.test.contextIDs && back.eta == world.target.test.eta && back.etaSource != nil)
        // A truncated file and a wrong dtype are refused with the file named.
        let labels = dir + "/labels.npy"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: labels))
        try bytes.prefix(bytes.count - 3).write(to: URL(fileURLWithPath: labels))
        #expect(throws: NumpyFormatError.self) { try Impressions(directory: dir) }
        try NumpyArray<UInt32>(shape: [back.count], values: [UInt32](repeating: 1, count: back.count)).write(to: labels)
        do { _ = try Impressions(directory: dir); Issue.record("a uint32 labels file was accepted") }
        catch let e as NumpyFormatError { #expect(e.description.contains("labels.npy") && e.description.contains("float32")) }
    }

    @Test func worldConfigRejectsUnknownKeys() {
        #expect(throws: ConfigError.self) { try WorldConfig.load(json: Data(#"{"userz": 5}"#.utf8)) }
        #expect(throws: ConfigError.self) { try WorldConfig.load(json: Data(#"{"latent": 7}"#.utf8)) }
        #expect((try? WorldConfig.load(json: Data(#"{"users": 5}"#.utf8)))?.users == 5)
    }
}
