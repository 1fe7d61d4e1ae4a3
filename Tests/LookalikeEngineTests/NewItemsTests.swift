// The new-items batch job (issue 7): each new item's neighbours against brute force computed
// here, over several passes, cosine and L2; "since" as an id, a time and the last run; the
// kept results and their lookup after deletes and a reopen; the JSON lines file.
import Foundation
import LookalikeEngine
import LookalikeTestSupport
import XCTest

final class NewItemsTests: XCTestCase {
    let dimension = 16

    func makeEngine(_ directory: String, passBytes: Int = 1 << 30) throws -> Engine {
        var options = EngineOptions()
        options.sealThreshold = 1_000  // sealed segments and a mutable one
        options.batchJobMemory = passBytes
        return try Engine(directory: directory, options: options)
    }

    typealias Item = (key: String, vector: [Float])

    func add(_ c: Collection, _ items: [Item]) async throws {
        let results = await c.write(batch: items.map { .upsert(key: $0.key, vector: $0.vector, attributes: .keep) })
        for r in results { _ = try r.get() }
    }

    /// New and old items come from the same clusters, as a shop's daily arrivals do: `seed`
    /// picks a different stretch of one pool.
    lazy var pool = clusteredVectors(count: 4_000, dimension: dimension, clusters: 12, seed: 7)

    func items(_ prefix: String, count: Int, seed: Int) -> [Item] {
        (0..<count).map { (key: "\(prefix)\($0)", vector: pool[(seed * 997 + $0) % pool.count]) }
    }

    func testNeighboursMatchBruteForceOverSeveralPasses() async throws {
        for (metric, includeNew) in [(Metric.cosine, false), (.l2, false), (.cosine, true)] {
            let dir = temporaryDirectory(self)
            // 150 new items per pass: four passes over the existing items for 500 new ones.
            let engine = try makeEngine(dir, passBytes: 150 * dimension * 4)
            let c = try engine.createCollection(.init(name: "c", dimension: dimension, metric: metric, index: "HNSW16"))
            var existing = items("old", count: 2_500, seed: 0)
            try await add(c, existing)
            // Deleted items are not neighbours.
            for key in ["old3", "old700", "old1999"] { try await c.remove(key: key) }
            existing.removeAll { ["old3", "old700", "old1999"].contains($0.key) }
            let firstNew = c.idHighWaterMark
            let fresh = items("new", count: 500, seed: 3)
            try await add(c, fresh)
            engine.waitForSealing()

            let output = dir + "/day.jsonl"
            let report = try c.runNewItemsJob(NewItemsRequest(since: .id(firstNew), count: 10, includeNew: includeNew, outputPath: output))
            XCTAssertEqual(report.newItems, 500)
            XCTAssertEqual(report.existingItems, existing.count)
            XCTAssertEqual(report.passes, 4)
            XCTAssertEqual(c.newItemsProgress.fraction, 1)

            var found = 0
            for item in fresh {
                let candidates = includeNew ? existing + fresh.filter { $0.key != item.key } : existing
                let truth = bruteForce(item.vector, candidates, k: 10, metric: metric)
                let kept = try XCTUnwrap(try c.neighbors(key: item.key), "\(item.key) was listed")
                XCTAssertEqual(kept.count, 10)
                XCTAssertFalse(kept.contains { $0.key == item.key }, "an item is not its own neighbour")
                if !includeNew { XCTAssertTrue(kept.allSatisfy { $0.key.hasPrefix("old") }) }
                found += Set(kept.map(\.key)).intersection(truth).count
            }
            // Exact: float32 BLAS against Double brute force can only swap near-ties.
            XCTAssertGreaterThanOrEqual(Double(found) / Double(fresh.count * 10), 0.999, "\(metric) includeNew=\(includeNew)")

            let lines = try String(contentsOfFile: output, encoding: .utf8).split(separator: "\n")
            XCTAssertEqual(lines.count, 500)
            let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
            XCTAssertEqual(first["key"] as? String, "new0")
            XCTAssertEqual(first["metric"] as? String, metric == .l2 ? "distance" : "similarity")
            XCTAssertEqual((first["neighbors"] as? [[String: Any]])?.count, 10)
            engine.close()
        }
    }

    func testSinceTimeAndSinceLastRun() async throws {
        let engine = try makeEngine(temporaryDirectory(self))
        defer { engine.close() }
        let c = try engine.createCollection(.init(name: "c", dimension: dimension, metric: .cosine, index: "HNSW16"))
        try await add(c, items("old", count: 300, seed: 1))
        // The clock has one-second steps: the next batch starts in a later second.
        let before = UInt64(Date().timeIntervalSince1970)
        while UInt64(Date().timeIntervalSince1970) == before { try await Task.sleep(nanoseconds: 20_000_000) }
        let since = UInt64(Date().timeIntervalSince1970)
        try await add(c, items("day1-", count: 40, seed: 2))

        let r1 = try c.runNewItemsJob(NewItemsRequest(since: .time(since)))
        XCTAssertEqual(r1.newItems, 40, "exactly the items added since that second")
        XCTAssertEqual(r1.existingItems, 300)
        XCTAssertNotNil(try c.neighbors(key: "day1-0"))
        XCTAssertNil(try c.neighbors(key: "old0"), "an old item was not listed")

        let none = try c.runNewItemsJob(NewItemsRequest(since: .lastRun))
        XCTAssertEqual(none.newItems, 0, "nothing added since the last run")
        try await add(c, items("day2-", count: 25, seed: 3))
        let r2 = try c.runNewItemsJob(NewItemsRequest(since: .lastRun))
        XCTAssertEqual(r2.newItems, 25)
        XCTAssertEqual(r2.existingItems, 340)
        XCTAssertEqual(r2.firstId, r1.throughId)
        XCTAssertEqual(try c.lastNewItemsReport()?.firstId, r2.firstId)
        let future = try c.runNewItemsJob(NewItemsRequest(since: .time(UInt64(Date().timeIntervalSince1970) + 3_600)))
        XCTAssertEqual(future.newItems, 0)
        // Since long ago: everything, from the very first id (the first batch's second counts).
        let all = try c.runNewItemsJob(NewItemsRequest(since: .time(0), includeNew: true))
        XCTAssertEqual(all.firstId, 0)
        XCTAssertEqual(all.newItems, 365)
    }

    func testKeptNeighboursFollowDeletesAndSurviveReopen() async throws {
        let dir = temporaryDirectory(self)
        var engine = try makeEngine(dir)
        var c = try engine.createCollection(.init(name: "c", dimension: dimension, metric: .cosine, index: "HNSW16"))
        try await add(c, items("old", count: 400, seed: 1))
        let firstNew = c.idHighWaterMark
        try await add(c, items("new", count: 10, seed: 2))
        _ = try c.runNewItemsJob(NewItemsRequest(since: .id(firstNew), count: 5))
        let before = try XCTUnwrap(try c.neighbors(key: "new0"))
        XCTAssertEqual(before.count, 5)
        try await c.remove(key: before[0].key)
        let after = try XCTUnwrap(try c.neighbors(key: "new0"))
        XCTAssertEqual(after.map(\.key), Array(before.dropFirst().map(\.key)), "a deleted neighbour is left out")
        try await c.remove(key: "new1")
        XCTAssertNil(try c.neighbors(key: "new1"), "a deleted item has no list")

        engine.close()
        engine = try makeEngine(dir)
        defer { engine.close() }
        c = try XCTUnwrap(engine.collection("c"))
        XCTAssertEqual(try c.neighbors(key: "new0")?.map(\.key), after.map(\.key), "kept across a reopen")
        XCTAssertEqual(try c.lastNewItemsReport()?.newItems, 10)
    }

    func testBadRequestsSayWhy() async throws {
        let dir = temporaryDirectory(self)
        let engine = try makeEngine(dir)
        defer { engine.close() }
        let c = try engine.createCollection(.init(name: "c", dimension: dimension, metric: .cosine, index: "HNSW16"))
        try await add(c, items("old", count: 20, seed: 1))
        assertThrows(.invalidArgument("no earlier new-items job for 'c': say where to start (SINCE ID n or SINCE TIME unix-seconds)")) {
            try c.runNewItemsJob(NewItemsRequest(since: .lastRun))
        }
        assertThrows(.invalidArgument("COUNT must be between 1 and 1000")) {
            try c.runNewItemsJob(NewItemsRequest(since: .id(0), count: 0))
        }
        assertThrows(.invalidArgument("cannot create the output file '\(dir)/missing/x.jsonl': check the folder exists and is writable")) {
            try c.runNewItemsJob(NewItemsRequest(since: .id(0), outputPath: dir + "/missing/x.jsonl"))
        }
        XCTAssertFalse(c.newItemsProgress.isRunning, "a refused job leaves nothing running")
        XCTAssertNil(try c.lastNewItemsReport())
    }
}
