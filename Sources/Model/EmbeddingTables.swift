/// One side's hashed embedding tables (the context fields or the item fields) in one block of
/// memory, with the gather that copies a request's rows out of them. Everything inside is a
/// plain pointer, so the per-candidate gather loop touches no reference counts (reading a
/// `[[Float]]` per field and candidate retained and released each table). Immutable once made.
final class EmbeddingTables: @unchecked Sendable {
    struct Field {
        let offset: Int  // floats from the start of the block
        let vocab: UInt32
        let dim: Int
    }

    let fieldCount: Int
    /// Σ dim: the floats one gather writes.
    let width: Int
    /// Floats held, for the memory accounting.
    let count: Int
    private let fields: UnsafeMutablePointer<Field>
    private let storage: UnsafeMutablePointer<Float>

    /// `tables[f]` is field f's vocab × dim table, row-major.
    init(_ tables: [[Float]], specs: [FieldSpec]) {
        precondition(tables.count == specs.count, "one table per field")
        fieldCount = specs.count
        width = specs.reduce(0) { $0 + $1.dim }
        count = tables.reduce(0) { $0 + $1.count }
        fields = .allocate(capacity: max(specs.count, 1))
        storage = .allocate(capacity: max(count, 1))
        var offset = 0
        for (f, spec) in specs.enumerated() {
            precondition(tables[f].count == spec.vocab * spec.dim, "table \(spec.name) is not vocab × dim")
            (fields + f).initialize(to: Field(offset: offset, vocab: UInt32(spec.vocab), dim: spec.dim))
            tables[f].withUnsafeBufferPointer { (storage + offset).initialize(from: $0.baseAddress!, count: $0.count) }
            offset += tables[f].count
        }
    }

    deinit {
        fields.deallocate()
        storage.deallocate()
    }

    /// Writes the rows the ids select (one little-endian u32 per field, at any alignment) into
    /// `dst`, `width` floats: row fmix32(id) mod vocab of each field, in field order.
    @inline(__always)
    func gather(ids: UnsafeRawPointer, into dst: UnsafeMutablePointer<Float>) {
        var col = 0
        for f in 0..<fieldCount {
            let field = fields[f]
            let id = UInt32(littleEndian: ids.loadUnaligned(fromByteOffset: 4 * f, as: UInt32.self))
            let row = Int(fmix32(id) % field.vocab)
            (dst + col).update(from: storage + field.offset + row * field.dim, count: field.dim)
            col += field.dim
        }
    }
}
