// FaultTests: a commit, a seal and a merge that fail half-way (Engine.faults, Faults.swift),
// and segment files damaged on disk between two runs. Each asserts the same five things: the
// failing operation says so clearly; no acknowledged write is lost; searches still return
// every acknowledged item (from the exact or the older segments); the next attempt succeeds;
// and a reopen afterwards gives the same contents. Real FAISS and LMDB, no mocks.
import Foundation
import LookalikeEngine
import LookalikeTestSupport
import XCTest

final class FaultTests: XCTestCase {
    private func items(_ count: Int, from start: Int = 0) -> [(key: String, vector: [Float])] {
        let vectors = clusteredVectors(count: start + count, dimension: 16, clusters: 10, seed: 21)
        return (start..<(start + count)).map { ("f\($0)", vectors[$0]) }
    }

    private func options(sealThreshold: Int = 100, mergeFactor: Int = 8) -> EngineOptions {
        var o = EngineOptions()
        o.sealThreshold = sealThreshold
        o.mergeFactor = mergeFactor
        return o
    }

    /// The engine of `dir` and its collection "f" (HNSW16 over 16-d L2), created or reopened.
    private func openCollection(_ dir: String, _ opts: EngineOptions? = nil, creating: Bool) throws -> (Engine, Collection) {
        let engine = try Engine(directory: dir, options: opts ?? options())
        if creating { return (engine, try engine.createCollection(.init(name: "f", dimension: 16, metric: .l2, index: "HNSW16"))) }
        return (engine, try XCTUnwrap(engine.collection("f"), "the collection reopens"))
    }

    private func load(_ c: Collection, _ data: [(key: String, vector: [Float])]) async throws {
        for (key, vector) in data { try await c.upsert(key: key, vector: vector) }
    }

    /// Every item is its own nearest (within the top 3: the graph is approximate) and nothing
    /// else is stored.
    private func assertServes(_ c: Collection, exactly data: [(key: String, vector: [Float])],
                              file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(try c.itemCount(), data.count, file: file, line: line)
        for (key, vector) in data {
            let hits = try c.search(.init(query: .vector(vector), k: 3)).map(\.key)
            XCTAssertTrue(hits.contains(key), "\(key) not found: \(hits)", file: file, line: line)
        }
    }

    /// The segment folder holds the files of the loaded segments and nothing else: a failure
    /// left no temporary or unnamed file eating disk space.
    private func assertNoLeftoverFiles(_ dir: String, _ c: Collection, file: StaticString = #filePath, line: UInt = #line) {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: dir + "/segments/c1")) ?? []
        XCTAssertFalse(files.contains { $0.hasSuffix(".tmp") }, "leftover: \(files)", file: file, line: line)
        let faiss = files.filter { $0.hasSuffix(".faiss") }
        XCTAssertEqual(faiss.count, c.segmentSummary().sealed, "segment files: \(files.sorted())", file: file, line: line)
    }

    /// After the faults: every item is served, SAVE seals all of them (no frozen segment
    /// left), no file is left over, and every item is still served.
    private func assertNextSaveSealsEverything(_ engine: Engine, _ c: Collection, _ dir: String,
                                               _ data: [(key: String, vector: [Float])],
                                               file: StaticString = #filePath, line: UInt = #line) throws {
        try assertServes(c, exactly: data, file: file, line: line)
        try engine.persist()
        XCTAssertEqual(c.indexState, "indexed", file: file, line: line)
        XCTAssertEqual(c.segmentSummary().frozen, 0, file: file, line: line)
        XCTAssertEqual(c.segmentSummary().sealedItems, data.count, file: file, line: line)
        assertNoLeftoverFiles(dir, c, file: file, line: line)
        try assertServes(c, exactly: data, file: file, line: line)
    }

    private func assertInjected(_ error: Error, at point: FaultPoint, file: StaticString = #filePath, line: UInt = #line) {
        guard case .storage(let message)? = error as? EngineError else {
            return XCTFail("expected a storage error, got \(error)", file: file, line: line)
        }
        XCTAssertTrue(message.contains("injected fault at \(point.rawValue)"), message, file: file, line: line)
    }

    // MARK: - Commit

    func testCommitThatFailsChangesNothingAndTheNextSucceeds() async throws {
        let dir = temporaryDirectory(self)
        let data = items(150)
        do {
            let (engine, c) = try openCollection(dir, creating: true)
            try await load(c, Array(data.prefix(120)))

            // A new item, an update and a removal whose transactions abort: each fails, none shows.
            engine.faults.arm(.commit, times: 3)
            do { try await c.upsert(key: "lost", vector: data[120].vector); XCTFail("the write was acknowledged") }
            catch { assertInjected(error, at: .commit) }
            do { try await c.upsert(key: "f0", vector: data[1].vector); XCTFail("the update was acknowledged") }
            catch { assertInjected(error, at: .commit) }
            do { _ = try await c.remove(key: "f1"); XCTFail("the removal was acknowledged") }
            catch { assertInjected(error, at: .commit) }
            XCTAssertNotNil(engine.writeFailure, "INFO and /healthz say writes fail")
            XCTAssertFalse(try c.contains(key: "lost"))
            XCTAssertEqual(try c.vector(key: "f0"), data[0].vector)
            XCTAssertTrue(try c.contains(key: "f1"))
            try assertServes(c, exactly: Array(data.prefix(120)))

            // A dropped collection whose drop did not commit is still there, whole.
            engine.faults.arm(.commit)
            do { _ = try await engine.dropCollection("f"); XCTFail("the drop was acknowledged") }
            catch { assertInjected(error, at: .commit) }
            XCTAssertTrue(engine.collection("f") === c)

            // A batch whose every transaction fails (and every retry, write by write).
            engine.faults.arm(.commit, times: 1_000)
            let rest = Array(data.suffix(30))
            let failed = await c.write(batch: rest.map { .upsert(key: $0.key, vector: $0.vector, attributes: .keep) })
            XCTAssertEqual(failed.count, 30)
            for r in failed {
                if case .failure(let e) = r { assertInjected(e, at: .commit) } else { XCTFail("acknowledged: \(r)") }
            }
            XCTAssertEqual(try c.itemCount(), 120)

            // The next attempt commits, with the ids the failed ones did not keep.
            engine.faults.disarmAll()
            let done = await c.write(batch: rest.map { .upsert(key: $0.key, vector: $0.vector, attributes: .keep) })
            XCTAssertEqual(done.compactMap { try? $0.get() }, Array(repeating: .added, count: 30))
            XCTAssertNil(engine.writeFailure)
            try assertServes(c, exactly: data)
            engine.waitForSealing()
            engine.close()
        }
        let (engine, c) = try openCollection(dir, creating: false)
        defer { engine.close() }
        try assertServes(c, exactly: data)
        XCTAssertFalse(try c.contains(key: "lost"))
        XCTAssertEqual(try c.vector(key: "f0"), data[0].vector)
    }

    // MARK: - Seal

    func testSealThatFailsHalfWayKeepsItemsExactAndSealsNextTime() async throws {
        let dir = temporaryDirectory(self)
        let data = items(150)
        do {
            let (engine, c) = try openCollection(dir, creating: true)
            engine.faults.arm(.segmentWrite)
            try await load(c, data)  // the first 100 fill a segment: its background seal fails
            engine.waitForSealing()
            XCTAssertEqual(engine.faults.remaining(.segmentWrite), 0, "the seal reached the fault")
            XCTAssertTrue(c.indexState.hasPrefix("seal failed 1 time(s)"), c.indexState)
            XCTAssertTrue(c.indexState.contains("injected fault at segmentWrite"), c.indexState)
            XCTAssertEqual(c.segmentSummary().sealed, 0)
            XCTAssertEqual(c.segmentSummary().frozen, 1, "the frozen segment stays, searchable")
            assertNoLeftoverFiles(dir, c)
            try assertServes(c, exactly: data)

            // SAVE retries at once and says when it fails again; the newer segment it freezes
            // waits for the older one (the manifest names segments in id order).
            engine.faults.arm(.segmentWrite)
            XCTAssertThrowsError(try engine.persist()) { error in
                guard case .sealFailed(let name, let reason)? = error as? EngineError else { return XCTFail("\(error)") }
                XCTAssertEqual(name, "f")
                XCTAssertTrue(reason.contains("injected fault at segmentWrite"), reason)
            }
            assertNoLeftoverFiles(dir, c)
            try assertServes(c, exactly: data)
            engine.close()
        }
        // A restart after the failures: every item is there (replayed from LMDB).
        do {
            let (engine, c) = try openCollection(dir, creating: false)
            try assertNextSaveSealsEverything(engine, c, dir, data)
            engine.close()
        }
        let (engine, c) = try openCollection(dir, creating: false)
        defer { engine.close() }
        XCTAssertEqual(c.segmentSummary().sealedItems, 150, "the seals load from files")
        XCTAssertEqual(c.segmentSummary().mutableCount, 0)
        try assertServes(c, exactly: data)
    }

    /// A seal that fails half-way through its files, or whose manifest commit aborts, in a
    /// running engine: its files go at once (they would hold the disk space until the next
    /// start), the items stay searchable, and the next SAVE seals everything, without a restart.
    func testSealThatFailsLeavesNoFilesAndTheNextSaveSeals() async throws {
        for point in [FaultPoint.segmentWrite, .manifestCommit] {
            let dir = temporaryDirectory(self)
            let data = items(150)
            let (engine, c) = try openCollection(dir, creating: true)
            defer { engine.close() }
            engine.faults.arm(point)
            try await load(c, data)
            engine.waitForSealing()
            XCTAssertEqual(engine.faults.remaining(point), 0, "the seal reached the fault")
            XCTAssertTrue(c.indexState.contains("injected fault at \(point.rawValue)"), c.indexState)
            XCTAssertEqual(c.segmentSummary().frozen, 1)
            assertNoLeftoverFiles(dir, c)
            try assertNextSaveSealsEverything(engine, c, dir, data)
            XCTAssertEqual(c.segmentSummary().sealed, 2)
        }
    }

    /// Killed (not failed) after a seal's failure: the frozen items replay from LMDB.
    func testReopenAfterAFailedSealReplaysItsItems() async throws {
        let dir = temporaryDirectory(self)
        let data = items(150)
        do {
            let (engine, c) = try openCollection(dir, creating: true)
            engine.faults.arm(.segmentWrite, times: 1_000)
            try await load(c, data)
            engine.waitForSealing()
            XCTAssertEqual(c.segmentSummary().sealed, 0)
            engine.close()
        }
        let (engine, c) = try openCollection(dir, creating: false)
        defer { engine.close() }
        try assertServes(c, exactly: data)
        engine.waitForSealing()
        XCTAssertEqual(c.segmentSummary().sealedItems, 100, "the replay seals a full segment again")
        assertNoLeftoverFiles(dir, c)
    }

    // MARK: - Merge

    func testMergeThatFailsBeforeTheManifestKeepsTheRunAndMergesNextTime() async throws {
        let dir = temporaryDirectory(self)
        let data = items(400)
        let opts = options(mergeFactor: 2)
        do {
            let (engine, c) = try openCollection(dir, opts, creating: true)
            engine.faults.arm(.mergePublish)
            try await load(c, Array(data[0..<200]))  // two seals: a run of two to merge
            engine.waitForSealing()
            engine.waitForMerging()
            XCTAssertEqual(engine.faults.remaining(.mergePublish), 0, "the merge reached the fault")
            XCTAssertEqual(c.segmentSummary().sealed, 2, "the run stays as it was")
            assertNoLeftoverFiles(dir, c)
            try assertServes(c, exactly: Array(data[0..<200]))

            // The next seal schedules merges again; they succeed.
            try await load(c, Array(data[200..<300]))
            engine.waitForSealing()
            engine.waitForMerging()
            XCTAssertEqual(c.segmentSummary().sealed, 1)
            XCTAssertEqual(c.segmentSummary().sealedItems, 300)
            assertNoLeftoverFiles(dir, c)
            try assertServes(c, exactly: Array(data[0..<300]))

            // Failing again, then a restart: the open retries the merge.
            engine.faults.arm(.mergePublish, times: 1_000)
            try await load(c, Array(data[300..<400]))
            engine.waitForSealing()
            engine.waitForMerging()
            XCTAssertEqual(c.segmentSummary().sealed, 2)
            assertNoLeftoverFiles(dir, c)
            engine.close()
        }
        do {
            let (engine, c) = try openCollection(dir, opts, creating: false)
            try assertServes(c, exactly: data)
            engine.waitForMerging()
            XCTAssertEqual(c.segmentSummary().sealed, 1, "the open merged the run")
            XCTAssertEqual(c.segmentSummary().sealedItems, 400)
            XCTAssertEqual(c.segmentSummary().mutableCount, 0, "nothing replayed: the run's files loaded")
            assertNoLeftoverFiles(dir, c)
            try assertServes(c, exactly: data)
            engine.close()
        }
        let (engine, c) = try openCollection(dir, opts, creating: false)
        defer { engine.close() }
        XCTAssertEqual(c.segmentSummary().sealed, 1)
        try assertServes(c, exactly: data)
    }

    // MARK: - Damaged files at open

    enum Damage: CaseIterable {
        case idsTruncated, idsFlippedByte, idsMissing, indexTruncated, indexHeaderZeroed, indexBodyGarbage, indexMissing,
             keysGarbage
    }

    /// Each kind of damage to the first of two segments: the folder opens, the damaged segment
    /// (and the later one) are replayed from LMDB, sealed again, and a second reopen is whole.
    func testDamagedSegmentFilesAtOpenAreRebuiltFromLMDB() async throws {
        for damage in Damage.allCases {
            let dir = temporaryDirectory(self)
            let data = items(250)
            do {
                let (engine, c) = try openCollection(dir, creating: true)
                try await load(c, data)
                try await c.remove(key: "f7")  // a tombstone in the damaged segment
                engine.waitForSealing()
                XCTAssertEqual(c.segmentSummary().sealed, 2)
                engine.close()
            }
            let live = data.filter { $0.key != "f7" }
            try Self.damage(dir + "/segments/c1/seg-000001", damage)
            do {
                let (engine, c) = try openCollection(dir, creating: false)
                try assertServes(c, exactly: live)
                XCTAssertFalse(try c.contains(key: "f7"), "\(damage)")
                try engine.persist()
                try assertServes(c, exactly: live)
                engine.close()
            }
            let (engine, c) = try openCollection(dir, creating: false)
            defer { engine.close() }
            XCTAssertEqual(c.segmentSummary().mutableCount, 0, "\(damage): sealed again, nothing to replay")
            try assertServes(c, exactly: live)
            assertNoLeftoverFiles(dir, c)
        }
    }

    /// Folders from before the .faiss checksum (ids files of format 1) open as they are: their
    /// segments load from their files, nothing is replayed.
    func testSegmentsWithoutAnIndexChecksumStillLoad() async throws {
        let dir = temporaryDirectory(self)
        let data = items(250)
        do {
            let (engine, c) = try openCollection(dir, creating: true)
            try await load(c, data)
            engine.waitForSealing()
            engine.close()
        }
        for name in ["seg-000001", "seg-000002"] { try Self.rewriteAsFormat1(dir + "/segments/c1/\(name).ids") }
        let (engine, c) = try openCollection(dir, creating: false)
        defer { engine.close() }
        XCTAssertEqual(c.segmentSummary().sealed, 2)
        XCTAssertEqual(c.segmentSummary().mutableCount, 50, "only what came after the last seal is replayed")
        try assertServes(c, exactly: data)
    }

    /// An ids file as format 1 wrote it: magic, count, ids, FNV-1a of the ids (no .faiss check).
    private static func rewriteAsFormat1(_ path: String) throws {
        let v2 = try Data(contentsOf: URL(fileURLWithPath: path))
        let words = v2.withUnsafeBytes { raw in
            (0..<(v2.count / 8)).map { UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self)) }
        }
        XCTAssertEqual(words[0], 0x4C4B_4944_5331_0002)
        let ids = Array(words[2..<(2 + Int(words[1]))])
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for v in ids { h = (h ^ v) &* 0x0000_0100_0000_01b3 }
        var v1 = Data()
        for w in [0x4C4B_4944_5331_0001, UInt64(ids.count)] + ids + [h] { withUnsafeBytes(of: w.littleEndian) { v1.append(contentsOf: $0) } }
        try v1.write(to: URL(fileURLWithPath: path))
    }

    private static func damage(_ base: String, _ damage: Damage) throws {
        func edit(_ path: String, _ change: (inout Data) -> Void) throws {
            var data = try Data(contentsOf: URL(fileURLWithPath: path))
            change(&data)
            try data.write(to: URL(fileURLWithPath: path))
        }
        let fm = FileManager.default
        switch damage {
        case .idsTruncated: try edit(base + ".ids") { $0 = $0.prefix($0.count - 12) }
        case .idsFlippedByte: try edit(base + ".ids") { $0[40] ^= 0x10 }
        case .idsMissing: try fm.removeItem(atPath: base + ".ids")
        case .indexTruncated: try edit(base + ".faiss") { $0 = $0.prefix($0.count / 2) }
        case .indexHeaderZeroed: try edit(base + ".faiss") { for i in 0..<16 { $0[i] = 0 } }
        case .indexBodyGarbage: try edit(base + ".faiss", breakNeighbourLists)
        case .indexMissing: try fm.removeItem(atPath: base + ".faiss")
        case .keysGarbage: try edit(base + ".keys") { for i in stride(from: 0, to: $0.count, by: 7) { $0[i] ^= 0x5A } }
        }
    }

    /// Points the middle of the graph's neighbour lists (the longest run of int32 values that
    /// are positions or -1: sizes and headers stay intact, so FAISS reads the file) at
    /// positions that do not exist: the damage a flipped disk block does to a graph.
    private static func breakNeighbourLists(_ data: inout Data) {
        let bytes = [UInt8](data)
        func int32(at i: Int) -> Int32 { Int32(bitPattern: UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24) }
        var best = (start: 0, length: 0)
        for phase in 0..<4 {
            var start = phase, length = 0
            for i in stride(from: phase, to: bytes.count - 3, by: 4) {
                let v = int32(at: i)
                if v >= -1 && v < 100 { length += 1 } else { start = i + 4; length = 0 }
                if length > best.length { best = (start, length) }
            }
        }
        precondition(best.length > 500, "no neighbour lists found")
        for k in stride(from: best.length / 4, to: best.length * 3 / 4, by: 3) {
            let i = best.start + 4 * k
            for (j, b) in [UInt8(0x40), 0x42, 0x0F, 0x00].enumerated() { data[data.startIndex + i + j] = b }
        }
    }
}
