// SearchCommands: VSIM and VPREDICT — their options parsed once into a SearchRequest
// (SearchOptions, shared with VHISTORY and VWITHIN), the search offloaded to the search pool,
// and the reply in Redis's shapes (scores as Redis reports them: (1 + cos) / 2 for cosine).
// Threads: parsing on the event loop; the search on the search pool (`offload`).
import Foundation
import LookalikeEngine
import NIOCore

extension VectorCommands {
    // MARK: VSIM

    /// VSIM key (ELE element | FP32 blob | VALUES n ...) [WITHSCORES] [WITHATTRIBS] [COUNT n]
    ///      [EPSILON d] [EF n] [FILTER expr] [FILTER-EF n] [TRUTH] [NOTHREAD] [NPROBE n]
    ///      [RESCORE oversampling | NORESCORE]
    static func vsim(_ inv: Invocation) throws -> Reply {
        var i = 2
        let query = try parseQuery(inv, at: &i)
        let options = try SearchOptions(inv, query: query, from: i, command: "VSIM", k: 10)
        return try options.run(inv, threshold: nil)
    }

    /// The options VSIM, VHISTORY and VWITHIN share, parsed once, and the search they run.
    struct SearchOptions {
        var request: SearchRequest
        var withScores = false
        var epsilon: Double?

        init(_ inv: Invocation, query: SearchRequest.Query, from start: Int, command: String, k: Int) throws {
            request = SearchRequest(query: query, k: k, excludeQueryItem: false)
            var i = start
            while i < inv.count {
                switch inv.keyword(i) {
                case "CATEGORY":
                    guard i + 1 < inv.count else { throw CommandError.syntax() }
                    guard inv.keyword(i + 1) == "AUTO" else {
                        request.category = .value(inv.string(i + 1))
                        i += 2
                        continue
                    }
                    i += 2
                    request.category = try AutoCategory(inv, at: &i).restriction
                case "P", "PREDICT":
                    throw CommandError("\(inv.keyword(i)) belongs to CATEGORY AUTO: CATEGORY AUTO [P probability] [PREDICT]")
                case "WITHSCORES": withScores = true; i += 1
                case "WITHATTRIBS": request.withAttributes = true; i += 1
                case "TRUTH": request.exact = true; i += 1
                case "NOTHREAD": i += 1
                case "COUNT": request.k = try positive(inv, i + 1, "COUNT", atMost: inv.engine.options.maxK); i += 2
                case "EF": request.efSearch = try positive(inv, i + 1, "EF", atMost: inv.engine.options.maxEfSearch); i += 2
                case "NPROBE": request.nprobe = try positive(inv, i + 1, "NPROBE", atMost: maxNprobe); i += 2
                case "RESCORE":
                    request.rescore = try positive(inv, i + 1, "RESCORE", atMost: Collection.maxOversampling); i += 2
                case "NORESCORE": request.rescore = 0; i += 1
                case "EPSILON":
                    guard i + 1 < inv.count, let e = Double(inv.string(i + 1)), e >= 0 else {
                        throw CommandError("EPSILON must be a non-negative number")
                    }
                    epsilon = e
                    i += 2
                case "FILTER":
                    guard i + 1 < inv.count else { throw CommandError.syntax() }
                    do { request.filter = try FilterExpression(inv.string(i + 1), limits: inv.server.options.filterLimits) } catch let e as EngineError {
                        throw CommandError(e.description)
                    }
                    i += 2
                case "FILTER-EF":
                    guard i + 1 < inv.count, let n = Int(inv.string(i + 1)), n >= 0, n <= maxFilterEffort else {
                        throw CommandError("FILTER-EF must be an integer from 0 to \(maxFilterEffort)")
                    }
                    request.filterCandidates = n
                    i += 2
                default:
                    throw CommandError("unknown \(command) option '\(inv.string(i).prefix(64))'")
                }
            }
            guard request.k <= inv.engine.options.maxK else {
                throw CommandError("COUNT must be at most \(inv.engine.options.maxK)")
            }
        }

        /// Runs the search on the search pool; `threshold` (in reply-score units) makes it a
        /// threshold query with COUNT as its cap.
        func run(_ inv: Invocation, threshold: Double?) throws -> Reply {
            guard let collection = inv.server.collection(inv.string(1)) else { return .now(.array([])) }
            let version = inv.connection.protocolVersion
            let metric = collection.definition.metric
            let options = self
            var bounded = request
            bounded.threshold = threshold.map { engineScore($0, metric) }
            let request = bounded
            return inv.offload {
                let hits = try collection.search(request)
                let scored = hits.map { (hit: $0, score: redisScore($0.score, metric)) }
                    .filter { options.epsilon == nil || withinEpsilon($0.score, options.epsilon!, metric) }
                return vsimReply(scored, withScores: options.withScores, withAttributes: request.withAttributes, version: version)
            }
        }
    }

    /// A reply score (Redis's (1 + cos) / 2 for cosine) as the engine's hit score.
    static func engineScore(_ score: Double, _ metric: Metric) -> Float {
        metric == .cosine ? Float(2 * score - 1) : Float(score)
    }

    /// Cosine as Redis reports it: (1 + cos) / 2, from 0 (opposite) to 1 (same direction).
    /// float32 leaves a unit vector's product with itself up to 1e-6 below 1; that is 1.
    static func redisScore(_ score: Float, _ metric: Metric) -> Double {
        switch metric {
        case .cosine:
            let c = Double(score)
            if c > 1 - 1e-6 { return 1 }
            return min(1, max(0, (1 + c) / 2))
        case .l2, .ip: return Double(score)
        }
    }

    static func withinEpsilon(_ score: Double, _ epsilon: Double, _ metric: Metric) -> Bool {
        metric == .l2 ? score <= epsilon : score >= 1 - epsilon
    }

    static func vsimReply(_ hits: [(hit: SearchHit, score: Double)], withScores: Bool,
                          withAttributes: Bool, version: Int) -> RESPValue {
        func attrs(_ h: SearchHit) -> RESPValue { h.attributes.map { .string($0) } ?? .null }
        if !withScores && !withAttributes { return .array(hits.map { .string($0.hit.key) }) }
        if version >= 3 {
            return .map(hits.map { h in
                let value: RESPValue
                if withScores && withAttributes { value = .array([.double(h.score), attrs(h.hit)]) }
                else if withScores { value = .double(h.score) }
                else { value = attrs(h.hit) }
                return (.string(h.hit.key), value)
            })
        }
        var flat: [RESPValue] = []
        for h in hits {
            flat.append(.string(h.hit.key))
            if withScores { flat.append(.double(h.score)) }
            if withAttributes { flat.append(attrs(h.hit)) }
        }
        return .array(flat)
    }

    /// CATEGORY AUTO's words: P p (the most likely categories adding up to p share the
    /// results) and PREDICT (an ELE query predicts instead of using the item's own category).
    struct AutoCategory: Sendable {
        var topP: Double?
        var predict = false

        init(_ inv: Invocation, at i: inout Int) throws {
            while i < inv.count {
                switch inv.keyword(i) {
                case "P":
                    guard i + 1 < inv.count, let p = Double(inv.string(i + 1)), p > 0, p <= 1 else {
                        throw CommandError("P must be a probability above 0 and at most 1, as in CATEGORY AUTO P 0.9")
                    }
                    topP = p
                    i += 2
                case "PREDICT":
                    predict = true
                    i += 1
                default:
                    return
                }
            }
        }

        var restriction: CategoryRestriction { .predicted(topP: topP, predict: predict) }
    }

    /// VPREDICT key (ELE element | FP32 blob | VALUES n … | HISTORY n e1 … en [WEIGHTS w1 … wn])
    ///          [COUNT neighbours] [TOP n]
    /// -> [category, probability], or null when there is no category to give; with TOP n, the
    /// n most likely as [category1, probability1, …] (an empty array when none). COUNT keeps its
    /// first meaning (the neighbours that vote), so TOP is the number of categories.
    static func vpredict(_ inv: Invocation) throws -> Reply {
        var i = 2
        var history: ([String], HistoryWeighting)?
        var query = SearchRequest.Query.vector([])
        if inv.keyword(i) == "HISTORY" {
            let h = try RecommendationCommands.parseHistory(inv, countAt: 3, command: "VPREDICT … HISTORY", attention: false)
            history = (h.keys, h.weighting)
            i = h.next
        } else {
            query = try parseQuery(inv, at: &i)
        }
        var neighbours = Collection.defaultVoteNeighbours
        var top: Int?
        while i < inv.count {
            switch inv.keyword(i) {
            case "COUNT": neighbours = try positive(inv, i + 1, "COUNT (the neighbours that vote)", atMost: inv.engine.options.maxK)
            case "TOP": top = try positive(inv, i + 1, "TOP (the number of categories)", atMost: inv.engine.options.maxK)
            default: throw CommandError("unknown VPREDICT option '\(inv.string(i).prefix(64))' (options: COUNT neighbours, TOP n)")
            }
            i += 2
        }
        guard let c = inv.server.collection(inv.string(1)) else { return .now(top == nil ? .null : .array([])) }
        let (n, q, h, wanted) = (neighbours, query, history, top)
        return inv.offload {
            let ranked = try h.map { try c.categoriesOfInterest($0.0, $0.1, neighbours: n) }
                ?? c.predictCategories(q, neighbours: n)
            guard let wanted else {
                guard let first = ranked.first else { return .null }
                return .array([.string(first.category), .double(first.probability)])
            }
            return .array(ranked.prefix(wanted).flatMap { [RESPValue.string($0.category), .double($0.probability)] })
        }
    }
}
