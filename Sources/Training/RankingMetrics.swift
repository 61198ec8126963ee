import Foundation

/// The benchmark's metrics (Shared TRANSFER-BENCHMARK.md, "The ceiling").
public enum RankingMetrics {
    /// Soft AUC of `scores` against known click probabilities `p`:
    /// Σ_i Σ_{j≠i} p_i (1−p_j) [1(f_i > f_j) + ½ 1(f_i = f_j)] / (Σp · Σ(1−p) − Σ p(1−p)).
    /// With 0/1 labels as `p` this is the ordinary AUC (ties count ½). O(n log n): sort on the
    /// score, then one pass with a running sum of (1 − p) over strictly lower scores.
    public static func softAUC(scores: [Float], probabilities p: [Float]) -> Double {
        precondition(scores.count == p.count, "softAUC: \(scores.count) scores, \(p.count) probabilities")
        // A diverged model's ranking is undefined (and NaN ≠ NaN would stall the tie groups below).
        if scores.contains(where: \.isNaN) { return .nan }
        let order = scores.indices.sorted { scores[$0] < scores[$1] }
        var lowerNegatives = 0.0, numerator = 0.0
        var sumP = 0.0, sumQ = 0.0, sumPQ = 0.0
        var g = 0
        while g < order.count {
            var end = g
            var groupP = 0.0, groupQ = 0.0, groupPQ = 0.0
            while end < order.count && scores[order[end]] == scores[order[g]] {
                let pi = Double(p[order[end]])
                groupP += pi; groupQ += 1 - pi; groupPQ += pi * (1 - pi)
                end += 1
            }
            // Pairs inside a tie group count ½, excluding each item paired with itself.
            numerator += groupP * lowerNegatives + 0.5 * (groupP * groupQ - groupPQ)
            lowerNegatives += groupQ
            sumP += groupP; sumQ += groupQ; sumPQ += groupPQ
            g = end
        }
        let denominator = sumP * sumQ - sumPQ
        return denominator > 0 ? numerator / denominator : .nan
    }

    /// AUC against 0/1 labels.
    public static func auc(scores: [Float], labels: [Float]) -> Double {
        softAUC(scores: scores, probabilities: labels)
    }

    /// Mean binary cross-entropy of logits against labels, computed stably.
    public static func logloss(logits: [Float], labels: [Float]) -> Double {
        precondition(logits.count == labels.count)
        var total = 0.0
        for (z, y) in zip(logits, labels) { total += crossEntropy(logit: Double(z), label: Double(y)) }
        return logits.isEmpty ? .nan : total / Double(logits.count)
    }

    /// −[y log σ(z) + (1−y) log(1−σ(z))] = max(z, 0) − y·z + log(1 + e^−|z|).
    @inline(__always)
    public static func crossEntropy(logit z: Double, label y: Double) -> Double {
        max(z, 0) - y * z + Foundation.log1p(Foundation.exp(-abs(z)))
    }

    /// lift = (AUC − ½) / (AUC* − ½): the share of the attainable ranking quality reached.
    public static func lift(auc: Double, ceiling: Double) -> Double { (auc - 0.5) / (ceiling - 0.5) }
}

@inline(__always)
func sigmoid(_ z: Double) -> Double { 1 / (1 + Foundation.exp(-z)) }
