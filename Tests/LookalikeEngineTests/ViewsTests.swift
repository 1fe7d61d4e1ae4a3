// Several images per item (issue 7): an item's views are searched with it, each item comes
// back once at its best score, k distinct items whenever k exist; attributes, deletes, counts
// and reopen treat item and views as one.
import Foundation
import LookalikeEngine
import LookalikeTestSupport
import XCTest

final class ViewsTests: XCTestCase {
    let dimension = 16
    let sides = ["front", "side", "back"]

    func makeEngine(_ dir: String) throws -> Engine {
        var options = EngineOptions()
        options.sealThreshold = 300  // sealed segments and a mutable one
        return try Engine(directory: dir, options: options)
    }

    /// 200 products: each its own vector, two views close to it (the front and side photos look
    /// alike, so an item crowds the nearest vectors) and one anywhere (the back).
    func load(_ c: Collection) async throws -> [String: [[Float]]] {
        let pool = clusteredVectors(count: 800, dimension: dimension, clusters: 25, seed: 11)
        // Differences of points around one centre: small offsets (0.05·√2 per coordinate).
        let jitter = clusteredVectors(count: 401, dimension: dimension, clusters: 1, spread: 0.05, seed: 12)
        let offset = { (i: Int) in zip(jitter[i], jitter[400]).map { $0 - $1 } }
        var vectors: [String: [[Float]]] = [:]
        var writes: [WriteRequest] = []
        for p in 0..<200 {
            let key = "p\(p)"
            let own = pool[p * 4]
            vectors[key] = [own, zip(own, offset(2 * p)).map(+), zip(own, offset(2 * p + 1)).map(+), pool[p * 4 + 3]]
            writes.append(.upsert(key: key, vector: pool[p * 4], attributes: .set("{\"category\":\"k\(p % 4)\"}")))
        }
        for r in await c.write(batch: writes) { _ = try r.get() }
        writes = []
        for p in 0..<200 {
            for (s, side) in sides.enumerated() {
                writes.append(.upsert(key: Views.member(item: "p\(p)", view: side), vector: vectors["p\(p)"]![1 + s], attributes: .keep))
            }
        }
        for r in await c.write(batch: writes) { _ = try r.get() }
        return vectors
    }

    /// The top-k items by their best vector, computed here.
    func truth(_ q: [Float], _ vectors: [String: [[Float]]], k: Int, where keep: (String) -> Bool = { _ in true }) -> [String] {
        let flat = vectors.filter { keep($0.key) }.flatMap { item in item.value.map { (key: item.key, vector: $0) } }
        var out: [String] = []
        for key in bruteForce(q, flat, k: flat.count, metric: .cosine) where !out.contains(key) {
            out.append(key)
            if out.count == k { break }
        }
        return out
    }

    func testEachItemOnceAtItsBestScoreAndKDistinct() async throws {
        let engine = try makeEngine(temporaryDirectory(self))
        defer { engine.close() }
        let c = try engine.createCollection(.init(name: "products", dimension: dimension, metric: .cosine, index: "HNSW16"))
        let vectors = try await load(c)
        engine.waitForSealing()
        XCTAssertEqual(try c.itemCount(), 200, "VCARD counts items, not views")
        XCTAssertEqual(try c.vectorCount(), 800)

        var found = 0
        for probe in [3, 77, 150] {
            // A query right at a product's back view finds that product first, once; the items
            // after it each fill three of the nearest vectors.
            let q = vectors["p\(probe)"]![3]
            for exact in [true, false] {
                let hits = try c.search(SearchRequest(query: .vector(q), k: 20, efSearch: 200, exact: exact))
                XCTAssertEqual(hits.count, 20, "k distinct items")
                XCTAssertEqual(Set(hits.map(\.key)).count, 20, "each item once")
                XCTAssertEqual(hits[0].key, "p\(probe)")
                XCTAssertEqual(hits[0].view, "back")
                XCTAssertEqual(hits[0].score, 1, accuracy: 1e-5, "its best vector's score")
                XCTAssertFalse(hits.contains { $0.key.contains(Views.separator) }, "views are reported as their item")
                let t = truth(q, vectors, k: 20)
                if exact { XCTAssertEqual(hits.map(\.key), t) } else { found += Set(hits.map(\.key)).intersection(t).count }
            }
            // "More like this" leaves out the item and all its views.
            let more = try c.search(SearchRequest(query: .key("p\(probe)"), k: 10))
            XCTAssertFalse(more.contains { $0.key == "p\(probe)" })
            // Filtered: views carry the item's category, so the planner finds them.
            let filtered = try c.search(SearchRequest(query: .vector(q), k: 10, exact: true).inCategory("k1"))
            XCTAssertEqual(filtered.map(\.key), truth(q, vectors, k: 10) { Int($0.dropFirst())! % 4 == 1 })
        }
        XCTAssertGreaterThanOrEqual(Double(found) / 60, 0.9)
    }

    func testAttributesDeletesAndReopenTreatItemAndViewsAsOne() async throws {
        let dir = temporaryDirectory(self)
        var engine = try makeEngine(dir)
        var c = try engine.createCollection(.init(name: "products", dimension: dimension, metric: .cosine, index: "HNSW16"))
        let vectors = try await load(c)
        let back = Views.member(item: "p5", view: "back")
        XCTAssertEqual(try c.item(key: back)?.attributes, "{\"category\":\"k1\"}", "a view copies its item's attributes")
        try await c.setAttributes(key: "p5", "{\"category\":\"moved\"}")
        XCTAssertEqual(try c.item(key: back)?.attributes, "{\"category\":\"moved\"}", "and follows them")
        let q = vectors["p5"]![3]
        let moved = try c.search(SearchRequest(query: .vector(q), k: 5).inCategory("moved"))
        XCTAssertEqual(moved.map(\.key), ["p5"])
        XCTAssertEqual(moved.first?.view, "back", "found through its view's vector")

        await assertThrowsAsync(.invalidArgument("attributes belong to the item: set them on 'p5', not on one of its views")) {
            try await c.setAttributes(key: back, "{\"category\":\"x\"}")
        }
        await assertThrowsAsync(.invalidArgument("no element named 'ghost': add the item itself before its views")) {
            try await c.upsert(key: Views.member(item: "ghost", view: "side"), vector: q)
        }
        XCTAssertEqual(try c.vectorCount(), 800, "refused writes change nothing")

        // Removing a view removes only it; removing the item removes its views.
        try await c.remove(key: back)
        let afterRemove = try c.search(SearchRequest(query: .vector(q), k: 200, exact: true))
        XCTAssertNotNil(afterRemove.first { $0.key == "p5" }, "the item stays")
        XCTAssertNotEqual(afterRemove.first { $0.key == "p5" }?.view, "back", "without the removed view")
        XCTAssertNil(try c.vector(key: back))
        XCTAssertEqual(try c.itemCount(), 200)
        try await c.remove(key: "p6")
        XCTAssertEqual(try c.itemCount(), 199)
        XCTAssertEqual(try c.vectorCount(), 800 - 1 - 4)
        let near6 = try c.search(SearchRequest(query: .vector(vectors["p6"]![2]), k: 10, exact: true))
        XCTAssertFalse(near6.contains { $0.key == "p6" }, "no view of a removed item is found")

        engine.close()
        engine = try makeEngine(dir)
        defer { engine.close() }
        c = try XCTUnwrap(engine.collection("products"))
        XCTAssertEqual(try c.itemCount(), 199)
        XCTAssertEqual(try c.vectorCount(), 795)
        let again = try c.search(SearchRequest(query: .vector(vectors["p9"]![2]), k: 3, exact: true))
        XCTAssertEqual(again.first?.key, "p9")
        XCTAssertEqual(again.first?.view, "side")
    }
}
