// Durability: close and reopen; SIGKILL in the middle of a stream of writes and seals, then
// reopen: every acknowledged write is there, nothing half-written, no leftover files.
import Foundation
import LookalikeEngine
import LookalikeTestSupport
import XCTest

final class DurabilityTests: XCTestCase {
    func testCloseAndReopenKeepsEverything() async throws {
        let dir = temporaryDirectory(self)
        var options = EngineOptions()
        options.sealThreshold = 300
        var data: [(key: String, vector: [Float])] = []
        do {
            let engine = try Engine(directory: dir, options: options)
            let c = try engine.createCollection(.init(name: "p", dimension: 16, metric: .l2, index: "HNSW16"))
            let vectors = clusteredVectors(count: 1000, dimension: 16, clusters: 10, seed: 3)
            data = vectors.enumerated().map { ("p\($0.offset)", $0.element) }
            _ = await c.write(batch: data.map { .upsert(key: $0.key, vector: $0.vector, attributes: .set(#"{"category":"x"}"#)) })
            for i in 0..<50 { try await c.remove(key: "p\(i)") }
            engine.waitForSealing()
            engine.close()
        }
        let engine = try Engine(directory: dir, options: options)
        defer { engine.close() }
        let c = try XCTUnwrap(engine.collection("p"))
        XCTAssertEqual(try c.itemCount(), 950)
        XCTAssertEqual(c.segmentSummary().sealed, 3, "sealed segments load from files, not rebuilt")
        XCTAssertEqual(c.segmentSummary().mutableCount, 100, "only what came after the last seal is replayed")
        XCTAssertEqual(try c.count(attribute: "category", value: "x"), 950)
        let live = Array(data.dropFirst(50))
        for q in stride(from: 0, to: 1000, by: 97) {
            let hits = try c.search(.init(query: .vector(data[q].vector), k: 10))
            XCTAssertFalse(hits.contains { Int($0.key.dropFirst())! < 50 }, "a deleted item came back")
            XCTAssertGreaterThanOrEqual(recall(hits.map(\.key), bruteForce(data[q].vector, live, k: 10, metric: .l2)), 0.9)
        }
        // New ids continue after the old ones: an update after reopen replaces, never collides.
        try await c.upsert(key: "p999", vector: data[0].vector)
        XCTAssertEqual(try c.search(.init(query: .vector(data[0].vector), k: 1)).first?.key, "p999")
    }

    func testPersistSealsEverythingSoRestartReplaysNothing() async throws {
        let dir = temporaryDirectory(self)
        do {
            let engine = try Engine(directory: dir)
            let c = try engine.createCollection(.init(name: "s", dimension: 8, metric: .cosine, index: "HNSW16"))
            for i in 0..<30 { try await c.upsert(key: "s\(i)", vector: writerVector(index: i, version: 0, dimension: 8)) }
            try engine.persist()
            XCTAssertEqual(c.segmentSummary().mutableCount, 0)
            engine.close()
        }
        let engine = try Engine(directory: dir)
        defer { engine.close() }
        let c = try XCTUnwrap(engine.collection("s"))
        XCTAssertEqual(c.segmentSummary().mutableCount, 0)
        XCTAssertEqual(c.segmentSummary().sealedItems, 30)
        XCTAssertEqual(try c.search(.init(query: .key("s3"), k: 29)).count, 29)
    }

    func testDamagedSegmentFileIsRebuiltFromLMDB() async throws {
        let dir = temporaryDirectory(self)
        var options = EngineOptions()
        options.sealThreshold = 100
        let vectors = clusteredVectors(count: 250, dimension: 8, clusters: 5, seed: 11)
        do {
            let engine = try Engine(directory: dir, options: options)
            let c = try engine.createCollection(.init(name: "d", dimension: 8, metric: .l2, index: "HNSW16"))
            for i in 0..<250 { try await c.upsert(key: "d\(i)", vector: vectors[i]) }
            engine.waitForSealing()
            engine.close()
        }
        // Truncate the first segment's index file.
        let segments = dir + "/segments/c1"
        let faiss = try FileManager.default.contentsOfDirectory(atPath: segments).filter { $0.hasSuffix(".faiss") }.sorted()
        XCTAssertEqual(faiss.count, 2)
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: "\(segments)/\(faiss[0])"))
        let engine = try Engine(directory: dir, options: options)
        defer { engine.close() }
        let c = try XCTUnwrap(engine.collection("d"))
        XCTAssertEqual(try c.itemCount(), 250)
        for i in [0, 120, 249] {
            XCTAssertEqual(try c.search(.init(query: .vector(vectors[i]), k: 1)).first?.key, "d\(i)")
        }
    }

    /// Kills a writer with SIGKILL three times at different moments, reopening in between.
    func testKillNineLosesNoAcknowledgedWrite() throws { try killNine(busy: false) }

    /// The same while segments merge all the time and writers wait for the indexer.
    func testKillNineDuringMergesAndBackpressureLosesNoAcknowledgedWrite() throws { try killNine(busy: true) }

    private func killNine(busy: Bool) throws {
        let dir = temporaryDirectory(self)
        let writer = builtExecutable("lookalike-test-writer")
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: writer.path), "build lookalike-test-writer first")
        var acked: [Int: Int] = [:]     // item -> highest acknowledged version
        var deleted = Set<Int>()
        var first = 0
        for round in 0..<3 {
            let process = Process()
            process.executableURL = writer
            process.arguments = [dir, String(first)] + (busy ? ["busy"] : [])
            let pipe = Pipe()
            process.standardOutput = pipe
            try process.run()
            // Let it write (and seal) for a while: a different time each round.
            var buffer = Data()
            let deadline = Date().addingTimeInterval(1.0 + Double(round) * 0.7)
            while Date() < deadline {
                let chunk = pipe.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                buffer.append(chunk)
            }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            buffer.append(pipe.fileHandleForReading.readDataToEndOfFile())
            var highest = first
            for line in String(decoding: buffer, as: UTF8.self).split(separator: "\n") {
                let parts = line.split(separator: " ")
                if parts.count == 3, parts[0] == "ADD", let i = Int(parts[1]), let v = Int(parts[2]) {
                    acked[i] = max(acked[i] ?? 0, v)
                    highest = max(highest, i)
                } else if parts.count == 2, parts[0] == "DEL", let i = Int(parts[1]) {
                    deleted.insert(i)
                }
            }
            XCTAssertGreaterThan(acked.count, 100, "the writer acknowledged too little to test")
            print("round \(round): \(acked.count) items and \(deleted.count) deletes acknowledged so far")
            try verify(dir: dir, acked: acked, deleted: deleted)
            first = highest + 10
        }
    }

    private func verify(dir: String, acked: [Int: Int], deleted: Set<Int>) throws {
        let engine = try Engine(directory: dir)
        defer { engine.close() }
        let c = try XCTUnwrap(engine.collection("crash"))
        for (i, version) in acked {
            guard let stored = try c.vector(key: "k\(i)") else { XCTFail("acknowledged k\(i) lost"); continue }
            // A later, unacknowledged write may have landed too; never an older or a torn one.
            let ok = (version...1).contains { stored == writerVector(index: i, version: $0, dimension: 16) }
            XCTAssertTrue(ok, "k\(i) holds a vector that was never written")
            XCTAssertEqual(try c.item(key: "k\(i)")?.attributes, "{\"category\":\"c\(i % 7)\"}")
        }
        for d in deleted { XCTAssertFalse(try c.contains(key: "d\(d)"), "deleted d\(d) came back") }
        // Every live item is searchable and found where it is; none appears twice.
        let keys = acked.keys.sorted()
        let sample = stride(from: 0, to: keys.count, by: max(1, keys.count / 150)).map { keys[$0] }
        for i in sample {
            let v = try XCTUnwrap(c.vector(key: "k\(i)"))
            let hits = try c.search(.init(query: .vector(v), k: 5, efSearch: 200))
            // Writer vectors repeat every 97 items, so check the distance, not the key. L2 through
            // |x|² − 2x·q + |q|² in float32 leaves ~1e-3 after the square root.
            XCTAssertEqual(hits.first?.score ?? 1, 0, accuracy: 1e-2, "k\(i) not found by its own vector")
            XCTAssertEqual(Set(hits.map(\.key)).count, hits.count)
        }
        // No leftover temporary segment files (once the seals and merges the replay started are
        // done: theirs are in flight meanwhile).
        engine.waitForMerging()
        let files = (try? FileManager.default.contentsOfDirectory(atPath: dir + "/segments/c1")) ?? []
        XCTAssertFalse(files.contains { $0.hasSuffix(".tmp") }, "leftover: \(files)")
    }
}

extension DurabilityTests {
    /// A full database (LMDB's map size reached: what a full disk looks like to LMDB) fails the
    /// writes that do not fit with an error that says what to do; everything acknowledged
    /// before stays, and the folder reopens.
    func testFullDatabaseFailsWritesAndKeepsEverythingElse() async throws {
        let dir = temporaryDirectory(self)
        var options = EngineOptions()
        options.storage.mapSize = 2 << 20
        var acknowledged: [String] = []
        do {
            let engine = try Engine(directory: dir, options: options)
            let c = try engine.createCollection(.init(name: "full", dimension: 256, metric: .l2, index: "Flat"))
            var failure: EngineError?
            for i in 0..<5000 {
                do {
                    try await c.upsert(key: "k\(i)", vector: writerVector(index: i, version: 0, dimension: 256))
                    acknowledged.append("k\(i)")
                } catch let e as EngineError {
                    failure = e
                    break
                }
            }
            guard case .storage(let message)? = failure else { return XCTFail("expected a storage error, got \(String(describing: failure))") }
            XCTAssertTrue(message.contains("--map-size") || message.contains("disk is full"), message)
            XCTAssertGreaterThan(acknowledged.count, 100)
            XCTAssertEqual(try c.itemCount(), acknowledged.count, "the failed write changed nothing")
            // Reads keep working.
            XCTAssertEqual(try c.search(.init(query: .vector(writerVector(index: 3, version: 0, dimension: 256)), k: 1)).first?.key, "k3")
            engine.close()
        }
        let engine = try Engine(directory: dir, options: options)
        defer { engine.close() }
        let c = try XCTUnwrap(engine.collection("full"))
        XCTAssertEqual(try c.itemCount(), acknowledged.count)
        for key in acknowledged.suffix(5) { XCTAssertTrue(try c.contains(key: key)) }
    }
}
