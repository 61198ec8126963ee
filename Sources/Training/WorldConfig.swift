import Foundation

/// Parameters of the synthetic multi-scene world (shared TRANSFER-BENCHMARK.md, "Generator").
/// Defaults are the benchmark's; a JSON config file overrides any subset of keys, and an
/// unknown key is an error (a typo must not silently fall back to a default).
public struct WorldConfig: Codable, Sendable, Equatable {
    public struct Scene: Codable, Sendable, Equatable {
        public var name: String
        /// "source" or "target".
        public var role: String
        public var items: Int
        public var categories: Int
        public var brandsPerCategory: Int
        public var meanLogPrice: Double
        /// Training impressions (for the target: the pool the fractions are prefixes of).
        public var trainImpressions: Int
        public var testImpressions: Int

        public init(name: String, role: String, items: Int, categories: Int, brandsPerCategory: Int = 10,
                    meanLogPrice: Double, trainImpressions: Int, testImpressions: Int) {
            self.name = name; self.role = role; self.items = items; self.categories = categories
            self.brandsPerCategory = brandsPerCategory; self.meanLogPrice = meanLogPrice
            self.trainImpressions = trainImpressions; self.testImpressions = testImpressions
        }
    }

    public var seed: UInt64 = 1
    /// Latent size k (even: the concept-shift rotation is skew-symmetric).
    public var latent: Int = 8
    public var users: Int = 20_000
    /// τ: per-scene noise on each user's latent view.
    public var userViewNoise: Double = 0.3
    /// σ of log(activity); users are drawn in proportion to activity.
    public var activitySigma: Double = 1.0
    public var categoryPriceSigma: Double = 0.5
    public var itemPriceSigma: Double = 0.5
    /// α: popularity ∝ rank^−α.
    public var popularityExponent: Double = 1.1
    public var bias: Double = -3.3
    public var beta: Double = 1.0
    public var gamma: Double = 0.3
    public var kappa: Double = 0.1
    /// ρ: correlation of the target's interaction with the sources'.
    public var rho: Double = 0.8
    public var contentDims: Int = 16
    /// σ_c: noise on the content embedding.
    public var contentNoise: Double = 0.5
    /// Context dense columns written (the serving schema has 4); column 0 is standardised
    /// log-activity, the rest are zero.
    public var contextDense: Int = 4
    public var scenes: [Scene] = [
        Scene(name: "apparel", role: "source", items: 5000, categories: 20, meanLogPrice: 3.0, trainImpressions: 300_000, testImpressions: 50_000),
        Scene(name: "beauty", role: "source", items: 5000, categories: 20, meanLogPrice: 2.5, trainImpressions: 300_000, testImpressions: 50_000),
        Scene(name: "home", role: "source", items: 5000, categories: 20, meanLogPrice: 3.5, trainImpressions: 300_000, testImpressions: 50_000),
        Scene(name: "electronics", role: "target", items: 3000, categories: 15, meanLogPrice: 5.0, trainImpressions: 300_000, testImpressions: 200_000),
    ]

    public init() {}

    public var sources: [Scene] { scenes.filter { $0.role == "source" } }
    public var target: Scene? { scenes.first { $0.role == "target" } }

    /// Defaults overridden by the keys of a JSON object.
    public static func load(json: Data) throws -> WorldConfig {
        let config = try decodeOverridingDefaults(WorldConfig(), json: json, what: "world config")
        try config.validate()
        return config
    }

    public func validate() throws {
        guard latent > 0, latent % 2 == 0, latent <= 256 else { throw ConfigError("latent must be even and 2…256 (got \(latent))") }
        guard users > 0, contentDims > 0, contextDense >= 1 else { throw ConfigError("users, contentDims and contextDense must be positive") }
        guard (-1...1).contains(rho) else { throw ConfigError("rho must be in [-1, 1] (got \(rho))") }
        guard !sources.isEmpty, scenes.filter({ $0.role == "target" }).count == 1 else {
            throw ConfigError("a world needs at least one source scene and exactly one target scene")
        }
        for s in scenes {
            guard s.role == "source" || s.role == "target" else { throw ConfigError("scene '\(s.name)': role must be source or target") }
            guard s.items > 0, s.categories > 0, s.brandsPerCategory > 0, s.trainImpressions > 0, s.testImpressions > 0 else {
                throw ConfigError("scene '\(s.name)': sizes must be positive")
            }
        }
        guard Set(scenes.map(\.name)).count == scenes.count else { throw ConfigError("scene names repeat") }
    }
}

public struct ConfigError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Decodes a JSON object as `defaults` with the object's keys replaced — nested objects key by
/// key — so a config file names only what it changes (`{"pretrain": {"epochs": 3}}`). An
/// unknown key is an error: a typo must not silently fall back to a default.
func decodeOverridingDefaults<T: Codable>(_ defaults: T, json: Data, what: String) throws -> T {
    let base = try JSONSerialization.jsonObject(with: JSONEncoder().encode(defaults)) as! [String: Any]
    guard let overrides = try JSONSerialization.jsonObject(with: json) as? [String: Any] else {
        throw ConfigError("the \(what) must be a JSON object")
    }
    func merge(_ base: [String: Any], _ overrides: [String: Any], path: String) throws -> [String: Any] {
        var out = base
        for (key, value) in overrides {
            guard let old = base[key] else {
                throw ConfigError("unknown \(what) key '\(path)\(key)' (known there: \(base.keys.sorted().joined(separator: ", ")))")
            }
            if let oldObject = old as? [String: Any], let newObject = value as? [String: Any], !oldObject.isEmpty {
                out[key] = try merge(oldObject, newObject, path: "\(path)\(key).")
            } else {
                out[key] = value
            }
        }
        return out
    }
    do {
        return try JSONDecoder().decode(T.self, from: JSONSerialization.data(withJSONObject: try merge(base, overrides, path: "")))
    } catch let error as ConfigError {
        throw error
    } catch {
        throw ConfigError("\(what): \(error)")
    }
}
