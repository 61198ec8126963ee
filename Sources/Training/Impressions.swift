import Foundation

/// A set of impressions laid out as the backbone reads them: per row, context ids, context
/// dense values, item ids, item dense values and a 0/1 label. `eta` (the true click logit) is
/// present only for generated data and is used for evaluation only, never for training.
public struct Impressions: Sendable {
    public var count: Int
    public var contextIDs: [UInt32]      // count × contextIDWidth
    public var contextDense: [Float]     // count × contextDenseWidth
    public var itemIDs: [UInt32]         // count × itemIDWidth
    public var itemDense: [Float]        // count × itemDenseWidth
    public var labels: [Float]
    public var eta: [Float]?
    /// Target scenes only: the source label function on these impressions (the zero-shot ceiling).
    public var etaSource: [Float]?
    public let contextIDWidth: Int, contextDenseWidth: Int, itemIDWidth: Int, itemDenseWidth: Int

    public init(contextIDWidth: Int, contextDenseWidth: Int, itemIDWidth: Int, itemDenseWidth: Int) {
        self.contextIDWidth = contextIDWidth; self.contextDenseWidth = contextDenseWidth
        self.itemIDWidth = itemIDWidth; self.itemDenseWidth = itemDenseWidth
        count = 0; contextIDs = []; contextDense = []; itemIDs = []; itemDense = []; labels = []
    }

    /// The first `n` rows (nested target fractions are prefixes of the pool).
    public func prefix(_ n: Int) -> Impressions {
        var p = self
        p.count = min(n, count)
        p.contextIDs = Array(contextIDs[..<(p.count * contextIDWidth)])
        p.contextDense = Array(contextDense[..<(p.count * contextDenseWidth)])
        p.itemIDs = Array(itemIDs[..<(p.count * itemIDWidth)])
        p.itemDense = Array(itemDense[..<(p.count * itemDenseWidth)])
        p.labels = Array(labels[..<p.count])
        p.eta = eta.map { Array($0[..<p.count]) }
        p.etaSource = etaSource.map { Array($0[..<p.count]) }
        return p
    }

    /// The same rows with one more context id column appended (method c's scene feature).
    public func addingContextID(_ id: UInt32) -> Impressions {
        var p = Impressions(contextIDWidth: contextIDWidth + 1, contextDenseWidth: contextDenseWidth,
                            itemIDWidth: itemIDWidth, itemDenseWidth: itemDenseWidth)
        p.count = count
        p.contextIDs.reserveCapacity(count * (contextIDWidth + 1))
        for r in 0..<count {
            p.contextIDs += contextIDs[(r * contextIDWidth)..<((r + 1) * contextIDWidth)]
            p.contextIDs.append(id)
        }
        p.contextDense = contextDense; p.itemIDs = itemIDs; p.itemDense = itemDense
        p.labels = labels; p.eta = eta; p.etaSource = etaSource
        return p
    }

    /// Mean label.
    public var clickRate: Double { count == 0 ? 0 : labels.reduce(0.0) { $0 + Double($1) } / Double(count) }

    // MARK: .npy directories

    static let files = (contextIDs: "context_ids.npy", contextDense: "context_dense.npy", itemIDs: "item_ids.npy",
                        itemDense: "item_dense.npy", labels: "labels.npy", eta: "eta.npy", etaSource: "eta_source.npy")

    /// Writes one directory of .npy files (2-D arrays: rows × columns; labels and eta 1-D).
    public func write(to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let f = Self.files
        try NumpyArray(shape: [count, contextIDWidth], values: contextIDs).write(to: "\(directory)/\(f.contextIDs)")
        try NumpyArray(shape: [count, contextDenseWidth], values: contextDense).write(to: "\(directory)/\(f.contextDense)")
        try NumpyArray(shape: [count, itemIDWidth], values: itemIDs).write(to: "\(directory)/\(f.itemIDs)")
        try NumpyArray(shape: [count, itemDenseWidth], values: itemDense).write(to: "\(directory)/\(f.itemDense)")
        try NumpyArray(shape: [count], values: labels).write(to: "\(directory)/\(f.labels)")
        if let eta { try NumpyArray(shape: [count], values: eta).write(to: "\(directory)/\(f.eta)") }
        if let etaSource { try NumpyArray(shape: [count], values: etaSource).write(to: "\(directory)/\(f.etaSource)") }
    }

    /// Reads a directory written by `write(to:)` or by numpy: the four feature arrays and the
    /// labels are required; eta.npy and eta_source.npy are optional. Every array must have the
    /// same number of rows, and labels must be 0 or 1.
    public init(directory: String) throws {
        let f = Self.files
        func path(_ name: String) -> String { "\(directory)/\(name)" }
        func optional(_ name: String) throws -> NumpyArray<Float>? {
            FileManager.default.fileExists(atPath: path(name)) ? try NumpyArray<Float>(contentsOf: path(name)) : nil
        }
        let cid = try NumpyArray<UInt32>(contentsOf: path(f.contextIDs))
        let cd = try NumpyArray<Float>(contentsOf: path(f.contextDense))
        let iid = try NumpyArray<UInt32>(contentsOf: path(f.itemIDs))
        let idn = try NumpyArray<Float>(contentsOf: path(f.itemDense))
        let y = try NumpyArray<Float>(contentsOf: path(f.labels))
        let eta = try optional(f.eta), etaSource = try optional(f.etaSource)
        let n = y.rows
        for (name, rows) in [(f.contextIDs, cid.rows), (f.contextDense, cd.rows), (f.itemIDs, iid.rows),
                             (f.itemDense, idn.rows), (f.eta, eta?.rows ?? n), (f.etaSource, etaSource?.rows ?? n)] where rows != n {
            throw NumpyFormatError(file: "\(directory)/\(name)", problem: "\(rows) rows, but labels.npy has \(n)")
        }
        if let bad = y.values.firstIndex(where: { $0 != 0 && $0 != 1 }) {
            throw NumpyFormatError(file: "\(directory)/\(f.labels)", problem: "label \(bad) is \(y.values[bad]); labels must be 0 or 1")
        }
        self.init(contextIDWidth: cid.columns, contextDenseWidth: cd.columns, itemIDWidth: iid.columns, itemDenseWidth: idn.columns)
        count = n
        contextIDs = cid.values; contextDense = cd.values; itemIDs = iid.values; itemDense = idn.values
        labels = y.values; self.eta = eta?.values; self.etaSource = etaSource?.values
    }
}
