// The electronics scene plugin, in Swift (ABI: Sources/ScenePluginABI/include/scenescore_plugin.h;
// raw schema and mapping: Plugins/README.md).
//
// Raw request                           Canonical (default backbone)
//   context ids   user_id, device         user = user_id                     (device is dropped)
//   context dense sessions_30d            activity = (ln(1 + sessions_30d) − log_sessions_mean)
//                                                    / log_sessions_sigma, then three zeros
//   item ids      sku, category, brand,   item = s·1e6 + sku, or, for sku 0xFFFFFFFF ("no catalogue
//                 spec_hash                 sku", a marketplace listing), s·1e6 + spec_hash mod 1e6;
//                                         category = s·1e3 + category, brand = s·1e5 + brand
//   item dense    content_0…15, price,    content as sent; ln(price) − mean_log_price
//                 rating                  (rating is dropped: the backbone has no input for it)
//
// postprocess: column 0 becomes the ranking score (1 − purchase_weight)·click +
// purchase_weight·purchase; the other columns are left as the head computed them. A head with
// click but no purchase output is left as it is; a head without click is refused.
//
// Config (flat JSON object of numbers): scene_index (3, electronics' index in the training
// world), mean_log_price (5.0), log_sessions_mean (1.5), log_sessions_sigma (1.0, > 0),
// purchase_weight (0.3, 0…1).
import ScenePluginABI
import ScenePluginKit
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One instance's settings, read by transform()/postprocess() concurrently and never written
/// after create().
struct ElectronicsConfig {
    var offsets: SceneOffsets
    var meanLogPrice: Double
    var logSessionsMean: Double
    var logSessionsSigma: Double
    var purchaseWeight: Float
}

private enum Raw {
    static let itemIDs = 4, itemDense = 18, contentDims = 16
    static let noSKU = UInt32.max
}

private let canonicalItemIDs = 3, canonicalItemDense = 17

private func makeConfig(_ json: UnsafePointer<CChar>?, _ length: Int) throws(PluginFailure) -> ElectronicsConfig {
    let config = try PluginConfig(json: json, length: length, known: [
        "scene_index", "mean_log_price", "log_sessions_mean", "log_sessions_sigma", "purchase_weight"])
    return ElectronicsConfig(
        offsets: try SceneOffsets(scene: config.integer("scene_index", default: 3, in: 0...SceneOffsets.maxScene)),
        meanLogPrice: try config.number("mean_log_price", default: 5.0, where: { abs($0) <= 50 }, "is not a plausible log price"),
        logSessionsMean: try config.number("log_sessions_mean", default: 1.5),
        logSessionsSigma: try config.number("log_sessions_sigma", default: 1.0, where: { $0 > 0 }, "must be positive"),
        purchaseWeight: Float(try config.number("purchase_weight", default: 0.3, where: { (0...1).contains($0) }, "must be in 0…1")))
}

private func transform(_ config: ElectronicsConfig, _ raw: scenescore_batch, _ out: scenescore_canonical_out) throws(PluginFailure) {
    out.context_ids[0] = raw.context_ids[0]
    let sessions = raw.context_dense[0]
    guard sessions >= 0, sessions.isFinite else { throw PluginFailure("sessions_30d \(sessions) must be a non-negative count") }
    out.context_dense[0] = Float((log1p(Double(sessions)) - config.logSessionsMean) / config.logSessionsSigma)
    for k in 1..<4 { out.context_dense[k] = 0 }

    for c in 0..<Int(raw.candidates) {
        let ids = raw.item_ids + c * Raw.itemIDs, dense = raw.item_dense + c * Raw.itemDense
        let sku = ids[0] == Raw.noSKU ? ids[3] % SceneOffsets.itemRange : ids[0]
        try config.offsets.write(item: sku, category: ids[1], brand: ids[2], candidate: c,
                                 names: ("sku", "category", "brand"), into: out.item_ids + c * canonicalItemIDs)
        let canonical = out.item_dense + c * canonicalItemDense
        canonical.update(from: dense, count: Raw.contentDims)
        let price = dense[Raw.contentDims]
        guard price > 0, price.isFinite else { throw PluginFailure("candidate \(c): price \(price) must be positive") }
        canonical[Raw.contentDims] = Float(log(Double(price)) - config.meanLogPrice)
    }
}

private func postprocess(_ config: ElectronicsConfig, candidates: Int, outputs: Int,
                         names: UnsafePointer<UnsafePointer<CChar>?>, scores: UnsafeMutablePointer<Float>) throws(PluginFailure) {
    var click = -1, purchase = -1
    for k in 0..<outputs {
        guard let name = names[k] else { continue }
        if strcmp(name, "click") == 0 { click = k }
        if strcmp(name, "purchase") == 0 { purchase = k }
    }
    guard click >= 0 else { throw PluginFailure("the head's outputs lack 'click', which the ranking blend needs") }
    // A click-only head (e.g. the default model's) has nothing to blend: its scores stand.
    guard purchase >= 0 else { return }
    let w = config.purchaseWeight
    for c in 0..<candidates {
        let row = scores + c * outputs
        row[0] = (1 - w) * row[click] + w * row[purchase]
    }
}

nonisolated(unsafe) private let descriptor = PluginDescriptor.make(
    scene: "electronics",
    description: "Electronics catalogue: sku (or spec hash), category, brand, price in currency units; click/purchase blend in column 0",
    raw: SchemaNames(contextIDs: ["user_id", "device"], contextDense: ["sessions_30d"],
                     itemIDs: ["sku", "category", "brand", "spec_hash"],
                     itemDense: (0..<16).map { "content_\($0)" } + ["price", "rating"]),
    canonical: .canonical,
    create: { json, length, instance, error, capacity in
        ConfigInstance.create(json, length, instance, error, capacity, make: makeConfig)
    },
    destroy: { instance in ConfigInstance.destroy(instance, as: ElectronicsConfig.self) },
    transform: { instance, raw, out, error, capacity in
        reporting(into: error, capacity: capacity) { () throws(PluginFailure) in
            try transform(ConfigInstance.config(instance, as: ElectronicsConfig.self), raw!.pointee, out!.pointee)
        }
    },
    postprocess: { instance, candidates, outputs, names, scores, error, capacity in
        reporting(into: error, capacity: capacity) { () throws(PluginFailure) in
            try postprocess(ConfigInstance.config(instance, as: ElectronicsConfig.self),
                            candidates: Int(candidates), outputs: Int(outputs), names: names!, scores: scores!)
        }
    })

@_cdecl("scenescore_plugin_entry")
public func scenescorePluginEntry() -> UnsafePointer<scenescore_plugin> { descriptor }
