// Fresh data: new items are linked into a live HNSW graph within moments and searched through
// it; a full graph is sealed as it is; sealed segments merge by a tiered policy; writers are
// held back, never refused, when the indexer falls behind. Recall against brute force holds
// across all of it, with deletes and updates in between.
import Foundation
import LookalikeEngine
import LookalikeFormats
import LookalikeIndex
import LookalikeTestSupport
import XCTest

final class FreshDataTests: XCTestCase {
    let d = 24

    func engine(_ configure: (inout EngineOptions) -> Void = { _ in }) throws -> (Engine, String) {
        var options = EngineOptions()
        configure(&options)
        let dir = temporaryDirectory(self)
        let engine = try Engine(directory: dir, options: options)
        addTeardownBlock { engine.close() }
        return (engine, dir)
    }

    /// Mean recall@10 of approximate searches against brute force over `live`.
    func meanRecall(_ c: Collection, _ live: [String: [Float]], queries: [[Float]]) throws -> Double {
        let data = live.map { (key: $0.key, vector: $0.value) }
        var total = 0.0
        for q in queries {
            let hits = try c.search(SearchRequest(query: .vector(q), k: 10, efSearch: 128))
            XCTAssertEqual(Set(hits.map(\.key)).count, hits.count, "an item came back twice")
            for h in hits { XCTAssertNotNil(live[h.key], "\(h.key) was removed or never written") }
            total += recall(hits.map(\.key), bruteForce(q, data, k: 10, metric: .cosine))
        }
        return total / Double(queries.count)
    }

    func testNewItemsAreSearchedThroughTheGraphBeforeAnySeal() async throws {
        let (engine, _) = try engine()
        let c = try engine.createCollection(.init(name: "g", dimension: d, metric: .cosine, index: "HNSW16"))
        let vectors = clusteredVectors(count: 3000, dimension: d, clusters: 40, seed: 1)
        var live: [String: [Float]] = [:]
        let results = await c.write(batch: vectors.enumerated().map { i, v in
            live["k\(i)"] = v
            return .upsert(key: "k\(i)", vector: v, attributes: .keep)
        })
        XCTAssertTrue(results.allSatisfy { (try? $0.get()) == .added })
        let queries = clusteredVectors(count: 20, dimension: d, clusters: 40, seed: 2)
        // At once: whatever is not linked yet is scanned exactly, so nothing is missed.
        XCTAssertGreaterThanOrEqual(try meanRecall(c, live, queries: queries), 0.95)
        engine.waitForIndexing()
        XCTAssertEqual(c.unindexed.items, 0)
        XCTAssertEqual(c.segmentSummary().sealed, 0, "no seal was needed to index them")
        XCTAssertEqual(c.segmentSummary().mutableCount, 3000)
        XCTAssertGreaterThanOrEqual(try meanRecall(c, live, queries: queries), 0.95)
        XCTAssertGreaterThanOrEqual(engine.indexingStatistics().linked, 3000)
        // Each item finds itself through the graph.
        for i in stride(from: 0, to: 3000, by: 97) {
            let hit = try c.search(SearchRequest(query: .vector(vectors[i]), k: 1, efSearch: 64)).first
            XCTAssertEqual(hit?.key, "k\(i)")
        }
    }

    /// Once an IVF collection's quantizer is trained (its first seal), new items go straight
    /// into the trained lists (IVFSegment): with every list probed, the answers equal brute
    /// force before the next seal, after it (the segment written as it is), and after a restart.
    func testIVFCollectionsAddNewItemsToTheTrainedLists() async throws {
        let (engine, dir) = try engine()
        let c = try engine.createCollection(.init(name: "iv", dimension: d, metric: .cosine, index: "IVF16,Flat",
                                                  sealThreshold: 1000))
        let vectors = clusteredVectors(count: 1600, dimension: d, clusters: 30, seed: 21)
        var live: [String: [Float]] = [:]
        func write(_ range: Range<Int>) async {
            _ = await c.write(batch: range.map { i in
                live["k\(i)"] = vectors[i]
                return .upsert(key: "k\(i)", vector: vectors[i], attributes: .keep)
            })
        }
        await write(0..<1000)  // fills the first segment: sealed by training the quantizer
        engine.waitForSealing()
        XCTAssertEqual(c.segmentSummary().sealed, 1)
        let linkedBefore = engine.indexingStatistics().linked
        await write(1000..<1600)
        for i in stride(from: 1000, to: 1600, by: 50) {
            _ = await c.write(batch: [.remove(key: "k\(i)")])
            live["k\(i)"] = nil
        }
        engine.waitForIndexing()
        XCTAssertEqual(engine.indexingStatistics().linked - linkedBefore, 600, "the new items went into the lists")
        XCTAssertEqual(c.unindexed.items, 0)
        XCTAssertEqual(c.segmentSummary().mutableCount, 600)
        let data = live.map { (key: $0.key, vector: $0.value) }
        let queries = clusteredVectors(count: 15, dimension: d, clusters: 30, seed: 22)
        func checkExact(_ c: Collection, _ label: String) throws {
            for q in queries {
                let hits = try c.search(SearchRequest(query: .vector(q), k: 10, nprobe: 16))
                XCTAssertEqual(hits.map(\.key), bruteForce(q, data, k: 10, metric: .cosine), label)
            }
        }
        try checkExact(c, "live IVF lists")
        try engine.persist()
        XCTAssertEqual(c.segmentSummary().sealed, 2)
        XCTAssertEqual(c.segmentSummary().mutableCount, 0)
        try checkExact(c, "after the seal")
        engine.close()
        let reopened = try Engine(directory: dir)
        defer { reopened.close() }
        try checkExact(try XCTUnwrap(reopened.collection("iv")), "after a restart")
    }

    /// SAVE freezes the mutable segment from its own thread while the commit thread appends:
    /// every acknowledged item must stay findable (an item appended to a segment already
    /// frozen and sealed would vanish from searches until a restart).
    func testItemsWrittenDuringSavesStayFindable() async throws {
        let (engine, _) = try engine()
        let c = try engine.createCollection(.init(name: "s", dimension: 8, metric: .l2, index: "HNSW16"))
        let vectors = clusteredVectors(count: 3000, dimension: 8, clusters: 3000, seed: 31)
        let saver = Task.detached {
            for _ in 0..<40 { try? engine.persist() }
        }
        for start in stride(from: 0, to: 3000, by: 25) {
            _ = await c.write(batch: (start..<(start + 25)).map { .upsert(key: "k\($0)", vector: vectors[$0], attributes: .keep) })
        }
        await saver.value
        for (i, v) in vectors.enumerated() {
            let hit = try c.search(SearchRequest(query: .vector(v), k: 1, exact: true)).first
            XCTAssertEqual(hit?.key, "k\(i)", "an acknowledged item is missing from the segments")
            if hit?.key != "k\(i)" { break }
        }
    }

    func testAGraphIsSealedAsItIsAndReopensWithoutReplay() async throws {
        let (engine, dir) = try engine()
        let c = try engine.createCollection(.init(name: "g", dimension: d, metric: .cosine, index: "HNSW16"))
        let vectors = clusteredVectors(count: 2000, dimension: d, clusters: 30, seed: 3)
        _ = await c.write(batch: vectors.enumerated().map { .upsert(key: "k\($0)", vector: $1, attributes: .keep) })
        try engine.persist()
        XCTAssertEqual(c.segmentSummary().sealed, 1)
        XCTAssertEqual(c.segmentSummary().mutableCount, 0)
        let query = clusteredVectors(count: 1, dimension: d, clusters: 30, seed: 4)[0]
        let before = try c.search(SearchRequest(query: .vector(query), k: 10))
        engine.close()
        let reopened = try Engine(directory: dir)
        defer { reopened.close() }
        let again = try XCTUnwrap(reopened.collection("g"))
        XCTAssertEqual(again.segmentSummary().mutableCount, 0, "nothing replayed")
        XCTAssertEqual(try again.search(SearchRequest(query: .vector(query), k: 10)).map(\.key), before.map(\.key))
    }

    /// Small seals merge pairwise (merge factor 2) while items are deleted and replaced: recall
    /// holds, removed items never come back, and the segment count stays logarithmic.
    func testMergesKeepRecallDeletesAndUpdates() async throws {
        let (engine, dir) = try engine { o in
            o.sealThreshold = 400
            o.mergeFactor = 2
        }
        let c = try engine.createCollection(.init(name: "m", dimension: d, metric: .cosine, index: "HNSW16"))
        let vectors = clusteredVectors(count: 6000, dimension: d, clusters: 50, seed: 5)
        var live: [String: [Float]] = [:]
        var rng = SeededRandom(seed: 6)
        for start in stride(from: 0, to: 6000, by: 500) {
            var batch: [WriteRequest] = []
            for i in start..<start + 500 {
                batch.append(.upsert(key: "k\(i)", vector: vectors[i], attributes: .keep))
                live["k\(i)"] = vectors[i]
            }
            // Remove some earlier items and move others to a new vector.
            for _ in 0..<60 {
                let j = Int(rng.next() % UInt64(start + 500))
                if rng.next() % 2 == 0 {
                    batch.append(.remove(key: "k\(j)"))
                    live["k\(j)"] = nil
                } else {
                    let v = vectors[(j * 7 + 13) % 6000]
                    batch.append(.upsert(key: "k\(j)", vector: v, attributes: .keep))
                    live["k\(j)"] = v
                }
            }
            _ = await c.write(batch: batch)
        }
        engine.waitForMerging()
        let summary = c.segmentSummary()
        // 6000 items in 400-item seals: 15 seals; merged pairwise by tier, a few remain.
        XCTAssertLessThanOrEqual(summary.sealed, 6, "segments did not merge: \(summary)")
        let queries = clusteredVectors(count: 20, dimension: d, clusters: 50, seed: 7)
        XCTAssertGreaterThanOrEqual(try meanRecall(c, live, queries: queries), 0.95)
        XCTAssertEqual(try c.itemCount(), live.count)
        // After a restart, the merged segments and their tombstones come back the same.
        engine.close()
        let reopened = try Engine(directory: dir)
        defer { reopened.close() }
        let again = try XCTUnwrap(reopened.collection("m"))
        XCTAssertGreaterThanOrEqual(try meanRecall(again, live, queries: queries), 0.95)
    }

    /// A long stream of small seals (a SAVE every 150 items): merges keep the segment count
    /// logarithmic, and every item stays findable.
    func testSegmentCountStaysBoundedUnderAStreamOfSeals() async throws {
        let (engine, _) = try engine { o in o.mergeFactor = 3 }
        let c = try engine.createCollection(.init(name: "t", dimension: d, metric: .cosine, index: "HNSW16"))
        let vectors = clusteredVectors(count: 6000, dimension: d, clusters: 40, seed: 10)
        var most = 0
        for start in stride(from: 0, to: 6000, by: 150) {
            _ = await c.write(batch: (start..<start + 150).map { .upsert(key: "k\($0)", vector: vectors[$0], attributes: .keep) })
            try engine.persist()
            // Each round's merges are waited for, so the bound below is the policy's, not a race
            // between niced merges and the stream (how fast merges keep up is a benchmark's).
            engine.waitForMerging()
            most = max(most, c.segmentSummary().sealed)
        }
        // 40 seals; tiers of 1,000·3^t items: at most 2 per tier below 6,000 items (150-item seals
        // sit below the first tier's bound and merge in threes too).
        XCTAssertLessThanOrEqual(c.segmentSummary().sealed, 6, "\(c.segmentSummary())")
        XCTAssertLessThanOrEqual(most, 8, "the merge policy let segments pile up")
        for i in stride(from: 0, to: 6000, by: 113) {
            let hits = try c.search(SearchRequest(query: .vector(vectors[i]), k: 10, efSearch: 128))
            XCTAssertTrue(hits.contains { $0.key == "k\(i)" }, "k\(i) not found by its own vector")
        }
    }

    /// A backlog bound of a few items: the commit thread waits for the indexer again and again,
    /// every write is still acknowledged, and every one is there.
    func testBackpressureDelaysWritesAndLosesNone() async throws {
        let (engine, _) = try engine { o in o.maxUnindexedBytes = 16 * 24 * 4 }
        let c = try engine.createCollection(.init(name: "b", dimension: d, metric: .cosine, index: "HNSW16"))
        let vectors = clusteredVectors(count: 4000, dimension: d, clusters: 30, seed: 8)
        var results: [Result<WriteOutcome, EngineError>] = []
        for start in stride(from: 0, to: 4000, by: 200) {
            results += await c.write(batch: (start..<start + 200).map { .upsert(key: "k\($0)", vector: vectors[$0], attributes: .keep) })
        }
        XCTAssertTrue(results.allSatisfy { (try? $0.get()) == .added })
        XCTAssertGreaterThan(engine.indexingStatistics().throttledBatches, 0, "the writer was never held back")
        XCTAssertEqual(try c.itemCount(), 4000)
        for i in stride(from: 0, to: 4000, by: 37) { XCTAssertEqual(try c.vector(key: "k\(i)"), vectors[i]) }
    }

    /// While writers wait in backpressure, writes have not paused: the niced indexer links, and
    /// the drainer (normal priority, competing with searches) takes over only once the last
    /// write committed, for what was left then (at most the bound plus that last batch).
    func testDrainerWaitsWhileWritersAreHeldBack() async throws {
        let d = 384, bound = 64, batch = 2000
        let (engine, _) = try engine { o in o.maxUnindexedBytes = bound * d * 4 }
        let c = try engine.createCollection(.init(name: "b", dimension: d, metric: .cosine, index: "HNSW16"))
        let vectors = clusteredVectors(count: 6000, dimension: d, clusters: 30, seed: 8)
        for start in stride(from: 0, to: 6000, by: batch) {
            let results = await c.write(batch: (start..<start + batch).map { .upsert(key: "k\($0)", vector: vectors[$0], attributes: .keep) })
            XCTAssertTrue(results.allSatisfy { (try? $0.get()) == .added })
        }
        engine.waitForIndexing()
        let s = engine.indexingStatistics()
        XCTAssertGreaterThan(s.throttledBatches, 0, "the writer was never held back")
        XCTAssertLessThanOrEqual(s.drained, bound + batch, "the drainer linked while writes were queued")
        XCTAssertEqual(s.caughtUp, 0, "no search ran, so every item was linked at full efConstruction")
    }

    /// Writers held back while searches run: the indexer links with the catch-up beam, and the
    /// graph still finds what brute force finds. With the beam off, nothing is linked with it.
    func testIndexerCatchesUpWithACheaperBeamWhileSearchesRun() async throws {
        for catchUp in [48, 0] {
            let d = 64, bound = 32
            let (engine, _) = try engine { o in
                o.maxUnindexedBytes = bound * d * 4
                o.catchUpEfConstruction = catchUp
            }
            let c = try engine.createCollection(.init(name: "c", dimension: d, metric: .cosine, index: "HNSW16"))
            let vectors = clusteredVectors(count: 2000, dimension: d, clusters: 30, seed: 21)
            let stop = ManagedAtomicFlag()
            let searcher = Thread.detachNewThreadWithResult {
                var n = 0
                while !stop.isSet {
                    _ = try? c.search(SearchRequest(query: .vector(vectors[n % 2000]), k: 10))
                    n += 1
                }
                return n
            }
            var live: [String: [Float]] = [:]
            for start in stride(from: 0, to: 2000, by: 500) {
                let results = await c.write(batch: (start..<start + 500).map { i in
                    live["k\(i)"] = vectors[i]
                    return .upsert(key: "k\(i)", vector: vectors[i], attributes: .keep)
                })
                XCTAssertTrue(results.allSatisfy { (try? $0.get()) == .added })
            }
            engine.waitForIndexing()
            stop.set()
            XCTAssertGreaterThan(searcher.wait(), 0)
            let s = engine.indexingStatistics()
            XCTAssertGreaterThan(s.throttledBatches, 0, "the writer was never held back")
            if catchUp > 0 {
                XCTAssertGreaterThan(s.caughtUp, 0, "writers waited while searches ran, but no item was linked with the catch-up beam")
            } else {
                XCTAssertEqual(s.caughtUp, 0)
            }
            let queries = clusteredVectors(count: 30, dimension: d, clusters: 30, seed: 22)
            XCTAssertGreaterThanOrEqual(try meanRecall(c, live, queries: queries), 0.95)
        }
    }

    /// Searches run while items stream in, are linked, sealed and merged: no search returns an
    /// item whose removal was acknowledged before it began, or one item twice; afterwards each
    /// acknowledged item is found.
    func testSearchesDuringLinkingSealsAndMerges() async throws {
        let (engine, _) = try engine { o in
            o.sealThreshold = 500
            o.mergeFactor = 2
        }
        let c = try engine.createCollection(.init(name: "s", dimension: d, metric: .cosine, index: "HNSW16"))
        let vectors = clusteredVectors(count: 5000, dimension: d, clusters: 40, seed: 9)
        let stop = ManagedAtomicFlag()
        let removed = LockedSet()
        let removedPrefix = "gone"
        let searchers = (0..<2).map { t in
            Thread.detachNewThreadWithResult {
                var failures: [String] = []
                var n = 0
                while !stop.isSet {
                    let q = vectors[(n * 31 + t) % vectors.count]
                    n += 1
                    do {
                        let gone = removed.snapshot
                        let hits = try c.search(SearchRequest(query: .vector(q), k: 10))
                        for h in hits where gone.contains(h.key) { failures.append("removed \(h.key) came back") }
                        if Set(hits.map(\.key)).count != hits.count { failures.append("an item came back twice") }
                    } catch {
                        failures.append("\(error)")
                    }
                }
                return failures
            }
        }
        for start in stride(from: 0, to: 5000, by: 250) {
            var batch: [WriteRequest] = (start..<start + 250).map { .upsert(key: "k\($0)", vector: vectors[$0], attributes: .keep) }
            // An item that is added and removed again in the next batch.
            batch.append(.upsert(key: "\(removedPrefix)\(start)", vector: vectors[start], attributes: .keep))
            _ = await c.write(batch: batch)
            _ = await c.write(batch: [.remove(key: "\(removedPrefix)\(start)")])
            removed.insert("\(removedPrefix)\(start)")
        }
        engine.waitForMerging()
        stop.set()
        let failures = searchers.flatMap { $0.wait() }
        XCTAssertEqual(failures.prefix(5), [])
        engine.waitForIndexing()
        for i in stride(from: 0, to: 5000, by: 41) {
            let hits = try c.search(SearchRequest(query: .vector(vectors[i]), k: 10, efSearch: 128))
            XCTAssertTrue(hits.contains { $0.key == "k\(i)" }, "k\(i) not found by its own vector")
        }
    }
}

/// Keys one thread adds and others read.
final class LockedSet: @unchecked Sendable {
    private let lock = NSLock()
    private var keys = Set<String>()
    var snapshot: Set<String> { lock.withLock { keys } }
    func insert(_ key: String) { lock.withLock { _ = keys.insert(key) } }
}

/// A flag one thread sets and others poll.
final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}

extension Thread {
    /// Runs `body` on a new thread; `wait()` on the result returns its value.
    static func detachNewThreadWithResult<T: Sendable>(_ body: @escaping @Sendable () -> T) -> ThreadResult<T> {
        let result = ThreadResult<T>()
        Thread.detachNewThread { result.finish(body()) }
        return result
    }
}

final class ThreadResult<T: Sendable>: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var value: T?
    func finish(_ v: T) { value = v; done.signal() }
    func wait() -> T { done.wait(); return value! }
}
