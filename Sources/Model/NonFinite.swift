/// Finding NaN and ±Inf in float arrays: in a plugin's canonical values, and in scores, where a
/// request whose values are finite but huge can still overflow the model.
public enum NonFinite {
    /// The index of the first NaN or ±Inf among `values`, or nil when all are finite.
    public static func firstIndex(in values: UnsafeBufferPointer<Float>) -> Int? {
        // A float is NaN or infinite iff its exponent bits are all ones. The max of the exponent
        // fields is one branch-free pass the compiler vectorises; the index is searched only on
        // failure.
        let exponent: UInt32 = 0x7F80_0000
        var highest: UInt32 = 0
        for v in values { highest = max(highest, v.bitPattern & exponent) }
        if highest != exponent { return nil }
        return values.firstIndex { !$0.isFinite }
    }
}
