import Foundation
import Model

/// One scene of a generated world: its training and test impressions and the ceilings.
public struct SceneData: Sendable {
    public let config: WorldConfig.Scene
    public var index: Int
    public let train: Impressions
    public let test: Impressions
    /// Soft AUC of the true logit η on the test impressions: the Bayes-optimal AUC (nil for
    /// data that did not come from the generator).
    public var aucStar: Double? {
        test.eta.map { eta in RankingMetrics.softAUC(scores: eta, probabilities: eta.map { Float(sigmoid(Double($0))) }) }
    }
    public var name: String { config.name }
}

/// A generated world: every scene, with ids laid out so that users are shared across scenes
/// and items, categories and brands are not.
public struct World: Sendable {
    public let config: WorldConfig
    public let scenes: [SceneData]
    /// Where the data were read from; nil for a generated world.
    public var dataDirectory: String?
    public var isGenerated: Bool { dataDirectory == nil }

    init(config: WorldConfig, scenes: [SceneData]) { self.config = config; self.scenes = scenes }

    /// Reads `<directory>/<scene>/{train,test}/*.npy` for the named scenes: .npy data from
    /// anywhere (numpy, pandas), with or without η.
    public init(directory: String, sources: [String], target: String) throws {
        guard !sources.isEmpty, !sources.contains(target) else { throw ConfigError("name one or more source scenes and a different target scene") }
        var scenes: [SceneData] = []
        for (i, name) in (sources + [target]).enumerated() {
            let train = try Impressions(directory: "\(directory)/\(name)/train")
            let test = try Impressions(directory: "\(directory)/\(name)/test")
            let sc = WorldConfig.Scene(name: name, role: name == target ? "target" : "source", items: 0, categories: 0,
                                       meanLogPrice: 0, trainImpressions: train.count, testImpressions: test.count)
            scenes.append(SceneData(config: sc, index: i, train: train, test: test))
        }
        var config = WorldConfig()
        config.scenes = scenes.map(\.config)
        self.config = config
        self.scenes = scenes
        self.dataDirectory = directory
    }
    public var sources: [SceneData] { scenes.filter { $0.config.role == "source" } }
    public var target: SceneData { scenes.first { $0.config.role == "target" }! }

    /// Zero-shot ceiling: soft AUC of the source label function on the target test set.
    public var zeroShotCeiling: Double? {
        let t = target.test
        guard let source = t.etaSource, let eta = t.eta else { return nil }
        return RankingMetrics.softAUC(scores: source, probabilities: eta.map { Float(sigmoid(Double($0))) })
    }
}

/// The generator of shared TRANSFER-BENCHMARK.md. Every random quantity comes from its own
/// named stream (`Random(seed:stream:)`), so the sources, the users and the target's
/// impressions are identical across ρ and only the target's labels change — paired comparisons.
public enum WorldGenerator {
    /// Per-scene id offsets: item = scene·1e6 + i, category = scene·1e3 + c, brand = scene·1e5 + b.
    static func itemID(scene: Int, item: Int) -> UInt32 { UInt32(scene * 1_000_000 + item) }
    static func categoryID(scene: Int, category: Int) -> UInt32 { UInt32(scene * 1_000 + category) }
    static func brandID(scene: Int, brand: Int) -> UInt32 { UInt32(scene * 100_000 + brand) }

    public static func generate(_ config: WorldConfig) -> World {
        let k = config.latent, seed = config.seed
        // Users, shared by all scenes.
        var rng = Random(seed: seed, stream: "users")
        let z = (0..<config.users).map { _ in rng.normals(k) }
        let priceSensitivity = (0..<config.users).map { _ in rng.normal() }
        let logActivity = (0..<config.users).map { _ in rng.normal() * config.activitySigma }
        let userSampler = WeightedSampler(weights: logActivity.map { Foundation.exp($0) })

        var projectionRNG = Random(seed: seed, stream: "content-projection")
        let projection = (0..<config.contentDims).map { _ in projectionRNG.normals(k, scale: 1 / Double(k).squareRoot()) }
        var rotationRNG = Random(seed: seed, stream: "concept-rotation")
        let rotation = skewSymmetricOrthogonal(k, &rotationRNG)
        let rho = config.rho, shear = (1 - rho * rho).squareRoot()

        var scenes: [SceneData] = []
        for (s, sc) in config.scenes.enumerated() {
            let isTarget = sc.role == "target"
            var viewRNG = Random(seed: seed, stream: "view.\(sc.name)")
            let view = z.map { zu in zu.map { $0 + config.userViewNoise * viewRNG.normal() } }

            // Items: category, brand inside it, latent, price, popularity, content.
            var itemRNG = Random(seed: seed, stream: "items.\(sc.name)")
            let categoryLatent = (0..<sc.categories).map { _ in itemRNG.normals(k) }
            let categoryPrice = (0..<sc.categories).map { _ in sc.meanLogPrice + config.categoryPriceSigma * itemRNG.normal() }
            let brandLatent = (0..<(sc.categories * sc.brandsPerCategory)).map { _ in itemRNG.normals(k) }
            var category = [Int](), brand = [Int](), latent = [[Double]](), logPrice = [Double]()
            for _ in 0..<sc.items {
                let c = itemRNG.below(sc.categories), b = c * sc.brandsPerCategory + itemRNG.below(sc.brandsPerCategory)
                let eps = itemRNG.normals(k)
                var v = [Double](repeating: 0, count: k)
                for a in 0..<k {
                    let mixed: Double = categoryLatent[c][a] + 0.5 * brandLatent[b][a] + 0.5 * eps[a]
                    v[a] = mixed / 1.5.squareRoot()
                }
                latent.append(v)
                logPrice.append(categoryPrice[c] + config.itemPriceSigma * itemRNG.normal())
                category.append(c); brand.append(b)
            }
            var rank = Array(1...sc.items)
            itemRNG.shuffle(&rank)
            let weights = rank.map { Foundation.pow(Double($0), -config.popularityExponent) }
            let total = weights.reduce(0, +)
            let logNPopularity = weights.map { Foundation.log(Double(sc.items) * $0 / total) }
            let itemSampler = WeightedSampler(weights: weights)
            let meanPrice = logPrice.reduce(0, +) / Double(sc.items)
            var contentRNG = Random(seed: seed, stream: "content.\(sc.name)")
            let content: [[Float]] = latent.map { v in
                projection.map { row in Float(zip(row, v).reduce(0) { $0 + $1.0 * $1.1 } + config.contentNoise * contentRNG.normal()) }
            }
            // The interaction matrix: I for sources, ρI + √(1−ρ²)R for the target.
            func interaction(_ zu: [Double], _ v: [Double], concept: Bool) -> Double {
                var acc = 0.0
                for a in 0..<k {
                    var mv = concept ? rho * v[a] : v[a]
                    if concept { for b in 0..<k { mv += shear * rotation[a][b] * v[b] } }
                    acc += zu[a] * mv
                }
                return acc
            }

            func impressions(split: String, count: Int) -> Impressions {
                var out = Impressions(contextIDWidth: 1, contextDenseWidth: config.contextDense, itemIDWidth: 3,
                                      itemDenseWidth: config.contentDims + 1)
                out.count = count
                var drawRNG = Random(seed: seed, stream: "impressions.\(sc.name).\(split)")
                var labelRNG = Random(seed: seed, stream: "labels.\(sc.name).\(split)")
                var eta = [Float](), etaSource = [Float]()
                for _ in 0..<count {
                    let u = userSampler.draw(&drawRNG), i = itemSampler.draw(&drawRNG)
                    let common = config.bias - config.gamma * priceSensitivity[u] * (logPrice[i] - meanPrice)
                        + config.kappa * logNPopularity[i]
                    let scale = config.beta / Double(k).squareRoot()
                    let e = common + scale * interaction(view[u], latent[i], concept: isTarget)
                    eta.append(Float(e))
                    if isTarget { etaSource.append(Float(common + scale * interaction(view[u], latent[i], concept: false))) }
                    out.labels.append(labelRNG.uniform() < sigmoid(e) ? 1 : 0)
                    out.contextIDs.append(UInt32(u))
                    out.contextDense.append(Float(logActivity[u] / config.activitySigma))
                    out.contextDense += repeatElement(0, count: config.contextDense - 1)
                    out.itemIDs += [itemID(scene: s, item: i), categoryID(scene: s, category: category[i]),
                                    brandID(scene: s, brand: brand[i])]
                    out.itemDense += content[i]
                    out.itemDense.append(Float(logPrice[i] - meanPrice))
                }
                out.eta = eta
                out.etaSource = isTarget ? etaSource : nil
                return out
            }
            scenes.append(SceneData(config: sc, index: s, train: impressions(split: "train", count: sc.trainImpressions),
                                    test: impressions(split: "test", count: sc.testImpressions)))
        }
        return World(config: config, scenes: scenes)
    }

    /// R = Q J Qᵀ with Q a random orthogonal matrix and J = diag([[0, 1], [−1, 0]], …): then
    /// Rᵀ = −R and R Rᵀ = I, so ρI + √(1−ρ²)R is orthogonal for every ρ.
    static func skewSymmetricOrthogonal(_ k: Int, _ rng: inout Random) -> [[Double]] {
        // Q from Gram–Schmidt on Gaussian columns.
        var q: [[Double]] = []
        while q.count < k {
            var v = rng.normals(k)
            for u in q {
                let d = zip(u, v).reduce(0) { $0 + $1.0 * $1.1 }
                for j in 0..<k { v[j] -= d * u[j] }
            }
            let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
            if norm > 1e-6 { q.append(v.map { $0 / norm }) }
        }
        // q holds Q's columns: R = Σ over pairs (q_{2m} q_{2m+1}ᵀ − q_{2m+1} q_{2m}ᵀ).
        var r = [[Double]](repeating: [Double](repeating: 0, count: k), count: k)
        for m in stride(from: 0, to: k, by: 2) {
            for a in 0..<k { for b in 0..<k { r[a][b] += q[m][a] * q[m + 1][b] - q[m + 1][a] * q[m][b] } }
        }
        return r
    }
}
