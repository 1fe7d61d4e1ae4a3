// Items: upsert, update, attributes, delete, reads, "more like this", drop; and the presets.
import Foundation
@testable import LookalikeEngine
import LookalikeTestSupport
import XCTest

final class CollectionTests: XCTestCase {
    var engine: Engine!

    override func setUpWithError() throws {
        var options = EngineOptions()
        options.sealThreshold = 50
        engine = try Engine(directory: temporaryDirectory(self), options: options)
    }

    override func tearDown() { engine.close() }

    func makeCollection(_ spec: String = "HNSW16", metric: Metric = .cosine) throws -> Collection {
        try engine.createCollection(.init(name: "shoes", dimension: 8, metric: metric, index: spec))
    }

    func vector(_ i: Int) -> [Float] { writerVector(index: i, version: 0, dimension: 8) }

    func testUpsertUpdateAndRemove() async throws {
        let c = try makeCollection()
        let r1 = try await c.upsert(key: "a", vector: vector(1), attributes: .set(#"{"category":"boots"}"#))
        XCTAssertEqual(r1, .added)
        let r2 = try await c.upsert(key: "a", vector: vector(2))
        XCTAssertEqual(r2, .updated)
        let same = try await c.upsert(key: "a", vector: vector(2))
        XCTAssertEqual(same, .unchanged, "the same vector and attributes again change nothing")
        XCTAssertEqual(try c.itemCount(), 1)
        XCTAssertEqual(try c.vector(key: "a"), vector(2))
        // A new vector without SETATTR keeps the attributes.
        XCTAssertEqual(try c.item(key: "a")?.attributes, #"{"category":"boots"}"#)
        // The replaced vector is gone from search: the nearest to vector(1) is now "a" at vector(2).
        let hits = try c.search(.init(query: .vector(vector(2)), k: 5))
        XCTAssertEqual(hits.map(\.key), ["a"])
        XCTAssertEqual(hits[0].score, 1, accuracy: 1e-5)
        try await c.upsert(key: "b", vector: vector(3))
        let r3 = try await c.remove(key: "a")
        XCTAssertTrue(r3)
        let r4 = try await c.remove(key: "a")
        XCTAssertFalse(r4)
        XCTAssertEqual(try c.itemCount(), 1)
        XCTAssertFalse(try c.contains(key: "a"))
        XCTAssertEqual(try c.search(.init(query: .vector(vector(2)), k: 5)).map(\.key), ["b"])
        // As in Redis, the collection goes with its last element.
        let r5 = try await c.remove(key: "b")
        XCTAssertTrue(r5)
        XCTAssertNil(engine.collection("shoes"))
        XCTAssertTrue(c.isDropped)
    }

    func testAttributesAndTheirIndex() async throws {
        let c = try makeCollection()
        try await c.upsert(key: "a", vector: vector(1), attributes: .set(#"{"category":"boots","author":"ann"}"#))
        try await c.upsert(key: "b", vector: vector(2), attributes: .set(#"{"category":"boots"}"#))
        XCTAssertEqual(try c.count(attribute: "category", value: "boots"), 2)
        let r5 = try await c.setAttributes(key: "b", #"{"category":"sandals"}"#)
        XCTAssertTrue(r5)
        XCTAssertEqual(try c.count(attribute: "category", value: "boots"), 1)
        XCTAssertEqual(try c.count(attribute: "category", value: "sandals"), 1)
        let r6 = try await c.setAttributes(key: "missing", #"{}"#)
        XCTAssertFalse(r6)
        let r7 = try await c.setAttributes(key: "a", nil)
        XCTAssertTrue(r7)
        XCTAssertNil(try c.item(key: "a")?.attributes)
        XCTAssertEqual(try c.count(attribute: "category", value: "boots"), 0)
        XCTAssertEqual(try c.count(attribute: "author", value: "ann"), 0)
        // Replacing the vector keeps the index right.
        try await c.upsert(key: "b", vector: vector(3))
        XCTAssertEqual(try c.count(attribute: "category", value: "sandals"), 1)
        try await c.remove(key: "b")
        XCTAssertEqual(try c.count(attribute: "category", value: "sandals"), 0)
    }

    func testMoreLikeThisLeavesTheItemOut() async throws {
        let c = try makeCollection("Flat", metric: .l2)
        for i in 0..<20 { try await c.upsert(key: "k\(i)", vector: vector(i)) }
        let hits = try c.search(.init(query: .key("k3"), k: 5, withAttributes: true))
        XCTAssertEqual(hits.count, 5)
        XCTAssertFalse(hits.contains { $0.key == "k3" })
        let direct = try c.search(.init(query: .vector(vector(3)), k: 6)).map(\.key).filter { $0 != "k3" }
        XCTAssertEqual(hits.map(\.key), direct)
        XCTAssertThrowsError(try c.search(.init(query: .key("nope"), k: 5)))
    }

    func testManyUpdatesAcrossSealsNeverReturnStaleItems() async throws {
        let c = try makeCollection("HNSW16", metric: .l2)
        // 300 writes of 40 keys across several seals (threshold 50): each key ends at its last version.
        var requests: [WriteRequest] = []
        for round in 0..<3 {
            for i in 0..<100 {
                requests.append(.upsert(key: "k\(i % 40)", vector: writerVector(index: i, version: round, dimension: 8), attributes: .keep))
            }
        }
        let results = await c.write(batch: requests)
        XCTAssertTrue(results.allSatisfy { (try? $0.get()) != nil })
        engine.waitForSealing()
        XCTAssertEqual(try c.itemCount(), 40)
        XCTAssertGreaterThan(c.segmentSummary().sealed, 1)
        for q in 0..<40 {
            let hits = try c.search(.init(query: .vector(vector(q)), k: 40))
            XCTAssertEqual(Set(hits.map(\.key)).count, hits.count, "a key appears twice")
            XCTAssertEqual(hits.count, 40)
        }
        let sample = try c.randomKeys(10)
        XCTAssertEqual(Set(sample).count, 10)
        XCTAssertEqual(try c.randomKeys(100).count, 40)
        XCTAssertEqual(try c.randomKeys(60, allowRepeats: true).count, 60)
    }

    func testDropCollectionForgetsEverything() async throws {
        let c = try makeCollection()
        for i in 0..<120 { try await c.upsert(key: "k\(i)", vector: vector(i)) }
        let r8 = try await engine.dropCollection("shoes")
        XCTAssertTrue(r8)
        // No meta key of the collection is left (MetaLayout.perCollection lists them all).
        let left = try engine.environment.read { try engine.meta.entries(prefix: "", $0).map(\.0) }
        XCTAssertEqual(Set(left).subtracting([MetaLayout.collectionCounter, MetaLayout.replication]), [])
        let r9 = try await engine.dropCollection("shoes")
        XCTAssertFalse(r9)
        XCTAssertNil(engine.collection("shoes"))
        await assertThrowsAsync(.unknownCollection("shoes")) { try await c.upsert(key: "x", vector: self.vector(1)) }
        let again = try makeCollection()
        XCTAssertEqual(try again.itemCount(), 0)
        XCTAssertThrowsError(try makeCollection()) { XCTAssertEqual($0 as? EngineError, .collectionExists("shoes")) }
    }

    func testShippedPresetsLoadAndCreate() throws {
        let indexes = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Indexes")
        let files = try FileManager.default.contentsOfDirectory(atPath: indexes.path).filter { $0.hasSuffix(".json") }
        XCTAssertGreaterThanOrEqual(files.count, 3)
        for f in files {
            let d = try CollectionDefinition.load(path: indexes.appendingPathComponent(f).path)
            XCTAssertNoThrow(try engine.createCollection(d), f)
        }
        let stickers = try CollectionDefinition.load(path: indexes.appendingPathComponent("stickers.json").path)
        XCTAssertEqual(stickers.dimension, 1024)
        XCTAssertEqual(stickers.metric, .l2)
        XCTAssertEqual(stickers.attributes, ["author"])
    }
}
