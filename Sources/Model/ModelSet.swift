import Foundation

/// A model directory as loaded: the backbone and one head per scene.
///
/// Layout: `<dir>/backbone.safetensors` and `<dir>/heads/*.safetensors` (one per scene; the
/// scene is read from each head's metadata, not its file name).
public struct ModelSet: Sendable {
    public let directory: String
    public let backbone: Backbone
    public let heads: [String: AdapterHead]

    public init(directory: String) throws {
        self.directory = directory
        backbone = try Backbone(path: directory + "/backbone.safetensors")
        var heads: [String: AdapterHead] = [:]
        let headDir = directory + "/heads"
        let files = (try? FileManager.default.contentsOfDirectory(atPath: headDir)) ?? []
        for file in files.sorted() where file.hasSuffix(".safetensors") {
            let head = try AdapterHead(path: headDir + "/" + file, backbone: backbone.spec)
            if let other = heads[head.spec.scene] {
                throw ModelLoadError(file: file, "scene '\(head.spec.scene)' already has head \(other.spec.version)")
            }
            heads[head.spec.scene] = head
        }
        self.heads = heads
    }
}
