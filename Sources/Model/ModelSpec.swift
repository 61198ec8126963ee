import Foundation

/// A categorical field: a hashed embedding table of `vocab` rows of `dim` floats.
public struct FieldSpec: Codable, Sendable, Equatable {
    public var name: String
    public var vocab: Int
    public var dim: Int
    public init(name: String, vocab: Int, dim: Int) { self.name = name; self.vocab = vocab; self.dim = dim }
}

/// The backbone's explicit feature interaction: a user tower over the context part and an
/// item tower over the item part of layer 0's input, each a linear map to `dim` values, whose
/// vectors a head combines bilinearly (uᵀ A v, A per scene and output).
public struct InteractionSpec: Codable, Sendable, Equatable {
    public static let twoTower = "two_tower"
    public var kind: String
    public var dim: Int
    public init(kind: String = InteractionSpec.twoTower, dim: Int) { self.kind = kind; self.dim = dim }
}

/// `scenescore.spec` of a backbone file (Proto/MODEL-FORMAT.md).
public struct BackboneSpec: Codable, Sendable, Equatable {
    public var contextFields: [FieldSpec]
    public var contextDense: Int
    public var itemFields: [FieldSpec]
    public var itemDense: Int
    public var hidden: [Int]
    public var activation: String
    /// nil: no towers (files written before the field existed).
    public var interaction: InteractionSpec?

    enum CodingKeys: String, CodingKey {
        case contextFields = "context_fields", contextDense = "context_dense"
        case itemFields = "item_fields", itemDense = "item_dense", hidden, activation, interaction
    }

    public init(contextFields: [FieldSpec], contextDense: Int, itemFields: [FieldSpec],
                itemDense: Int, hidden: [Int], activation: String = "relu", interaction: InteractionSpec? = nil) {
        self.contextFields = contextFields; self.contextDense = contextDense
        self.itemFields = itemFields; self.itemDense = itemDense
        self.hidden = hidden; self.activation = activation; self.interaction = interaction
    }

    /// Width of the towers' vectors u and v (0 without towers).
    public var interactionDim: Int { interaction?.dim ?? 0 }

    /// Width of the context part of layer 0's input: context embeddings then context dense.
    public var contextWidth: Int { contextFields.reduce(0) { $0 + $1.dim } + contextDense }
    /// Width of the item part: item embeddings then item dense.
    public var itemWidth: Int { itemFields.reduce(0) { $0 + $1.dim } + itemDense }
    /// Width of h, the representation heads read.
    public var outputWidth: Int { hidden.last ?? 0 }

    func validate(file: String) throws {
        func bad(_ p: String) -> ModelLoadError { ModelLoadError(file: file, "spec: \(p)") }
        guard activation == "relu" else { throw bad("activation '\(activation)' is not supported (relu)") }
        guard !hidden.isEmpty, hidden.allSatisfy({ $0 > 0 && $0 <= 65536 }) else { throw bad("hidden widths \(hidden) must be 1…65536") }
        guard !itemFields.isEmpty || itemDense > 0 else { throw bad("no item features") }
        for f in contextFields + itemFields {
            guard f.vocab > 0, f.vocab <= 1 << 28, f.dim > 0, f.dim <= 4096 else {
                throw bad("field '\(f.name)': vocab \(f.vocab) and dim \(f.dim) must be positive and bounded")
            }
        }
        let names = (contextFields + itemFields).map(\.name)
        guard Set(names).count == names.count else { throw bad("field names repeat: \(names)") }
        guard contextDense >= 0, contextDense <= 4096, itemDense >= 0, itemDense <= 4096 else { throw bad("dense widths out of range") }
        if let interaction {
            guard interaction.kind == InteractionSpec.twoTower else {
                throw bad("interaction kind '\(interaction.kind)' is not supported (\(InteractionSpec.twoTower))")
            }
            guard interaction.dim > 0, interaction.dim <= 256 else { throw bad("interaction dim \(interaction.dim) must be 1…256") }
            guard contextWidth > 0 else { throw bad("interaction two_tower needs context features for its user tower") }
        }
    }
}

/// `scenescore.spec` of a head file.
public struct HeadSpec: Codable, Sendable, Equatable {
    public var scene: String
    public var version: String
    public var parent: String
    public var input: Int
    public var bottleneck: Int
    public var tower: [Int]
    public var outputs: [String]
    /// k of the per-scene interaction adapter (one k × k matrix per output between the
    /// backbone's user and item vectors); 0: none. Must equal the backbone's interaction dim.
    public var interaction: Int

    enum CodingKeys: String, CodingKey { case scene, version, parent, input, bottleneck, tower, outputs, interaction }

    public init(scene: String, version: String, parent: String = "", input: Int, bottleneck: Int,
                tower: [Int], outputs: [String], interaction: Int = 0) {
        self.scene = scene; self.version = version; self.parent = parent; self.input = input
        self.bottleneck = bottleneck; self.tower = tower; self.outputs = outputs; self.interaction = interaction
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(scene, forKey: .scene); try c.encode(version, forKey: .version); try c.encode(parent, forKey: .parent)
        try c.encode(input, forKey: .input); try c.encode(bottleneck, forKey: .bottleneck); try c.encode(tower, forKey: .tower)
        try c.encode(outputs, forKey: .outputs)
        if interaction != 0 { try c.encode(interaction, forKey: .interaction) }  // old readers' specs stay as they were
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        scene = try c.decode(String.self, forKey: .scene)
        version = try c.decode(String.self, forKey: .version)
        parent = try c.decodeIfPresent(String.self, forKey: .parent) ?? ""
        input = try c.decode(Int.self, forKey: .input)
        bottleneck = try c.decode(Int.self, forKey: .bottleneck)
        tower = try c.decodeIfPresent([Int].self, forKey: .tower) ?? []
        outputs = try c.decode([String].self, forKey: .outputs)
        interaction = try c.decodeIfPresent(Int.self, forKey: .interaction) ?? 0
    }

    /// Scene names as the wire format allows them: 1…64 of [a-z0-9_-].
    public static func isValidSceneName(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 64 && s.utf8.allSatisfy { (0x61...0x7a).contains($0) || (0x30...0x39).contains($0) || $0 == 0x5f || $0 == 0x2d }
    }

    func validate(file: String) throws {
        func bad(_ p: String) -> ModelLoadError { ModelLoadError(file: file, "spec: \(p)") }
        guard Self.isValidSceneName(scene) else { throw bad("scene '\(scene)' must be 1…64 of [a-z0-9_-]") }
        guard !version.isEmpty, version.utf8.count <= 128 else { throw bad("version must be 1…128 bytes") }
        guard bottleneck > 0, bottleneck <= 65536, tower.allSatisfy({ $0 > 0 && $0 <= 65536 }) else { throw bad("bottleneck and tower widths must be 1…65536") }
        guard !outputs.isEmpty, outputs.count <= 64, outputs.allSatisfy({ !$0.isEmpty && $0.utf8.count <= 255 }) else {
            throw bad("outputs must be 1…64 names of 1…255 bytes")
        }
        guard interaction >= 0, interaction <= 256 else { throw bad("interaction \(interaction) must be 0…256") }
    }
}

enum SpecReader {
    static func read<T: Decodable>(_ type: T.Type, kind: String, from file: SafeTensorsFile) throws -> T {
        let name = (file.path as NSString).lastPathComponent
        guard file.metadata["scenescore.format"] == "1" else {
            throw ModelLoadError(file: name, "metadata scenescore.format is \(file.metadata["scenescore.format"].map { "'\($0)'" } ?? "missing"), expected '1'")
        }
        guard file.metadata["scenescore.kind"] == kind else {
            throw ModelLoadError(file: name, "metadata scenescore.kind is \(file.metadata["scenescore.kind"].map { "'\($0)'" } ?? "missing"), expected '\(kind)'")
        }
        guard let json = file.metadata["scenescore.spec"] else { throw ModelLoadError(file: name, "metadata has no scenescore.spec") }
        do {
            return try JSONDecoder().decode(T.self, from: Data(json.utf8))
        } catch {
            throw ModelLoadError(file: name, "metadata scenescore.spec is not a valid \(kind) spec: \(error)")
        }
    }
}
