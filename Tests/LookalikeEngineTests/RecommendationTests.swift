// Recommendations (issue 7): a user's history as one query — mean, weights, attention — with
// the history's items left out, against brute force on the aggregate computed here; and
// threshold queries that return everything within the threshold, up to a cap.
import LookalikeEngine
import LookalikeFormats
import LookalikeTestSupport
import XCTest

final class RecommendationTests: XCTestCase {
    let dimension = 16

    func load(metric: Metric = .cosine, index: String = "HNSW16") async throws -> (Collection, [(key: String, vector: [Float])]) {
        var options = EngineOptions()
        options.sealThreshold = 1_000  // sealed segments and a mutable one
        let engine = try Engine(directory: temporaryDirectory(self), options: options)
        addTeardownBlock { engine.close() }
        let c = try engine.createCollection(.init(name: "c", dimension: dimension, metric: metric, index: index))
        let vectors = clusteredVectors(count: 2_500, dimension: dimension, clusters: 20, seed: 3)
        let data = vectors.enumerated().map { (key: "i\($0.offset)", vector: $0.element) }
        _ = await c.write(batch: data.map { .upsert(key: $0.key, vector: $0.vector, attributes: .set("{\"category\":\"c\(Int($0.key.dropFirst())! % 3)\"}")) })
        engine.waitForSealing()
        return (c, data)
    }

    func unit(_ v: [Float]) -> [Float] {
        let n = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return v.map { $0 / n }
    }

    /// The aggregate computed independently: weighted mean of the unit vectors.
    func aggregate(_ rows: [[Float]], _ weights: [Float]) -> [Float] {
        var sum = [Float](repeating: 0, count: dimension)
        for (r, w) in zip(rows, weights) { for j in 0..<dimension { sum[j] += w * r[j] } }
        return sum
    }

    func testHistoryMeanWeightsAndAttentionMatchBruteForce() async throws {
        let (c, data) = try await load()
        let history = ["i5", "i77", "i1201", "i2300"]
        let rows = history.map { k in unit(data.first { $0.key == k }!.vector) }
        let rest = data.filter { !history.contains($0.key) }
        let q = unit(clusteredVectors(count: 1, dimension: dimension, clusters: 20, seed: 8)[0])
        let logits = rows.map { r in zip(r, q).reduce(Float(0)) { $0 + $1.0 * $1.1 } }
        let softmax = logits.map { exp($0 - logits.max()!) }.map { $0 / logits.map { exp($0 - logits.max()!) }.reduce(0, +) }
        let cases: [(HistoryWeighting, [Float])] = [
            (.mean, [1, 1, 1, 1]),
            (.weights([3, 0, 1, 0.5]), [3, 0, 1, 0.5]),
            (.attention(q), softmax),
        ]
        for (weighting, weights) in cases {
            let truth = bruteForce(aggregate(rows, weights), rest, k: 10, metric: .cosine)
            let exact = try c.search(SearchRequest(query: .history(history, weighting), k: 10, exact: true))
            XCTAssertEqual(Set(exact.map(\.key)), Set(truth), "\(weighting): exact search of the aggregate")
            let approximate = try c.search(SearchRequest(query: .history(history, weighting), k: 10, efSearch: 200))
            XCTAssertGreaterThanOrEqual(recall(approximate.map(\.key), truth), 0.9, "\(weighting)")
            XCTAssertTrue(Set(approximate.map(\.key)).isDisjoint(with: history), "the history's items are left out")
            XCTAssertEqual(approximate.count, 10)
        }
        // With a filter too: every hit in the category, still none of the history.
        let filtered = try c.search(SearchRequest(query: .history(history, .mean), k: 10).inCategory("c1"))
        XCTAssertEqual(filtered.count, 10)
        XCTAssertTrue(filtered.allSatisfy { Int($0.key.dropFirst())! % 3 == 1 && !history.contains($0.key) })
    }

    func testHistoryErrorsSayWhy() async throws {
        let (c, _) = try await load()
        assertThrows(.keyNotFound("nope")) { try c.search(SearchRequest(query: .history(["i1", "nope"], .mean))) }
        assertThrows(.invalidArgument("WEIGHTS has 1 values for 2 elements")) {
            try c.search(SearchRequest(query: .history(["i1", "i2"], .weights([1]))))
        }
        assertThrows(.invalidArgument("WEIGHTS must be finite, non-negative, and not all zero")) {
            try c.search(SearchRequest(query: .history(["i1", "i2"], .weights([1, -1]))))
        }
        assertThrows(.invalidArgument("a history needs at least one element")) { try c.search(SearchRequest(query: .history([], .mean))) }
        assertThrows(.wrongDimension(expected: dimension, got: 3)) {
            try c.search(SearchRequest(query: .history(["i1"], .attention([1, 2, 3]))))
        }
    }

    func testWithinReturnsEverythingInsideTheThresholdUpToTheCap() async throws {
        for metric in [Metric.cosine, .l2] {
            let (c, data) = try await load(metric: metric)
            let q = data[42].vector
            let ranked = bruteForce(q, data, k: data.count, metric: metric)
            // A threshold that 150 items pass: more than one widening round.
            let scores = try c.search(SearchRequest(query: .vector(q), k: 151, exact: true)).map(\.score)
            let threshold = (scores[149] + scores[150]) / 2
            func bounded(_ r: SearchRequest) -> SearchRequest { var r = r; r.threshold = threshold; return r }
            let inside = Set(ranked.prefix(150))
            let exact = try c.search(bounded(SearchRequest(query: .vector(q), k: 1_000, exact: true)))
            XCTAssertEqual(Set(exact.map(\.key)), inside, "\(metric): exact is complete")
            let approximate = try c.search(bounded(SearchRequest(query: .vector(q), k: 1_000)))
            XCTAssertGreaterThanOrEqual(Double(Set(approximate.map(\.key)).intersection(inside).count) / 150, 0.95, "\(metric)")
            XCTAssertTrue(approximate.allSatisfy { metric == .l2 ? $0.score <= threshold : $0.score >= threshold }, "nothing outside")
            let capped = try c.search(bounded(SearchRequest(query: .vector(q), k: 20, exact: true)))
            XCTAssertEqual(Set(capped.map(\.key)), Set(ranked.prefix(20)), "\(metric): the cap keeps the best")
        }
    }

    /// A threshold is a stop rule of the one query plan, so it composes with a category and
    /// a filter: every member inside the threshold comes back (exact), over several rounds.
    func testWithinACategoryReturnsEveryMemberInsideTheThreshold() async throws {
        let (c, data) = try await load()
        let q = data[42].vector
        let members = data.filter { Int($0.key.dropFirst())! % 3 == 1 }
        let ranked = bruteForce(q, members, k: members.count, metric: .cosine)
        let scores = try c.search(SearchRequest(query: .vector(q), k: 151, exact: true).inCategory("c1")).map(\.score)
        var request = SearchRequest(query: .vector(q), k: 1_000, exact: true)
        request.threshold = (scores[139] + scores[140]) / 2
        let inside = Set(ranked.prefix(140))
        XCTAssertEqual(Set(try c.search(request.inCategory("c1")).map(\.key)), inside, "CATEGORY")
        let filter = try FilterExpression(".category == \"c1\"")
        XCTAssertEqual(Set(try c.search(request.filtered(filter)).map(\.key)), inside, "FILTER")
        request.k = 30
        XCTAssertEqual(Set(try c.search(request.inCategory("c1")).map(\.key)), Set(ranked.prefix(30)), "the cap keeps the best")
    }

    // MARK: The cascade

    /// 600 stickers: author i % 50 (12 each), category i % 3, sales rank a permutation.
    func stickers(refresh: Double = 60) async throws -> (Collection, [(key: String, vector: [Float])], Engine) {
        var options = EngineOptions()
        options.sealThreshold = 250
        options.rankingRefreshSeconds = refresh
        let engine = try Engine(directory: temporaryDirectory(self), options: options)
        addTeardownBlock { engine.close() }
        let c = try engine.createCollection(.init(name: "s", dimension: dimension, metric: .cosine, index: "HNSW16"))
        let data = clusteredVectors(count: 600, dimension: dimension, clusters: 10, seed: 5)
            .enumerated().map { (key: "s\($0.offset)", vector: $0.element) }
        _ = await c.write(batch: data.enumerated().map { i, item in
            .upsert(key: item.key, vector: item.vector,
                    attributes: .set("{\"author\":\"a\(i % 50)\",\"category\":\"c\(i % 3)\",\"rank\":\((i * 7) % 600 + 1)}"))
        })
        engine.waitForSealing()
        return (c, data, engine)
    }

    func testCascadeFillsFromStagesInOrderWithoutDuplicates() async throws {
        let (c, data, _) = try await stickers()
        let item = data[10]  // author a10, category c1
        let stages: [CascadeStage] = [.sharing("author"), .sharing("category"), .top("rank", ascending: true)]
        // Author: 11 others, then similar items in the same category fill the list.
        let hits = try c.recommend(key: item.key, stages: stages, count: 41, efSearch: 200)
        XCTAssertEqual(hits.count, 41)
        XCTAssertEqual(Set(hits.map(\.hit.key)).count, 41, "no duplicates")
        XCTAssertFalse(hits.contains { $0.hit.key == item.key }, "not the item itself")
        XCTAssertEqual(hits.map(\.stage), Array(repeating: 0, count: 11) + Array(repeating: 1, count: 30),
                       "the author's stage runs dry after 11 and the next one fills the rest")

        let index = { (key: String) in Int(key.dropFirst())! }
        let sameAuthor = data.filter { index($0.key) % 50 == 10 && $0.key != item.key }
        XCTAssertEqual(hits.prefix(11).map(\.hit.key), bruteForce(item.vector, sameAuthor, k: 11, metric: .cosine),
                       "the author's items, nearest first")
        let taken = Set(hits.prefix(11).map(\.hit.key) + [item.key])
        let sameCategory = data.filter { index($0.key) % 3 == 1 && !taken.contains($0.key) }
        XCTAssertTrue(hits.dropFirst(11).allSatisfy { index($0.hit.key) % 3 == 1 }, "in the item's category")
        let truth = bruteForce(item.vector, sameCategory, k: 30, metric: .cosine)
        XCTAssertGreaterThanOrEqual(recall(hits.dropFirst(11).map(\.hit.key), truth), 0.9, "the nearest of the category")

        // The best-ranked after the author's: rank 1 first, the author's items not repeated.
        let ranked = try c.recommend(key: item.key, stages: [.sharing("author"), .top("rank", ascending: true)], count: 16)
        XCTAssertEqual(ranked.map(\.stage), Array(repeating: 0, count: 11) + Array(repeating: 1, count: 5))
        let rank = { (key: String) in (index(key) * 7) % 600 + 1 }
        let byRank = data.map(\.key).filter { !taken.contains($0) }.sorted { rank($0) < rank($1) }
        XCTAssertEqual(ranked.suffix(5).map(\.hit.key), Array(byRank.prefix(5)))
        XCTAssertEqual(ranked.suffix(5).map(\.hit.score), byRank.prefix(5).map { Float(rank($0)) }, "a TOP hit's score is its rank")
        let descending = try c.recommend(key: item.key, stages: [.top("rank", ascending: false)], count: 2)
        XCTAssertEqual(descending.map(\.hit.score), [600, 599])
    }

    func testCascadeTopStageNeverListsDeletedItemsAndRefreshes() async throws {
        let (c, _, _) = try await stickers(refresh: 0)
        let best = try c.recommend(key: "s1", stages: [.top("rank", ascending: true)], count: 3)
        XCTAssertEqual(best.map(\.hit.key), ["s0", "s343", "s86"])  // ranks 1, 2, 3: (i * 7) % 600 + 1
        try await c.remove(key: "s343")
        try await c.upsert(key: "newcomer", vector: clusteredVectors(count: 1, dimension: dimension, clusters: 1, seed: 9)[0],
                           attributes: .set("{\"rank\":0}"))
        let after = try c.recommend(key: "s1", stages: [.top("rank", ascending: true)], count: 3)
        XCTAssertEqual(after.map(\.hit.key), ["newcomer", "s0", "s86"], "the deleted one gone, the new one in")

        // A cached ranking (not rebuilt for a minute) still skips an item deleted since.
        let (cached, _, _) = try await stickers()
        XCTAssertEqual(try cached.recommend(key: "s1", stages: [.top("rank", ascending: true)], count: 3).map(\.hit.key), ["s0", "s343", "s86"])
        try await cached.remove(key: "s0")
        XCTAssertEqual(try cached.recommend(key: "s1", stages: [.top("rank", ascending: true)], count: 3).map(\.hit.key), ["s343", "s86", "s429"])
    }

    func testCascadeErrorsSayWhy() async throws {
        let (c, _, _) = try await stickers()
        assertThrows(.keyNotFound("nope")) { try c.recommend(key: "nope", stages: [.similar], count: 5) }
        assertThrows(.invalidArgument("'rank' is not an indexed attribute of 's' (indexed: category, author)")) {
            try c.recommend(key: "s1", stages: [.sharing("rank")], count: 5)
        }
        assertThrows(.invalidArgument("a cascade needs at least one stage")) { try c.recommend(key: "s1", stages: [], count: 5) }
    }
}
