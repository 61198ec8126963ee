import Foundation
import H2
import Wire

/// A servable scene as `GET /v1/scenes` describes it (Proto/WIRE.md §6.3): what a request must
/// carry, and what the response holds.
public struct SceneInfo: Sendable, Equatable {
    public var name: String
    public var headVersion: String
    public var outputs: [String]
    public var schema: WireSchema

    public init(name: String, headVersion: String, outputs: [String], schema: WireSchema) {
        self.name = name
        self.headVersion = headVersion
        self.outputs = outputs
        self.schema = schema
    }

    /// Parses the body of `GET /v1/scenes`.
    public static func parseCatalog(_ body: [UInt8]) throws(LoadError) -> [SceneInfo] {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
              let scenes = object["scenes"] as? [[String: Any]] else {
            throw LoadError("GET /v1/scenes did not answer {\"scenes\": [...]}: \(String(decoding: body.prefix(200), as: UTF8.self))")
        }
        var out: [SceneInfo] = []
        for s in scenes {
            guard let name = s["scene"] as? String, let ci = s["context_ids"] as? Int, let cd = s["context_dense"] as? Int,
                  let ii = s["item_ids"] as? Int, let id = s["item_dense"] as? Int else {
                throw LoadError("GET /v1/scenes: a scene without its name and counts: \(s)")
            }
            out.append(SceneInfo(name: name, headVersion: s["head_version"] as? String ?? "", outputs: s["outputs"] as? [String] ?? [],
                                 schema: WireSchema(contextIDs: ci, contextDense: cd, itemIDs: ii, itemDense: id)))
        }
        return out
    }
}

/// One pre-encoded request body and what its response must match.
public struct PooledRequest: Sendable {
    public let body: H2RequestBody
    /// Index into `RequestPool.scenes`.
    public let scene: Int
    public let candidates: Int
    /// Outputs per candidate the response must carry (0: unknown, not checked).
    public let outputs: Int
}

/// The bodies a run sends: encoded once, before the run; each request picks one (by scene
/// weight, then uniformly) and gets its own request id patched in as it is sent.
public final class RequestPool: Sendable {
    public let requests: [PooledRequest]
    public let scenes: [String]
    /// Cumulative scene weights (normalised to 1) and each scene's range of `requests`.
    let cumulative: [Double]
    let ranges: [Range<Int>]

    init(requests: [PooledRequest], scenes: [String], weights: [Double]) {
        var ranges: [Range<Int>] = []
        for s in scenes.indices {
            let lo = requests.firstIndex { $0.scene == s } ?? 0
            let hi = requests.lastIndex { $0.scene == s }.map { $0 + 1 } ?? lo
            ranges.append(lo..<hi)
        }
        let total = weights.reduce(0, +)
        var acc = 0.0
        cumulative = weights.map { acc += $0 / total; return acc }
        self.requests = requests
        self.scenes = scenes
        self.ranges = ranges
    }

    /// The index of the next request to send.
    @inline(__always)
    func pick(_ rng: inout SplitMix64) -> Int {
        var scene = 0
        if cumulative.count > 1 {
            let u = rng.nextUnit()
            while scene < cumulative.count - 1 && u >= cumulative[scene] { scene += 1 }
        }
        let range = ranges[scene]
        return range.count == 1 ? range.lowerBound : range.lowerBound + Int(rng.next() % UInt64(range.count))
    }

    /// Random requests for the chosen scenes (all of `catalog` when `chosen` is empty).
    public static func generate(catalog: [SceneInfo], chosen: [SceneWeight], candidates: CandidateDistribution,
                                bodies: Int, seed: UInt64) throws(LoadError) -> RequestPool {
        let picked: [(SceneInfo, Double)]
        if chosen.isEmpty {
            guard !catalog.isEmpty else { throw LoadError("the server serves no scenes (GET /v1/scenes is empty)") }
            picked = catalog.map { ($0, 1) }
        } else {
            var list: [(SceneInfo, Double)] = []
            for c in chosen {
                guard let info = catalog.first(where: { $0.name == c.scene }) else {
                    throw LoadError("unknown scene '\(c.scene)' (the server serves: \(catalog.map(\.name).sorted().joined(separator: ", ")))")
                }
                list.append((info, c.weight))
            }
            picked = list
        }
        var rng = SplitMix64(seed: seed)
        var requests: [PooledRequest] = []
        var body: [UInt8] = []
        for (index, (scene, _)) in picked.enumerated() {
            for _ in 0..<bodies {
                let n = candidates.draw(&rng)
                let s = scene.schema
                body.removeAll(keepingCapacity: true)
                WireCodec.encodeBinaryRequest(requestID: 0, scene: scene.name,
                                              contextIDs: (0..<s.contextIDs).map { _ in UInt32(truncatingIfNeeded: rng.next()) },
                                              contextDense: (0..<s.contextDense).map { _ in gaussian(&rng) },
                                              itemIDs: (0..<(n * s.itemIDs)).map { _ in UInt32(truncatingIfNeeded: rng.next()) },
                                              itemDense: (0..<(n * s.itemDense)).map { _ in gaussian(&rng) },
                                              candidates: n, into: &body)
                requests.append(PooledRequest(body: H2RequestBody(body, requestIDOffset: 8), scene: index, candidates: n,
                                              outputs: scene.outputs.count))
            }
        }
        return RequestPool(requests: requests, scenes: picked.map(\.0.name), weights: picked.map(\.1))
    }

    /// Binary requests from files (a directory: its `*.bin` files), sent in turn with equal weight.
    /// `catalog` (when known) gives the outputs each response must carry.
    public static func replay(paths: [String], catalog: [SceneInfo]?) throws(LoadError) -> RequestPool {
        var files: [String] = []
        for path in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw LoadError("no such request file or directory: \(path)")
            }
            if isDirectory.boolValue {
                let names = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { $0.hasSuffix(".bin") }.sorted()
                guard !names.isEmpty else { throw LoadError("\(path) holds no *.bin request files") }
                files += names.map { (path as NSString).appendingPathComponent($0) }
            } else {
                files.append(path)
            }
        }
        var scenes: [String] = []
        var requests: [PooledRequest] = []
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else { throw LoadError("cannot read request file \(file)") }
            let bytes = [UInt8](data)
            let decoded: ScoreRequest
            do {
                decoded = try bytes.withUnsafeBytes { raw throws(WireError) in
                    try WireCodec.decodeBinaryRequest(raw, limits: WireLimits(maxCandidates: Int(UInt32.max)))
                }
            } catch {
                throw LoadError("\(file) is not a binary SceneScore request (Proto/WIRE.md): \((error as? WireError)?.detail ?? "\(error)")")
            }
            var sceneIndex = scenes.firstIndex(of: decoded.scene) ?? -1
            if sceneIndex < 0 {
                scenes.append(decoded.scene)
                sceneIndex = scenes.count - 1
            }
            if let catalog, !catalog.contains(where: { $0.name == decoded.scene }) {
                throw LoadError("\(file): unknown scene '\(decoded.scene)' (the server serves: \(catalog.map(\.name).sorted().joined(separator: ", ")))")
            }
            let outputs = catalog?.first { $0.name == decoded.scene }?.outputs.count ?? 0
            requests.append(PooledRequest(body: H2RequestBody(bytes, requestIDOffset: 8), scene: sceneIndex,
                                          candidates: decoded.candidates, outputs: outputs))
        }
        // Group by scene so each scene's requests are one range; weights follow the file counts.
        let order = requests.indices.sorted { (requests[$0].scene, $0) < (requests[$1].scene, $1) }
        let grouped = order.map { requests[$0] }
        let weights = scenes.indices.map { s in Double(grouped.filter { $0.scene == s }.count) }
        return RequestPool(requests: grouped, scenes: scenes, weights: weights)
    }
}

/// A standard normal draw (Box–Muller), as f32.
private func gaussian(_ rng: inout SplitMix64) -> Float {
    let u1 = max(rng.nextUnit(), 1e-12), u2 = rng.nextUnit()
    return Float((-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2))
}
