// The engine side of Redis 8.4's vector-set queries: the shim's HNSW links (VLINKS) as FAISS
// holds them, an element's links with views as items, name ranges (VRANGE) in stored byte
// order, and REDUCE's projection: Redis's matrix, computed here in Double, kept across reopen.
import Foundation
import LookalikeEngine
import LookalikeIndex
import LookalikeTestSupport
import XCTest

final class VectorSetQueriesTests: XCTestCase {
    func testShimLinksAreTheGraphsAndSurviveAFile() throws {
        let data = clusteredVectors(count: 400, dimension: 8, clusters: 6, seed: 21)
        let index = try FaissIndex(spec: "HNSW4", dimension: 8, metric: .l2)
        try index.add(data.flatMap { $0 }, count: data.count)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("links-\(UUID()).faiss").path
        defer { unlink(path) }
        try index.write(to: path)
        let reread = try FaissIndex.read(path: path, mmap: false)
        var levels: [Int: Int] = [:]
        for p in 0..<data.count {
            let links = try index.hnswLinks(position: p)
            XCTAssertEqual(try reread.hnswLinks(position: p), links, "position \(p)")
            XCTAssertFalse(links.isEmpty)
            XCTAssertLessThanOrEqual(links[0].count, 8, "level 0 holds 2M links")
            for (l, level) in links.enumerated() {
                if l > 0 { XCTAssertLessThanOrEqual(level.count, 4, "upper levels hold M") }
                XCTAssertTrue(level.allSatisfy { $0 >= 0 && $0 < Int64(data.count) && $0 != Int64(p) })
            }
            levels[links.count, default: 0] += 1
        }
        XCTAssertGreaterThan(levels.keys.max()!, 2, "M 4 puts nodes on several levels")
        // A link on level l joins two nodes that are both on level l.
        for p in 0..<data.count {
            let links = try index.hnswLinks(position: p)
            for (l, level) in links.enumerated() where l > 0 {
                for q in level { XCTAssertGreaterThan(try index.hnswLinks(position: Int(q)).count, l) }
            }
        }
        XCTAssertThrowsError(try index.hnswLinks(position: data.count))
        let flat = try FaissIndex(spec: "Flat", dimension: 8, metric: .l2)
        try flat.add(data.flatMap { $0 }, count: data.count)
        XCTAssertThrowsError(try flat.hnswLinks(position: 0)) { XCTAssertTrue("\($0)".contains("not an HNSW index")) }
    }

    func testLinksListItemsNotViewsAndNeverTheElement() async throws {
        let engine = try Engine(directory: temporaryDirectory(self))
        defer { engine.close() }
        let c = try engine.createCollection(CollectionDefinition(name: "v", dimension: 8, index: "HNSW4"))
        let data = clusteredVectors(count: 240, dimension: 8, clusters: 4, seed: 5)
        var writes: [WriteRequest] = (0..<120).map { .upsert(key: "i\($0)", vector: data[$0], attributes: .keep) }
        // Each item's view lies right beside it: its nearest node, linked in the graph.
        writes += (0..<120).map { .upsert(key: Views.member(item: "i\($0)", view: "b"), vector: data[$0].map { $0 + 0.001 }, attributes: .keep) }
        for r in await c.write(batch: Array(writes[..<120])) { _ = try r.get() }
        for r in await c.write(batch: Array(writes[120...])) { _ = try r.get() }
        // New items are linked into the live graph before any seal: their links show at once.
        engine.waitForIndexing()
        XCTAssertFalse(try XCTUnwrap(c.links(key: "i1")).isEmpty)
        try engine.persist()
        XCTAssertNil(try c.links(key: "ghost"))
        for i in 0..<120 {
            let levels = try XCTUnwrap(try c.links(key: "i\(i)"))
            for level in levels {
                let names = level.map(\.key)
                XCTAssertEqual(Set(names).count, names.count, "each item once per level")
                XCTAssertFalse(names.contains("i\(i)"))
                XCTAssertTrue(names.allSatisfy { Views.split($0).view == nil })
                XCTAssertTrue(level.allSatisfy { $0.score >= -1 && $0.score <= 1.0001 })
            }
            // The view's own node: its item is not its neighbour either.
            let viewLevels = try XCTUnwrap(try c.links(key: Views.member(item: "i\(i)", view: "b")))
            XCTAssertFalse(viewLevels.joined().contains { $0.key == "i\(i)" })
        }
    }

    func testNamesInStoredByteOrder() async throws {
        let engine = try Engine(directory: temporaryDirectory(self))
        defer { engine.close() }
        let c = try engine.createCollection(CollectionDefinition(name: "n", dimension: 2, metric: .l2, index: "Flat"))
        let invalid = Names.string([0xFF])  // not UTF-8: stored escaped (Names.swift)
        for (i, key) in ["b", "a", "ab", "\u{e9}", invalid, "z"].enumerated() {
            try await c.upsert(key: key, vector: [Float(i), 1])
        }
        try await c.upsert(key: Views.member(item: "a", view: "x"), vector: [9, 9])
        XCTAssertEqual(try c.names(from: .unbounded, to: .unbounded, limit: nil), ["a", "ab", "b", "z", "\u{e9}", invalid],
                       "a byte that is not UTF-8 sorts as stored, after the valid names (Docs/protocol.md)")
        XCTAssertEqual(try c.names(from: .exclusive("a"), to: .inclusive("b"), limit: nil), ["ab", "b"])
        XCTAssertEqual(try c.names(from: .inclusive("a"), to: .exclusive("b"), limit: 1), ["a"])
        XCTAssertEqual(try c.names(from: .unbounded, to: .unbounded, limit: 0), [])
        XCTAssertEqual(try c.names(from: .inclusive("zz"), to: .inclusive("\u{e9}"), limit: nil), ["\u{e9}"])
    }

    /// Redis's matrix (vset.c), in Double: sign by the parity of the bits of i & j, 1/sqrt(n).
    func redisProjection(_ v: [Float], to d: Int) -> [Double] {
        let scale = 1 / Double(v.count).squareRoot()
        return (0..<d).map { i in
            v.indices.reduce(0.0) { $0 + ((i & $1).nonzeroBitCount % 2 == 0 ? scale : -scale) * Double(v[$1]) }
        }
    }

    func testProjectionIsRedisAndKeptAcrossReopen() async throws {
        let dir = temporaryDirectory(self)
        let data = clusteredVectors(count: 50, dimension: 48, clusters: 3, seed: 2)
        var engine = try Engine(directory: dir)
        var c = try engine.createCollection(CollectionDefinition(name: "r", dimension: 12, projectionInputDimension: 48))
        for (i, v) in data.enumerated() { try await c.upsert(key: "k\(i)", vector: v) }
        XCTAssertEqual(c.projectionInputDimension, 48)
        for i in [0, 31] {
            let stored = try XCTUnwrap(try c.vector(key: "k\(i)"))
            for (a, b) in zip(stored, redisProjection(data[i], to: 12)) { XCTAssertEqual(Double(a), b, accuracy: 1e-5) }
        }
        XCTAssertEqual(try c.search(SearchRequest(query: .vector(data[7]), k: 1)).first?.key, "k7")
        XCTAssertThrowsError(try c.search(SearchRequest(query: .vector([1, 2, 3]), k: 1))) {
            XCTAssertTrue("\($0)".contains("takes 48-dimensional vectors (projected to 12)"))
        }
        let before = try c.vector(key: "k3")
        engine.close()
        engine = try Engine(directory: dir)
        defer { engine.close() }
        c = try XCTUnwrap(engine.collection("r"))
        XCTAssertEqual(c.projectionInputDimension, 48)
        XCTAssertEqual(try c.vector(key: "k3"), before)
        try await c.upsert(key: "again", vector: data[3])
        XCTAssertEqual(try c.vector(key: "again"), before, "the same matrix after reopen")
        for bad in [CollectionDefinition(name: "x", dimension: 12, projectionInputDimension: 12),
                    CollectionDefinition(name: "x", dimension: 4096, projectionInputDimension: 8192)] {
            XCTAssertThrowsError(try engine.createCollection(bad))
        }
        XCTAssertNil(engine.collection("x"))
    }
}
