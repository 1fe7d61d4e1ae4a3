// Filtered search never loses recall and returns k whenever k exist, for categories from 0.05%
// to 50% of the collection, with categories that do and do not follow the vectors, under each
// plan (the planner's choice, exact, selector-restricted ANN); FILTER expressions over indexed
// attributes; prediction on separated data.
import LookalikeEngine
import LookalikeFormats
import LookalikeTestSupport
import XCTest

final class CategorySearchTests: XCTestCase {
    /// Sizes from 0.05% (2 of 4,000) to 50% of the collection.
    let sizes = [2, 6, 40, 200, 400, 1352, 2000]

    func load(correlated: Bool) async throws -> (Collection, [(key: String, vector: [Float])], [String: String]) {
        var options = EngineOptions()
        options.sealThreshold = 1500
        options.exactFilterLimit = 100
        let engine = try Engine(directory: temporaryDirectory(self), options: options)
        addTeardownBlock { engine.close() }
        let c = try engine.createCollection(.init(name: "c", dimension: 16, metric: .cosine, index: "HNSW16"))
        let n = sizes.reduce(0, +)
        var vectors = clusteredVectors(count: n, dimension: 16, clusters: 30, seed: 5)
        if correlated { vectors.sort { $0[0] < $1[0] } }  // neighbouring rows, same category
        var category: [String: String] = [:]
        var data: [(key: String, vector: [Float])] = []
        var requests: [WriteRequest] = []
        var row = 0
        for (ci, size) in sizes.enumerated() {
            for _ in 0..<size {
                let key = "i\(row)"
                category[key] = "cat\(ci)"
                data.append((key, vectors[row]))
                requests.append(.upsert(key: key, vector: vectors[row], attributes: .set("{\"category\":\"cat\(ci)\"}")))
                row += 1
            }
        }
        if !correlated {  // scatter categories over the rows
            var rng = SeededRandom(seed: 9)
            for i in stride(from: requests.count - 1, to: 0, by: -1) {
                let j = Int(rng.next() % UInt64(i + 1))
                requests.swapAt(i, j)
            }
        }
        _ = await c.write(batch: requests)
        engine.waitForSealing()
        return (c, data, category)
    }

    func check(correlated: Bool) async throws {
        let (c, data, category) = try await load(correlated: correlated)
        let queries = clusteredVectors(count: 10, dimension: 16, clusters: 30, seed: 77)
        for (ci, size) in sizes.enumerated() {
            let name = "cat\(ci)"
            let members = data.filter { category[$0.key] == name }
            for plan in FilterPlan.allCases {
                var total = 0.0
                for q in queries {
                    var request = SearchRequest(query: .vector(q), k: 10)
                    request.filterPlan = plan
                    let hits = try c.search(request.inCategory(name))
                    XCTAssertEqual(hits.count, min(10, size), "\(name) \(plan): k must come back when k exist")
                    XCTAssertTrue(hits.allSatisfy { category[$0.key] == name }, "\(name) \(plan): a hit outside the category")
                    total += recall(hits.map(\.key), bruteForce(q, members, k: min(10, size), metric: .cosine))
                }
                let mean = total / Double(queries.count)
                // Forced plans run without their fallbacks: diagnostics, held to a lower bar.
                let bar = [FilterPlan.exact: 1.0, .automatic: 0.99, .approximate: 0.85, .postFilter: 0.85][plan]!
                XCTAssertGreaterThanOrEqual(mean, bar, "\(name) (\(size) items) \(plan) recall \(mean)")
            }
        }
        XCTAssertEqual(try c.search(SearchRequest(query: .vector(queries[0]), k: 10).inCategory("none")), [])
        XCTAssertThrowsError(try c.search(SearchRequest(query: .vector(queries[0])).inCategory("red", attribute: "colour")))
    }

    func testCategoriesThatFollowTheVectors() async throws { try await check(correlated: true) }
    func testCategoriesScatteredOverTheVectors() async throws { try await check(correlated: false) }

    /// In a segment large enough for the cost model to prefer the index: a scattered 50%
    /// filter is post-filtered; a 20% category lying away from the queries is not among their
    /// unfiltered neighbours and falls back. Both keep recall and return k.
    func testPlannerOnALargeSegment() async throws {
        let engine = try Engine(directory: temporaryDirectory(self))
        defer { engine.close() }
        let c = try engine.createCollection(.init(name: "big", dimension: 8, metric: .l2, index: "HNSW16"))
        let n = 20_000
        let vectors = clusteredVectors(count: n, dimension: 8, clusters: 40, seed: 31)
        var rng = SeededRandom(seed: 4)
        var data: [(key: String, vector: [Float])] = []
        var requests: [WriteRequest] = []
        var half: [(key: String, vector: [Float])] = [], far: [(key: String, vector: [Float])] = []
        for (i, v) in vectors.enumerated() {
            var tags: [String] = []
            if rng.uniform() < 0.5 { tags.append("half") }
            if v[0] > 0.9 { tags.append("far") }  // one end of the first axis
            let item = (key: "k\(i)", vector: v)
            data.append(item)
            if tags.contains("half") { half.append(item) }
            if tags.contains("far") { far.append(item) }
            let json = "{\"category\":[\(tags.map { "\"\($0)\"" }.joined(separator: ","))]}"
            requests.append(.upsert(key: item.key, vector: v, attributes: .set(json)))
        }
        _ = await c.write(batch: requests)
        try engine.persist()
        XCTAssertGreaterThan(far.count, 200)
        let queries = data.filter { $0.vector[0] < -0.5 }.prefix(10).map(\.vector)
        for (name, members) in [("half", half), ("far", far)] {
            var total = 0.0
            for q in queries {
                let hits = try c.search(SearchRequest(query: .vector(q), k: 10).inCategory(name))
                XCTAssertEqual(hits.count, 10, name)
                total += recall(hits.map(\.key), bruteForce(q, members, k: 10, metric: .l2))
            }
            XCTAssertGreaterThanOrEqual(total / Double(queries.count), 0.99, name)
        }
    }

    /// FILTER expressions with an indexed part (==, in, and, or over category and author) are
    /// planned over the members and answer exactly like brute force over the matching items;
    /// a `not` falls back to post-filtering and still returns only matches.
    func testFilterExpressionsOverIndexedAttributes() async throws {
        var options = EngineOptions()
        options.sealThreshold = 700
        let engine = try Engine(directory: temporaryDirectory(self), options: options)
        defer { engine.close() }
        let c = try engine.createCollection(.init(name: "f", dimension: 12, metric: .l2, index: "HNSW16",
                                                  attributes: ["category", "author"]))
        let vectors = clusteredVectors(count: 2000, dimension: 12, clusters: 20, seed: 21)
        var attributes: [String: String] = [:]
        var data: [(key: String, vector: [Float])] = []
        var requests: [WriteRequest] = []
        for (i, v) in vectors.enumerated() {
            let a: [String: Any] = ["category": "cat\(i % 7)", "author": ["ann", "bob", "cy"][i % 3],
                                    "price": i % 10, "year": 1990 + i % 5]
            let json = String(data: try JSONSerialization.data(withJSONObject: a), encoding: .utf8)!
            attributes["k\(i)"] = json
            data.append(("k\(i)", v))
            requests.append(.upsert(key: "k\(i)", vector: v, attributes: .set(json)))
        }
        _ = await c.write(batch: requests)
        engine.waitForSealing()
        XCTAssertGreaterThan(c.segmentSummary().sealed, 1)

        let cases = [".category == \"cat3\" and .price > 6", ".category in [\"cat0\", \"cat5\"]",
                     ".category == \"cat1\" or .author == \"cy\"", "\"bob\" == .author && .year == 1992",
                     ".category == \"cat2\" and .author == \"ann\" and .price < 2", ".year == \"1993\" and .author == \"ann\"",
                     "not (.category == \"cat6\")", ".category == \"nothing\""]
        let queries = clusteredVectors(count: 5, dimension: 12, clusters: 20, seed: 88)
        for source in cases {
            let filter = try FilterExpression(source)
            let matching = data.filter { filter.matches(attributes[$0.key]!) }
            for q in queries {
                let hits = try c.search(SearchRequest(query: .vector(q), k: 10).filtered(filter, candidates: 0))
                XCTAssertEqual(hits.count, min(10, matching.count), source)
                XCTAssertTrue(hits.allSatisfy { filter.matches(attributes[$0.key]!) }, source)
                if filter.indexedSet(over: ["category", "author"]) != nil, !matching.isEmpty {
                    XCTAssertEqual(recall(hits.map(\.key), bruteForce(q, matching, k: min(10, matching.count), metric: .l2)), 1, source)
                }
            }
        }
        // CATEGORY and FILTER together: both apply.
        let filter = try FilterExpression(".price >= 5")
        let both = data.filter { try! FilterExpression(".category == \"cat4\" and .price >= 5").matches(attributes[$0.key]!) }
        let hits = try c.search(SearchRequest(query: .vector(queries[0]), k: 10).inCategory("cat4").filtered(filter))
        XCTAssertEqual(hits.map(\.key), bruteForce(queries[0], both, k: 10, metric: .l2))
    }

    /// Exactly k matching items, spread over sealed segments and the unsealed tail, with deletes
    /// in each: CATEGORY, an indexed FILTER, a mixed FILTER and an unindexed FILTER all return
    /// every one of them, nearest first, and asking for more returns no more.
    func testExactlyKMatchesAcrossSealedAndTailSegmentsWithDeletes() async throws {
        var options = EngineOptions()
        options.sealThreshold = 200
        let engine = try Engine(directory: temporaryDirectory(self), options: options)
        defer { engine.close() }
        let c = try engine.createCollection(.init(name: "k", dimension: 4, metric: .l2, index: "HNSW16"))
        for i in 0..<400 {
            let category = i % 37 == 0 ? "rare" : "c\(i % 3)"
            try await c.upsert(key: "k\(i)", vector: [Float(i), 0, 0, 0], attributes: .set("{\"category\":\"\(category)\",\"price\":\(i)}"))
        }
        engine.waitForSealing()
        for i in 400..<500 {  // the tail: not sealed
            let category = i % 37 == 0 ? "rare" : "c\(i % 3)"
            try await c.upsert(key: "k\(i)", vector: [Float(i), 0, 0, 0], attributes: .set("{\"category\":\"\(category)\",\"price\":\(i)}"))
        }
        for gone in ["k37", "k259", "k444"] { _ = try await c.remove(key: gone) }
        let rare = (0..<500).filter { $0 % 37 == 0 && ![37, 259, 444].contains($0) }.reversed().map { "k\($0)" }
        XCTAssertEqual(rare.count, 11)
        let far = SearchRequest(query: .vector([1_000, 0, 0, 0]), k: rare.count)
        var more = far
        more.k = rare.count + 5
        for request in [far, more] {
            XCTAssertEqual(try c.search(request.inCategory("rare")).map(\.key), rare)
            for (source, effort) in [(".category == \"rare\"", nil), (".category == \"rare\" and .price >= 0", nil),
                                     (".price % 37 == 0", 0)] as [(String, Int?)] {
                let hits = try c.search(request.filtered(FilterExpression(source), candidates: effort))
                XCTAssertEqual(hits.map(\.key), rare, source)
            }
        }
    }

    /// Resolved filters are cached (MemberCache): a write that adds, moves or removes a member
    /// is seen by the very next query, in the mutable segment and in sealed ones.
    func testFilterCacheFollowsWrites() async throws {
        var options = EngineOptions()
        options.sealThreshold = 200
        let engine = try Engine(directory: temporaryDirectory(self), options: options)
        defer { engine.close() }
        let c = try engine.createCollection(.init(name: "w", dimension: 4, metric: .l2, index: "HNSW16"))
        for i in 0..<450 {
            let v: [Float] = [Float(i), 0, 0, 0]
            try await c.upsert(key: "k\(i)", vector: v, attributes: .set("{\"category\":\"c\(i % 3)\"}"))
        }
        engine.waitForSealing()
        let near = SearchRequest(query: .vector([100, 0, 0, 0]), k: 3)
        let filter = try FilterExpression(".category == \"c1\"")
        func keys() throws -> [String] { try c.search(near.inCategory("c1")).map(\.key) }
        func filtered() throws -> [String] { try c.search(near.filtered(filter, candidates: nil)).map(\.key) }
        XCTAssertEqual(try keys(), ["k100", "k97", "k103"])
        XCTAssertEqual(try filtered(), ["k100", "k97", "k103"])
        // A new member lands in the mutable segment.
        try await c.upsert(key: "new", vector: [100.2, 0, 0, 0], attributes: .set("{\"category\":\"c1\"}"))
        XCTAssertEqual(try keys(), ["k100", "new", "k97"])
        XCTAssertEqual(try filtered(), ["k100", "new", "k97"])
        // A sealed item moves into the category, another leaves it, one is removed.
        let moved = try await c.setAttributes(key: "k99", "{\"category\":\"c1\"}")
        let left = try await c.setAttributes(key: "k97", "{\"category\":\"c2\"}")
        let removed = try await c.remove(key: "k100")
        XCTAssertTrue(moved && left && removed)
        XCTAssertEqual(try keys(), ["new", "k99", "k103"])
        XCTAssertEqual(try filtered(), ["new", "k99", "k103"])
        // A new vector for a member keeps it a member, at its new place.
        try await c.upsert(key: "k103", vector: [100.1, 0, 0, 0])
        XCTAssertEqual(try keys(), ["k103", "new", "k99"])
        XCTAssertEqual(try filtered(), ["k103", "new", "k99"])
    }

    func testPredictionOnSeparatedClusters() async throws {
        let engine = try Engine(directory: temporaryDirectory(self))
        defer { engine.close() }
        let c = try engine.createCollection(.init(name: "p", dimension: 8, metric: .l2, index: "Flat"))
        var rng = SeededRandom(seed: 3)
        let names = ["boots", "hats", "bags"]
        for (ci, name) in names.enumerated() {
            for i in 0..<40 {
                var v = (0..<8).map { _ in 0.05 * rng.gaussian() }
                v[ci] += 10
                try await c.upsert(key: "\(name)\(i)", vector: v, attributes: .set("{\"category\":\"\(name)\"}"))
            }
        }
        for (ci, name) in names.enumerated() {
            var q = [Float](repeating: 0, count: 8)
            q[ci] = 9.5
            let p = try XCTUnwrap(c.predict(.vector(q)))
            XCTAssertEqual(p.category, name)
            XCTAssertGreaterThan(p.confidence, 0.9)
            XCTAssertEqual(try c.predict(.key("\(name)7"))?.category, name)
        }
    }
}
