// Recommendations: the queries a shop runs beside plain nearest neighbours (issue 7).
//   - A user's history: several stored items aggregated into one query vector — their mean,
//     explicitly weighted, or weighted by attention softmax(q·x) for a given vector q — with
//     the items themselves left out of the results (SearchRequest.Query.history).
//   - Threshold queries: every item within a score threshold, up to a cap (near-duplicates):
//     `SearchRequest.threshold`, a stop rule of QueryPlan's widening.
//   - The cascade: a top-N list filled from stages in order (same author, similar items,
//     optionally in the same category, best-ranked by a numeric attribute), each hit tagged
//     with its stage.
// All run the ordinary search (every index type, filters, categories) underneath.
// Threads: any thread, like every search.
import Dispatch
import Foundation
import LookalikeIndex
import LookalikeStorage

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
            return try preparedVector(v)
        }
        let weights = try historyWeights(rows, weighting)
        var sum = [Float](repeating: 0, count: definition.dimension)
        for (row, w) in zip(rows, weights) where w > 0 {
            for j in 0..<sum.count { sum[j] += w * row[j] }
        }
        do { return try preparedVector(sum, allowZero: false) } catch EngineError.zeroVector {
            throw EngineError.invalidArgument("the history's vectors cancel out (their weighted mean is zero): weight them differently")
        }
    }

    func historyWeights(_ rows: [[Float]], _ weighting: HistoryWeighting) throws -> [Float] {
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
            let query = try queryVector(q)
            let logits = rows.map { row in zip(row, query).reduce(Float(0)) { $0 + $1.0 * $1.1 } }
            let top = logits.max()!  // subtracted so exp never overflows
            let e = logits.map { exp($0 - top) }
            let total = e.reduce(0, +)
            return e.map { $0 / total }
        }
    }
}

// MARK: - The cascade

/// One stage of a recommendation cascade (`Collection.recommend`).
public enum CascadeStage: Sendable, Equatable {
    /// The nearest items that share the item's value of an indexed attribute (the same
    /// author); an item without a value skips the stage.
    case sharing(String)
    /// The nearest items in the item's category (an indexed attribute). An item that has none,
    /// as new stickers often arrive, uses its predicted one (VPREDICT: the neighbour vote
    /// blended with the category model), and its hits say so (`CascadeHit.predicted`).
    case similarIn(String)
    /// The nearest items, whatever their attributes.
    case similar
    /// The best-ranked items by a numeric attribute (ascending: rank 1 first), from a cached
    /// ranking (`Collection.ranking`).
    case top(String, ascending: Bool)
}

/// A cascade's hit: which stage produced it, and its score there (similarity or distance for
/// `sharing`/`similar`, the attribute's value for `top`).
public struct CascadeHit: Sendable, Equatable {
    public var hit: SearchHit
    public var stage: Int
    /// The stage restricted to a predicted category (the item had none).
    public var predicted = false
}

/// Items ranked by one numeric attribute, best first, as of `built`.
struct Ranking {
    var ids: [UInt64]
    var values: [Double]
    var built: DispatchTime
}

extension Collection {
    /// Most items a cached ranking keeps (a TOP stage can list no more than these).
    static let rankingSize = 10_000

    /// Fills a list of `count` items for the stored item `key` from `stages` in order, without
    /// duplicates and without the item itself; a stage that runs dry passes on to the next.
    public func recommend(key: String, stages: [CascadeStage], count: Int, efSearch: Int? = nil,
                          withAttributes: Bool = false) throws -> [CascadeHit] {
        guard count >= 1, count <= engine.options.maxK else {
            throw EngineError.invalidArgument("COUNT must be between 1 and \(engine.options.maxK)")
        }
        guard !stages.isEmpty else { throw EngineError.invalidArgument("a cascade needs at least one stage") }
        for stage in stages {
            switch stage {
            case .sharing(let attribute), .similarIn(let attribute):
                if !definition.attributes.contains(attribute) { throw notIndexed(attribute) }
            case .similar, .top: break
            }
        }
        guard let record = try item(key: key), let vector = try vector(key: key) else { throw EngineError.keyNotFound(key) }
        var out: [CascadeHit] = []
        var taken: Set<String> = [key]
        for (number, stage) in stages.enumerated() where out.count < count {
            // Ask for enough that the items already taken cannot leave the stage short.
            let wanted = min(engine.options.maxK, count - out.count + taken.count)
            var request = SearchRequest(query: .vector(vector), k: wanted, efSearch: efSearch, withAttributes: withAttributes)
            request.excludeQueryItem = false
            let hits: [SearchHit]
            var predicted = false
            func stored(_ attribute: String) -> String? {
                Attributes(record.attributes)?.indexedTexts(attribute).first
            }
            switch stage {
            case .similar:
                hits = try search(request)
            case .sharing(let attribute):
                guard let value = stored(attribute) else { continue }  // nothing shares a missing value
                hits = try search(request.inCategory(value, attribute: attribute))
            case .similarIn(let attribute):
                var value = stored(attribute)
                if value == nil {
                    value = try predict(.key(key), attribute: attribute)?.category
                    predicted = value != nil
                }
                guard let value else { continue }  // no category stored, none to predict
                hits = try search(request.inCategory(value, attribute: attribute))
            case .top(let attribute, let ascending):
                hits = try topRanked(attribute, ascending: ascending, skipping: taken, limit: count - out.count,
                                     withAttributes: withAttributes)
            }
            for h in hits where out.count < count && taken.insert(h.key).inserted {
                out.append(CascadeHit(hit: h, stage: number, predicted: predicted))
            }
        }
        return out
    }

    /// The best-ranked live items by `attribute`, skipping `taken`. The ranking is rebuilt when
    /// older than the engine's `rankingRefreshSeconds` (a scan of every item's attributes), so
    /// a TOP stage reflects writes within that time; a deleted item is never listed.
    func topRanked(_ attribute: String, ascending: Bool, skipping taken: Set<String>, limit: Int,
                   withAttributes: Bool) throws -> [SearchHit] {
        let ranking = try ranking(attribute, ascending: ascending)
        return try wrapped {
            try engine.environment.read { txn in
                var out: [SearchHit] = []
                for (id, value) in zip(ranking.ids, ranking.values) where out.count < limit {
                    guard let r = try store.item(id, txn), !taken.contains(r.key) else { continue }
                    out.append(SearchHit(key: r.key, id: id, score: Float(value), attributes: withAttributes ? r.attributes : nil))
                }
                return out
            }
        }
    }

    /// The cached ranking, rebuilt when stale. Concurrent rebuilds of one ranking may happen
    /// (both are correct; the later one is kept): cheaper than making readers wait on a lock.
    func ranking(_ attribute: String, ascending: Bool) throws -> Ranking {
        let cacheKey = (ascending ? "+" : "-") + attribute
        let maxAge = UInt64(max(0, engine.options.rankingRefreshSeconds) * 1e9)
        let now = DispatchTime.now()
        if let cached = rankings.withLock({ $0[cacheKey] }),
           now.uptimeNanoseconds - cached.built.uptimeNanoseconds <= maxAge {
            return cached
        }
        var top = TopK(k: Self.rankingSize)  // distance = the value, negated when descending
        try wrapped {
            try engine.environment.read { txn in
                try store.forEachItem(txn) { id, record in
                    guard let value = Attributes(record.attributes)?.number(attribute) else { return }
                    top.push(Neighbor(id: id, distance: Float(ascending ? value : -value)))
                }
            }
        }
        let sorted = top.sorted()
        let ranking = Ranking(ids: sorted.map(\.id), values: sorted.map { Double(ascending ? $0.distance : -$0.distance) }, built: now)
        rankings.withLock { $0[cacheKey] = ranking }
        return ranking
    }
}
