// Recall@10 against brute force for each index family and metric, with data spread over
// sealed segments and the mutable one, as in production.
import LookalikeEngine
import LookalikeTestSupport
import XCTest

final class RecallTests: XCTestCase {
    let dimension = 32
    let count = 6000

    func load(_ spec: String, _ metric: Metric, nprobe: Int? = nil, efSearch: Int? = nil) async throws
        -> (Engine, Collection, [(key: String, vector: [Float])])
    {
        var options = EngineOptions()
        options.sealThreshold = 2500
        let engine = try Engine(directory: temporaryDirectory(self), options: options)
        addTeardownBlock { engine.close() }
        let c = try engine.createCollection(CollectionDefinition(
            name: "items", dimension: dimension, metric: metric, index: spec, efSearch: efSearch, nprobe: nprobe))
        let vectors = clusteredVectors(count: count, dimension: dimension, clusters: 40, seed: 7)
        let data = vectors.enumerated().map { (key: "item-\($0.offset)", vector: $0.element) }
        let results = await c.write(batch: data.map {
            .upsert(key: $0.key, vector: $0.vector, attributes: .keep)
        })
        XCTAssertTrue(results.allSatisfy { (try? $0.get()) == .added })
        engine.waitForSealing()
        return (engine, c, data)
    }

    func meanRecall(_ c: Collection, _ data: [(key: String, vector: [Float])], metric: Metric,
                    exact: Bool = false) throws -> Double {
        let queries = clusteredVectors(count: 50, dimension: dimension, clusters: 40, seed: 7 + 1000)
        var total = 0.0
        for q in queries {
            let hits = try c.search(SearchRequest(query: .vector(q), k: 10, exact: exact))
            XCTAssertEqual(hits.count, 10)
            total += recall(hits.map(\.key), bruteForce(q, data, k: 10, metric: metric))
        }
        return total / Double(queries.count)
    }

    func testFlatIsExactForEveryMetric() async throws {
        for metric in Metric.allCases {
            let (_, c, data) = try await load("Flat", metric)
            XCTAssertGreaterThan(c.segmentSummary().sealed, 0, "data should span sealed segments")
            XCTAssertEqual(try meanRecall(c, data, metric: metric), 1.0, "\(metric)")
        }
    }

    /// Loads the set into `spec` for each metric; approximate recall must reach `atLeast`,
    /// exact search must be exact, and the data must span sealed segments.
    func assertRecall(_ spec: String, metrics: [Metric], atLeast: Double, sealedSegments: Int? = nil,
                      nprobe: Int? = nil, efSearch: Int? = nil) async throws {
        for metric in metrics {
            let (_, c, data) = try await load(spec, metric, nprobe: nprobe, efSearch: efSearch)
            if let sealedSegments {
                XCTAssertEqual(c.segmentSummary().sealed, sealedSegments, "\(spec) \(metric)")
            } else {
                XCTAssertGreaterThan(c.segmentSummary().sealed, 0, "\(spec) \(metric)")
            }
            XCTAssertGreaterThanOrEqual(try meanRecall(c, data, metric: metric), atLeast, "\(spec) \(metric)")
            XCTAssertEqual(try meanRecall(c, data, metric: metric, exact: true), 1.0, "\(spec) \(metric) exact")
        }
    }

    func testHNSWRecallCosineAndL2() async throws {
        // FAISS builds HNSW graphs with OpenMP threads, so graphs (and recall) vary from run
        // to run; efSearch 128 keeps this assertion away from the edge.
        try await assertRecall("HNSW32", metrics: [.cosine, .l2], atLeast: 0.95, sealedSegments: 2, efSearch: 128)
    }

    func testIVFRecallCosineAndL2() async throws {
        // IVF64 wants 39 × 64 = 2496 training vectors before its first seal.
        try await assertRecall("IVF64,Flat", metrics: [.cosine, .l2], atLeast: 0.9, nprobe: 16)
    }

    /// With no NPROBE from the query or the definition, an IVF search reads nlist/16 lists and
    /// at least 64 (Collection.defaultNprobe): at 64 lists every list, so it is exact; nlist/16
    /// alone (4) was not.
    func testDefaultNprobeReadsAtLeast64Lists() async throws {
        let (_, c, data) = try await load("IVF64,Flat", .l2)
        XCTAssertGreaterThan(c.segmentSummary().sealed, 0)
        XCTAssertEqual(try meanRecall(c, data, metric: .l2), 1.0, "the default reads all 64 lists")
        let queries = clusteredVectors(count: 50, dimension: dimension, clusters: 40, seed: 7 + 1000)
        for q in queries.prefix(10) {
            let byDefault = try c.search(SearchRequest(query: .vector(q), k: 10)).map(\.key)
            let at64 = try c.search(SearchRequest(query: .vector(q), k: 10, nprobe: 64)).map(\.key)
            XCTAssertEqual(byDefault, at64)
        }
    }

    func testCompressedIVFSQ8StillRanksWell() async throws {
        let (_, c, data) = try await load("IVF32,SQ8", .l2, nprobe: 32)
        XCTAssertGreaterThan(c.segmentSummary().sealed, 0)
        XCTAssertGreaterThanOrEqual(try meanRecall(c, data, metric: .l2), 0.85)
    }

    func testScoresFollowTheMetric() async throws {
        let engine = try Engine(directory: temporaryDirectory(self))
        defer { engine.close() }
        let cos = try engine.createCollection(.init(name: "cos", dimension: 2, metric: .cosine, index: "Flat"))
        let l2 = try engine.createCollection(.init(name: "l2", dimension: 2, metric: .l2, index: "Flat"))
        try await cos.upsert(key: "a", vector: [3, 0])
        try await cos.upsert(key: "b", vector: [0, 5])
        try await l2.upsert(key: "a", vector: [3, 0])
        try await l2.upsert(key: "b", vector: [0, 4])
        let c = try cos.search(.init(query: .vector([1, 0]), k: 2))
        XCTAssertEqual(c.map(\.key), ["a", "b"])
        XCTAssertEqual(c[0].score, 1, accuracy: 1e-6)   // cosine similarity
        XCTAssertEqual(c[1].score, 0, accuracy: 1e-6)
        let e = try l2.search(.init(query: .vector([0, 0]), k: 2))
        XCTAssertEqual(e.map(\.key), ["a", "b"])
        XCTAssertEqual(e[0].score, 3, accuracy: 1e-5)   // Euclidean distance
        XCTAssertEqual(e[1].score, 4, accuracy: 1e-5)
    }
}
