// Recommendations: the queries a shop runs beside plain nearest neighbours (issue 7).
//   - A user's history: several stored items aggregated into one query vector — their mean,
//     explicitly weighted, or weighted by attention softmax(q·x) for a given vector q — with
//     the items themselves left out of the results (SearchRequest.Query.history).
//   - Threshold queries: every item within a score threshold, up to a cap (near-duplicates).
// Both run the ordinary search (every index type, filters, categories) underneath.
// Threads: any thread, like every search.
import Foundation
import LookalikeIndex

/// How a history's item vectors are combined into one query.
public enum HistoryWeighting: Sendable, Equatable {
    /// The plain mean.
    case mean
    /// One non-negative weight per item, in order.
    case weights([Float])
    /// softmax(q · x_i) over the items, for a given vector q (the query as the index
    /// prepares it: unit length for cosine).
    case attention([Float])
}

extension Collection {
    /// Most items a history may hold.
    public static let maxHistoryItems = 1_000

    /// The history's aggregate query vector, prepared for the index, and its keys.
    func historyVector(_ keys: [String], _ weighting: HistoryWeighting) throws -> [Float] {
        guard !keys.isEmpty else { throw EngineError.invalidArgument("a history needs at least one element") }
        guard keys.count <= Self.maxHistoryItems else {
            throw EngineError.invalidArgument("a history holds at most \(Self.maxHistoryItems) elements, got \(keys.count)")
        }
        let rows = try keys.map { key -> [Float] in
            guard let v = try vector(key: key) else { throw EngineError.keyNotFound(key) }
            return try indexVector(v)
        }
        let weights = try historyWeights(rows, weighting)
        var sum = [Float](repeating: 0, count: definition.dimension)
        for (row, w) in zip(rows, weights) where w > 0 {
            for j in 0..<sum.count { sum[j] += w * row[j] }
        }
        do { return try indexVector(sum) } catch EngineError.zeroVector {
            throw EngineError.invalidArgument("the history's vectors cancel out (their weighted mean is zero): weight them differently")
        }
    }

    private func historyWeights(_ rows: [[Float]], _ weighting: HistoryWeighting) throws -> [Float] {
        switch weighting {
        case .mean:
            return Array(repeating: 1 / Float(rows.count), count: rows.count)
        case .weights(let w):
            guard w.count == rows.count else {
                throw EngineError.invalidArgument("WEIGHTS has \(w.count) values for \(rows.count) elements")
            }
            guard w.allSatisfy({ $0.isFinite && $0 >= 0 }), w.contains(where: { $0 > 0 }) else {
                throw EngineError.invalidArgument("WEIGHTS must be finite, non-negative, and not all zero")
            }
            return w
        case .attention(let q):
            let query = try indexVector(q)
            let logits = rows.map { row in zip(row, query).reduce(Float(0)) { $0 + $1.0 * $1.1 } }
            let top = logits.max()!  // subtracted so exp never overflows
            let e = logits.map { exp($0 - top) }
            let total = e.reduce(0, +)
            return e.map { $0 / total }
        }
    }

    /// Every item whose score passes `threshold` (cosine and IP: score ≥ threshold; L2:
    /// distance ≤ threshold), best first, at most `request.k`. The search widens (×4 from 64)
    /// until an item fails the threshold or the cap or the collection is reached, so within
    /// the cap nothing that an ANN search of that depth would find is missed; `request.exact`
    /// makes it complete. `search` is the search to run (plain, filtered, by category).
    public func within(_ request: SearchRequest, threshold: Float,
                       search: (SearchRequest) throws -> [SearchHit]) throws -> [SearchHit] {
        let cap = request.k
        let passes: (SearchHit) -> Bool = definition.metric == .l2 ? { $0.score <= threshold } : { $0.score >= threshold }
        var round = request
        round.k = min(cap, 64)
        while true {
            let hits = try search(round)
            let kept = hits.filter(passes)
            if kept.count < hits.count || hits.count < round.k || round.k >= cap {
                return Array(kept.prefix(cap))
            }
            round.k = min(cap, round.k * 4)
        }
    }
}
