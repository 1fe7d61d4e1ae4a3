// Category search never loses recall and returns k whenever k exist, for tiny and large
// categories, with categories that do and do not follow the vectors; prediction on separated data.
import LookalikeEngine
import XCTest

final class CategorySearchTests: XCTestCase {
    /// Sizes from 3 items to half the collection.
    let sizes = [3, 12, 60, 300, 1200, 2425]

    func load(correlated: Bool) async throws -> (Collection, [(key: String, vector: [Float])], [String: String]) {
        var options = EngineOptions()
        options.sealThreshold = 1500
        options.exactCategoryLimit = 100  // so both plans run: exact scan and widening ANN
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
            var total = 0.0
            for q in queries {
                let hits = try c.search(SearchRequest(query: .vector(q), k: 10), attribute: "category", value: name)
                XCTAssertEqual(hits.count, min(10, size), "\(name): k must come back when k exist")
                XCTAssertTrue(hits.allSatisfy { category[$0.key] == name }, "\(name): a hit outside the category")
                total += recall(hits.map(\.key), bruteForce(q, members, k: min(10, size), metric: .cosine))
            }
            let mean = total / Double(queries.count)
            XCTAssertGreaterThanOrEqual(mean, size <= 100 ? 1.0 : 0.95, "\(name) (\(size) items) recall \(mean)")
        }
        XCTAssertEqual(try c.search(SearchRequest(query: .vector(queries[0]), k: 10), attribute: "category", value: "none"), [])
        XCTAssertThrowsError(try c.search(SearchRequest(query: .vector(queries[0])), attribute: "colour", value: "red"))
    }

    func testCategoriesThatFollowTheVectors() async throws { try await check(correlated: true) }
    func testCategoriesScatteredOverTheVectors() async throws { try await check(correlated: false) }

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
