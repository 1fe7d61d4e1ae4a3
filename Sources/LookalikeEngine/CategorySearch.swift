// CategoryPrediction: which category a query vector belongs to, for "items like this, in the
// category it looks like" (VSIM … CATEGORY AUTO, VPREDICT). The restricted search itself is
// FilteredSearch's.
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
