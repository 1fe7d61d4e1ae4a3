// Writers and readers on several threads for a bounded time, with sealing under way: no crash,
// no result holding a key twice, no result holding an item whose removal was acknowledged
// before the search began, and afterwards every acknowledged item there with its last vector.
import Foundation
import LookalikeEngine
import LookalikeFormats
import LookalikeTestSupport
import XCTest

final class StressTests: XCTestCase {
    final class Ledger: @unchecked Sendable {
        let lock = NSLock()
        var latest: [String: Int] = [:]   // key -> last acknowledged version
        var removed = Set<String>()       // keys removed for good
        var violations: [String] = []
        func ack(_ key: String, _ version: Int) { lock.withLock { latest[key] = max(latest[key] ?? -1, version) } }
        func remove(_ key: String) { lock.withLock { _ = removed.insert(key) } }
        func violation(_ what: String) { lock.withLock { violations.append(what) } }
        var removedNow: Set<String> { lock.withLock { removed } }
    }

    final class StopFlag: @unchecked Sendable {
        private let lock = NSLock()
        private var value = false
        func set() { lock.withLock { value = true } }
        var isSet: Bool { lock.withLock { value } }
    }

    func testConcurrentWritesSearchesAndSeals() async throws {
        var options = EngineOptions()
        options.sealThreshold = 400  // many seals while readers run
        let engine = try Engine(directory: temporaryDirectory(self), options: options)
        defer { engine.close() }
        let c = try engine.createCollection(.init(name: "s", dimension: 24, metric: .l2, index: "HNSW16"))
        let ledger = Ledger()
        // Bounded by work as well as time: on a slow machine the writers still write enough
        // new ids (1,800 upserts each, new vectors every 500) for several seals, and readers
        // run until the writers are done.
        let deadline = Date().addingTimeInterval(4)
        let minimumWrites = 1_800
        let writersDone = StopFlag()

        await withTaskGroup(of: Void.self) { group in
            for w in 0..<2 {
                group.addTask {
                    var i = 0
                    while Date() < deadline || i < minimumWrites {
                        let key = "w\(w)-\(i % 500)"
                        let version = i / 500
                        if (try? await c.upsert(key: key, vector: stressVector(w * 1000 + i % 500, version))) != nil {
                            ledger.ack(key, version)
                        }
                        if i % 7 == 0 {
                            let gone = "gone-\(w)-\(i)"
                            _ = try? await c.upsert(key: gone, vector: stressVector(900_000 + i, 0))
                            if (try? await c.remove(key: gone)) == true { ledger.remove(gone) }
                        }
                        i += 1
                    }
                }
            }
            // Readers on threads of their own, as the server's search pool does: a synchronous
            // search loop in tasks would hold every thread of the cooperative pool.
            let readersDone = DispatchGroup()
            for r in 0..<2 {
                readersDone.enter()
                Thread {
                    var n = 0
                    while !writersDone.isSet {
                        let before = ledger.removedNow
                        let q = stressVector(r * 7 + n, 0)
                        n += 1
                        guard let hits = try? c.search(SearchRequest(query: .vector(q), k: 20)) else { continue }
                        if Set(hits.map(\.key)).count != hits.count {
                            ledger.violation("duplicate keys in \(hits.map(\.key))")
                        }
                        for h in hits where before.contains(h.key) {
                            ledger.violation("removed \(h.key) came back")
                        }
                    }
                    readersDone.leave()
                }.start()
            }
            await group.waitForAll()
            writersDone.set()
            readersDone.wait()
        }
        XCTAssertEqual(ledger.lock.withLock { ledger.violations }, [])
        engine.waitForSealing()
        XCTAssertGreaterThan(c.segmentSummary().sealed, 1, "seals happened during the run")
        let latest = ledger.lock.withLock { ledger.latest }
        XCTAssertGreaterThan(latest.count, 100)
        for (key, version) in latest {
            let parts = key.dropFirst().split(separator: "-").compactMap { Int($0) }
            let stored = try XCTUnwrap(c.vector(key: key), key)
            // A later, unacknowledged write may have landed: never an older one.
            let ok = (version...(version + 1)).contains { stored == stressVector(parts[0] * 1000 + parts[1], $0) }
            XCTAssertTrue(ok, "\(key) does not hold its last acknowledged vector")
        }
        for key in ledger.removedNow { XCTAssertFalse(try c.contains(key: key), key) }
        XCTAssertEqual(try c.itemCount(), latest.count, "no stray items")
    }
}

private func stressVector(_ i: Int, _ version: Int) -> [Float] {
    var rng = SeededRandom(seed: UInt64(i * 1000 + version))
    return (0..<24).map { _ in rng.gaussian() }
}
