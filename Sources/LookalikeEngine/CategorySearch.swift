// CategorySearch: "items like this, in this category", and predicting the category.
//
// Plan, by the category's size (an O(1) count from its LMDB attribute table):
//   - small (at most `exactCategoryLimit` items): read just those vectors from LMDB and scan
//     them exactly: exact answer, and cheap, since few vectors are touched;
//   - large: approximate search over every segment, widening until k members of the
//     category are found or every item was examined, so k come back whenever k exist.
// Prediction: a similarity-weighted vote of the unfiltered nearest neighbours' categories.
// Threads: any thread, like every search.
import Foundation
import LookalikeIndex
import LookalikeStorage

public struct CategoryPrediction: Sendable, Equatable {
    public var category: String
    /// The winner's share of the neighbours' similarity weight, 0...1.
    public var confidence: Double
}

extension Collection {
    /// Top-k among items whose indexed attribute `attribute` has `value`.
    public func search(_ request: SearchRequest, attribute: String, value: String) throws -> [SearchHit] {
        guard definition.attributes.contains(attribute) else {
            throw EngineError.invalidArgument("'\(attribute)' is not an indexed attribute of '\(name)' (indexed: \(definition.attributes.joined(separator: ", ")))")
        }
        let size = try count(attribute: attribute, value: value)
        guard size > 0 else { return [] }
        if size <= engine.options.exactCategoryLimit {
            return try exactSearch(request, attribute: attribute, value: value)
        }
        let members = try wrapped {
            try engine.environment.read { try Set(store.ids(attribute: attribute, value: value, $0)) }
        }
        return try search(request, where: { members.contains($0.id) }, maxCandidates: 0)
    }

    /// Brute force over the vectors of one attribute value, read by id from LMDB.
    private func exactSearch(_ request: SearchRequest, attribute: String, value: String) throws -> [SearchHit] {
        let (query, queryKey) = try resolveQuery(request.query)
        let excluded = request.excludeQueryItem ? queryKey : nil
        let k = request.k + (excluded == nil ? 0 : 1)
        let neighbors = try query.withUnsafeBufferPointer { q in
            var scan = StoredVectorScan(dimension: definition.dimension, metric: definition.metric,
                                        query: q.baseAddress!, k: k)
            try wrapped {
                try engine.environment.read { txn in
                    for id in try store.ids(attribute: attribute, value: value, txn) {
                        if let bytes = try store.vectorBytes(id, txn) { scan.add(id: id, bytes: bytes) }
                    }
                }
            }
            return scan.finish()
        }
        return try hits(for: neighbors, excluding: excluded, limit: request.k, withAttributes: request.withAttributes)
    }

    /// The category the query most likely belongs to: the nearest `neighbours` items vote
    /// with their similarity. Nil when none of them has the attribute.
    public func predict(_ query: SearchRequest.Query, attribute: String = "category",
                        neighbours: Int = 20) throws -> CategoryPrediction? {
        var request = SearchRequest(query: query, k: max(1, neighbours), withAttributes: true)
        request.excludeQueryItem = true
        let hits = try search(request)
        var votes: [String: Double] = [:]
        var total = 0.0
        for hit in hits {
            let weight = similarityWeight(hit.score)
            guard let json = hit.attributes,
                  let values = AttributeIndex.values(of: json, for: [attribute])[attribute] else { continue }
            for v in values { votes[v, default: 0] += weight / Double(values.count) }
            total += weight
        }
        guard let best = votes.max(by: { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }),
              total > 0 else { return nil }
        return CategoryPrediction(category: best.key, confidence: best.value / total)
    }

    /// A vote weight from a score: higher for closer items, always positive.
    private func similarityWeight(_ score: Float) -> Double {
        switch definition.metric {
        case .cosine: return max(1e-6, (1 + Double(score)) / 2)
        case .l2: return 1 / (1 + Double(score))
        case .ip: return exp(Double(score))
        }
    }
}
