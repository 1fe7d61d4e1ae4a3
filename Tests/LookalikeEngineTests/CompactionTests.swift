// Compaction: after deletes and updates, one segment holds exactly the live items, search
// matches brute force over them, tombstones are forgotten, files shrink, and deletes made
// while it builds are honoured; IVF retrains; a restart sees the compacted state.
import Foundation
import LookalikeEngine
import Synchronization
import LookalikeTestSupport
import XCTest

final class CompactionTests: XCTestCase {
    func load(_ index: String, dir: String) async throws -> (Engine, Collection, [String: [Float]]) {
        var options = EngineOptions()
        options.sealThreshold = 500
        let engine = try Engine(directory: dir, options: options)
        let c = try engine.createCollectionIfMissing(.init(name: "c", dimension: 8, metric: .l2, index: index))
        let vectors = clusteredVectors(count: 2000, dimension: 8, clusters: 16, seed: 12)
        var live: [String: [Float]] = [:]
        _ = await c.write(batch: vectors.enumerated().map { .upsert(key: "k\($0)", vector: $1, attributes: .keep) })
        for (i, v) in vectors.enumerated() { live["k\(i)"] = v }
        engine.waitForSealing()
        for i in stride(from: 0, to: 2000, by: 5) {  // 400 removed
            _ = try await c.remove(key: "k\(i)")
            live["k\(i)"] = nil
        }
        for i in stride(from: 1, to: 2000, by: 10) {  // 200 replaced
            let v = vectors[(i * 7) % 2000].map { $0 + 0.01 }
            try await c.upsert(key: "k\(i)", vector: v)
            live["k\(i)"] = v
        }
        try engine.persist()
        return (engine, c, live)
    }

    func checkSearch(_ c: Collection, _ live: [String: [Float]], line: UInt = #line) throws {
        let data = live.map { (key: $0.key, vector: $0.value) }
        for q in clusteredVectors(count: 5, dimension: 8, clusters: 16, seed: 99) {
            let hits = try c.search(SearchRequest(query: .vector(q), k: 10, exact: true))
            XCTAssertEqual(hits.map(\.key), bruteForce(q, data, k: 10, metric: .l2), line: line)
            let approximate = try c.search(SearchRequest(query: .vector(q), k: 10))
            XCTAssertTrue(approximate.allSatisfy { live[$0.key] != nil }, line: line)
        }
        XCTAssertEqual(try c.itemCount(), live.count, line: line)
    }

    func testCompactionDropsDeadItemsAndMergesSegments() async throws {
        let dir = temporaryDirectory(self)
        var (engine, c, live) = try await load("HNSW16", dir: dir)
        XCTAssertGreaterThan(c.segmentSummary().sealed, 3)
        let report = try engine.compact(c)
        XCTAssertEqual(report.itemsKept, live.count)
        XCTAssertEqual(report.itemsDropped, 600)
        XCTAssertEqual(report.segmentsAfter, 1)
        XCTAssertLessThan(report.bytesAfter, report.bytesBefore)
        XCTAssertFalse(report.retrained)
        // Its progress stays readable: every kept item counted, nothing running, no estimate.
        let progress = c.compactionProgress
        XCTAssertFalse(progress.isRunning)
        XCTAssertEqual([progress.doneCount, progress.totalCount], [live.count, live.count])
        XCTAssertNil(progress.stage)
        XCTAssertNil(progress.elapsedSeconds)
        XCTAssertNil(progress.etaSeconds)
        XCTAssertEqual(c.lastCompaction.withLock { $0 }, report)
        try checkSearch(c, live)
        // A second compaction finds nothing to do.
        XCTAssertEqual(try engine.compact(c).segmentsAfter, 1)
        engine.close()
        engine = try Engine(directory: dir)
        defer { engine.close() }
        c = try XCTUnwrap(engine.collection("c"))
        XCTAssertEqual(c.segmentSummary().sealed, 1)
        try checkSearch(c, live)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/segments/c1")
        XCTAssertEqual(files.filter { $0.hasSuffix(".faiss") }.count, 1, "old segment files are gone: \(files)")
    }

    func testIVFRetrainsAndDeletesDuringCompactionAreKept() async throws {
        let dir = temporaryDirectory(self)
        var (engine, c, live) = try await load("IVF16,Flat", dir: dir)
        // Deletes and writes race with the compaction; every one acknowledged must hold after.
        let (collection, running) = (c, engine)
        let writer = Task {
            var removed: [String] = []
            for i in stride(from: 2, to: 2000, by: 5) where i % 10 != 1 {
                if (try? await collection.remove(key: "k\(i)")) == true { removed.append("k\(i)") }
            }
            return removed
        }
        // On a thread of its own: a blocking call would hold one of the cooperative pool's threads.
        let report: CompactionReport = try await withCheckedThrowingContinuation { done in
            Thread { done.resume(with: Result { try running.compact(collection, retrain: true) }) }.start()
        }
        XCTAssertTrue(report.retrained)
        for key in await writer.value { live[key] = nil }
        try checkSearch(c, live)
        engine.close()
        engine = try Engine(directory: dir)
        defer { engine.close() }
        c = try XCTUnwrap(engine.collection("c"))
        try checkSearch(c, live)
    }
}
