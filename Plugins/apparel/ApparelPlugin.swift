// The apparel scene plugin, in Swift (ABI: Sources/ScenePluginABI/include/scenescore_plugin.h;
// raw schema and mapping: Plugins/README.md).
//
// Raw request                           Canonical (default backbone)
//   context ids   user_id                 user = user_id
//   context dense log_activity            activity = (log_activity − activity_log_mean)
//                                                    / activity_log_sigma, then three zeros
//   item ids      style_id, category,     item = s·1e6 + style_id, category = s·1e3 + category,
//                 brand, colour, size     brand = s·1e5 + brand; colour and size are folded away:
//                                         every colour/size variant of a style is the style
//   item dense    content_0…15,           content as sent;
//                 list_price, discount    ln(list_price · (1 − discount)) − mean_log_price
//                                         (the price the shopper pays)
//
// No postprocess: scores are returned as the head computed them.
//
// Config (flat JSON object of numbers): scene_index (0, apparel's index in the training world),
// mean_log_price (3.0), activity_log_mean (0), activity_log_sigma (1, > 0).
import ScenePluginABI
import ScenePluginKit
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One instance's settings, read by transform() concurrently and never written after create().
struct ApparelConfig {
    var offsets: SceneOffsets
    var meanLogPrice: Double
    var activityLogMean: Double
    var activityLogSigma: Double
}

private enum Raw {
    static let itemIDs = 5, itemDense = 18, contentDims = 16
}

private let canonicalItemIDs = 3, canonicalItemDense = 17

private func makeConfig(_ json: UnsafePointer<CChar>?, _ length: Int) throws(PluginFailure) -> ApparelConfig {
    let config = try PluginConfig(json: json, length: length, known: [
        "scene_index", "mean_log_price", "activity_log_mean", "activity_log_sigma"])
    return ApparelConfig(
        offsets: try SceneOffsets(scene: config.integer("scene_index", default: 0, in: 0...SceneOffsets.maxScene)),
        meanLogPrice: try config.number("mean_log_price", default: 3.0, where: { abs($0) <= 50 }, "is not a plausible log price"),
        activityLogMean: try config.number("activity_log_mean", default: 0),
        activityLogSigma: try config.number("activity_log_sigma", default: 1, where: { $0 > 0 }, "must be positive"))
}

private func transform(_ config: ApparelConfig, _ raw: scenescore_batch, _ out: scenescore_canonical_out) throws(PluginFailure) {
    out.context_ids[0] = raw.context_ids[0]
    out.context_dense[0] = Float((Double(raw.context_dense[0]) - config.activityLogMean) / config.activityLogSigma)
    for k in 1..<4 { out.context_dense[k] = 0 }

    for c in 0..<Int(raw.candidates) {
        let ids = raw.item_ids + c * Raw.itemIDs, dense = raw.item_dense + c * Raw.itemDense
        try config.offsets.write(item: ids[0], category: ids[1], brand: ids[2], candidate: c,
                                 names: ("style_id", "category", "brand"), into: out.item_ids + c * canonicalItemIDs)
        let canonical = out.item_dense + c * canonicalItemDense
        canonical.update(from: dense, count: Raw.contentDims)
        let listPrice = dense[Raw.contentDims], discount = dense[Raw.contentDims + 1]
        guard listPrice > 0, listPrice.isFinite else { throw PluginFailure("candidate \(c): list_price \(listPrice) must be positive") }
        guard discount >= 0, discount < 1 else { throw PluginFailure("candidate \(c): discount \(discount) must be in [0, 1)") }
        canonical[Raw.contentDims] = Float(log(Double(listPrice) * (1 - Double(discount))) - config.meanLogPrice)
    }
}

nonisolated(unsafe) private let descriptor = PluginDescriptor.make(
    scene: "apparel",
    description: "Apparel catalogue: style/colour/size variants folded to the style, list price and discount",
    raw: SchemaNames(contextIDs: ["user_id"], contextDense: ["log_activity"],
                     itemIDs: ["style_id", "category", "brand", "colour", "size"],
                     itemDense: (0..<16).map { "content_\($0)" } + ["list_price", "discount"]),
    canonical: .canonical,
    create: { json, length, instance, error, capacity in
        ConfigInstance.create(json, length, instance, error, capacity, make: makeConfig)
    },
    destroy: { instance in ConfigInstance.destroy(instance, as: ApparelConfig.self) },
    transform: { instance, raw, out, error, capacity in
        reporting(into: error, capacity: capacity) { () throws(PluginFailure) in
            try transform(ConfigInstance.config(instance, as: ApparelConfig.self), raw!.pointee, out!.pointee)
        }
    },
    postprocess: nil)

@_cdecl("scenescore_plugin_entry")
public func scenescorePluginEntry() -> UnsafePointer<scenescore_plugin> { descriptor }
