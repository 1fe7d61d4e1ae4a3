// CategoryPrediction: which category a query belongs to, for "items like this, in the category
// it looks like" (VSIM … CATEGORY AUTO, VPREDICT), and a user's categories of interest
// (VPREDICT … HISTORY). The restricted search itself is FilteredSearch's.
// Prediction: the nearest neighbours' similarity-weighted vote, blended with the collection's
// category model when it has one (CategoryTraining: the blend weight was chosen on held-out
// items). Probabilities over categories sum to 1.
// Stored items: `CATEGORY AUTO` with an ELE query uses the item's own stored category (a shop
// knows it; the firefox-esr was stored as `web` and predicted as `localization`), unless
// asked to predict; VPREDICT always predicts (it is the question asked).
// Top-p (`CATEGORY AUTO P p`): the most likely categories whose probabilities add up to p share
// the k results in proportion to their probabilities, each searched for its share; a category
// with fewer members than its share passes the rest to the others, so k come back whenever the
// chosen categories hold k.
// Threads: any thread, like every search; the model is a snapshot, used without locks.
import Foundation
import LookalikeIndex
import LookalikeStorage

public struct CategoryPrediction: Sendable, Equatable {
    public var category: String
    /// The winner's probability, 0...1.
    public var confidence: Double
}

public struct CategoryProbability: Sendable, Equatable {
    public var category: String
    public var probability: Double
    public init(category: String, probability: Double) {
        self.category = category
        self.probability = probability
    }
}

/// What a prediction uses: the collection's trained choice, or (benchmarks, tests) a fixed one.
public enum CategoryPredictorChoice: Sendable, Equatable {
    case automatic
    case vote
    /// The model alone (the vote when there is no model).
    case model
    /// weight × model + (1 − weight) × vote.
    case blend(Double)
}

extension Collection {
    /// The category the query most likely belongs to. Nil when neither the vote nor a model
    /// has any category to give.
    public func predict(_ query: SearchRequest.Query, attribute: String = "category",
                        neighbours: Int = defaultVoteNeighbours) throws -> CategoryPrediction? {
        try predictCategories(query, attribute: attribute, neighbours: neighbours).first
            .map { CategoryPrediction(category: $0.category, confidence: $0.probability) }
    }

    /// Every category the query may belong to, most likely first (ties by name).
    public func predictCategories(_ query: SearchRequest.Query, attribute: String = "category",
                                  neighbours: Int = defaultVoteNeighbours,
                                  using choice: CategoryPredictorChoice = .automatic) throws -> [CategoryProbability] {
        let predictor = attribute == "category" ? categoryPredictor() : nil
        let weight: Double = switch choice {
        case .automatic: predictor?.info.blendWeight ?? 0
        case .vote: 0
        case .model: 1
        case .blend(let w): min(1, max(0, w))
        }
        guard let predictor, weight > 0 else { return Self.ranked(try voteDistribution(query, attribute: attribute, neighbours: neighbours)) }
        let vector = try resolveQuery(SearchRequest(query: query)).0
        let p = CategoryModel.tempered(vector.withUnsafeBufferPointer { predictor.model.probabilities($0.baseAddress!) },
                                       classes: predictor.model.classes.count, temperature: weight < 1 ? predictor.info.temperature : 1)
        var combined: [String: Double] = [:]
        for (category, q) in zip(predictor.model.classes, p) { combined[category] = weight * Double(q) }
        if weight < 1 {
            for (category, q) in try voteDistribution(query, attribute: attribute, neighbours: neighbours) {
                combined[category, default: 0] += (1 - weight) * q
            }
        }
        return Self.ranked(combined)
    }

    /// The nearest `neighbours` items' categories, each weighted by its similarity and split
    /// over an item's values; empty when none of them has the attribute.
    func voteDistribution(_ query: SearchRequest.Query, attribute: String, neighbours: Int) throws -> [String: Double] {
        var request = SearchRequest(query: query, k: max(1, neighbours), withAttributes: true)
        request.excludeQueryItem = true
        var votes: [String: Double] = [:]
        var total = 0.0
        for hit in try search(request) {
            guard let values = Attributes(hit.attributes)?.indexedTexts(attribute), !values.isEmpty else { continue }
            let weight = similarityWeight(hit.score)
            for v in values { votes[v, default: 0] += weight / Double(values.count) }
            total += weight
        }
        guard total > 0 else { return [:] }
        return votes.mapValues { $0 / total }
    }

    static func ranked(_ p: [String: Double]) -> [CategoryProbability] {
        p.map { CategoryProbability(category: $0.key, probability: $0.value) }
            .sorted { $0.probability > $1.probability || ($0.probability == $1.probability && $0.category < $1.category) }
    }

    /// A vote weight from a score: higher for closer items, always positive.
    private func similarityWeight(_ score: Float) -> Double {
        switch definition.metric {
        case .cosine: return max(1e-6, (1 + Double(score)) / 2)
        case .l2: return 1 / (1 + Double(score))
        case .ip: return exp(Double(score))
        }
    }

    /// A stored item's first value of `attribute` (a view answers for its item).
    func storedCategory(_ key: String, attribute: String) throws -> String? {
        Attributes(try item(key: Views.split(key).item)?.attributes)?.indexedTexts(attribute).first
    }

    // MARK: - CATEGORY AUTO

    /// VSIM … CATEGORY AUTO [P p] [PREDICT] (`CategoryRestriction.predicted`): top-k within
    /// the query's category — a stored item's own unless `predict`, else the predicted one, or
    /// with `topP` the most likely categories adding up to it. Empty when there is no category
    /// to restrict to. Each category's search is an ordinary plan (QueryPlan.swift).
    func searchInPredictedCategory(_ request: SearchRequest, attribute: String, topP: Double?, predict: Bool) throws
        -> [SearchHit]
    {
        if !predict, case .key(let key) = request.query, let own = try storedCategory(key, attribute: attribute) {
            return try search(request.inCategory(own, attribute: attribute))
        }
        let ranked = try predictCategories(request.query, attribute: attribute)
        guard let first = ranked.first else { return [] }
        guard let p = topP, first.probability < p else {
            return try search(request.inCategory(first.category, attribute: attribute))
        }
        return try searchCategories(request, ranked, topP: p, attribute: attribute)
    }

    /// Top-k over the most likely categories whose probabilities add up to `p` (at most k of
    /// them), each giving a share of the k in proportion to its probability; merged best first.
    func searchCategories(_ request: SearchRequest, _ ranked: [CategoryProbability], topP p: Double,
                attribute: String) throws -> [SearchHit] {
        var chosen: [CategoryProbability] = []
        var sum = 0.0
        for c in ranked where sum < p - 1e-9 && chosen.count < request.k {  // 0.6 + 0.3 is below 0.9 in binary
            chosen.append(c)
            sum += c.probability
        }
        var quota = Self.shares(request.k, chosen.map(\.probability))
        var found = [[SearchHit]](repeating: [], count: chosen.count)
        var exhausted = Set<Int>()
        while true {
            for i in chosen.indices where !exhausted.contains(i) && found[i].count < quota[i] {
                var r = request.inCategory(chosen[i].category, attribute: attribute)
                r.k = quota[i]
                found[i] = try search(r)
                if found[i].count < quota[i] { exhausted.insert(i) }
            }
            let merged = mergedBestFirst(found)
            let open = chosen.indices.filter { !exhausted.contains($0) }
            // Short (a category smaller than its share, or items in two chosen categories):
            // the categories with members left share what is missing.
            guard merged.count < request.k, !open.isEmpty else { return Array(merged.prefix(request.k)) }
            for (i, extra) in zip(open, Self.shares(request.k - merged.count, open.map { chosen[$0].probability })) {
                quota[i] += extra
            }
        }
    }

    /// `k` split in proportion to `weights` (largest remainders); each gets at least 1, taken
    /// from the largest shares, while k lasts.
    static func shares(_ k: Int, _ weights: [Double]) -> [Int] {
        let total = max(weights.reduce(0, +), 1e-12)
        let exact = weights.map { $0 / total * Double(k) }
        var out = exact.map { Int($0) }
        let byRemainder = weights.indices.sorted { exact[$0] - Double(out[$0]) > exact[$1] - Double(out[$1]) }
        for i in byRemainder.prefix(max(0, k - out.reduce(0, +))) { out[i] += 1 }
        for i in weights.indices where out[i] == 0 {
            guard let j = out.indices.max(by: { out[$0] < out[$1] }), out[j] > 1 else { break }
            out[j] -= 1
            out[i] = 1
        }
        return out
    }

    /// Hits of several searches, each item once, best score first.
    private func mergedBestFirst(_ lists: [[SearchHit]]) -> [SearchHit] {
        var seen = Set<String>()
        let all = lists.joined().sorted { definition.metric == .l2 ? $0.score < $1.score : $0.score > $1.score }
        return all.filter { seen.insert($0.key).inserted }
    }

    // MARK: - A user's interests

    /// VPREDICT … HISTORY: the categories of interest for a user who bought `keys`. Half the
    /// weight is the prediction for the history's aggregate vector (the items left out of its
    /// vote), half the items' own categories by their weights: a stored item's category, or
    /// the model's prediction for an item without one.
    public func categoriesOfInterest(_ keys: [String], _ weighting: HistoryWeighting, neighbours: Int = defaultVoteNeighbours)
        throws -> [CategoryProbability]
    {
        let aggregate = try predictCategories(.history(keys, weighting), neighbours: neighbours)
        let rows = try keys.map { key -> [Float] in
            guard let v = try vector(key: key) else { throw EngineError.keyNotFound(key) }
            return try preparedVector(v)
        }
        let weights = try historyWeights(rows, weighting)
        let predictor = categoryPredictor().flatMap { $0.info.blendWeight > 0 ? $0 : nil }
        var own: [String: Double] = [:]
        var total = 0.0
        for (key, (row, w)) in zip(keys, zip(rows, weights)) where w > 0 {
            if let category = try storedCategory(key, attribute: "category") {
                own[category, default: 0] += Double(w)
            } else if let predictor {
                let p = row.withUnsafeBufferPointer { predictor.model.probabilities($0.baseAddress!) }
                for (category, q) in zip(predictor.model.classes, p) { own[category, default: 0] += Double(w) * Double(q) }
            } else { continue }
            total += Double(w)
        }
        var combined: [String: Double] = [:]
        let half = aggregate.isEmpty || own.isEmpty ? 1.0 : 0.5
        for a in aggregate { combined[a.category] = half * a.probability }
        for (category, q) in own { combined[category, default: 0] += half * q / total }
        return Self.ranked(combined)
    }
}
