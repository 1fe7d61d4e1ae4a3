// The replication stream and snapshots at the engine level: entries round-trip byte for byte,
// a stream applied to an empty engine rebuilds the same items at the same offset, the backlog
// answers PSYNC's questions, and a snapshot taken under writes stands exactly at its offset.
import Foundation
import LookalikeEngine
import LookalikeTestSupport
import XCTest

final class ReplicationTests: XCTestCase {
    func testEntriesRoundTripByteForByte() throws {
        let odd = Names.string([0x66, 0xFF, 0x00, 0xC3])  // invalid UTF-8 carried losslessly
        let entries: [StreamEntry] = [
            .create(CollectionDefinition(name: odd, dimension: 3, metric: .l2, index: "Flat")),
            .write(collection: odd, .upsert(key: odd, vector: [1, -0.5, .leastNonzeroMagnitude], attributes: .keep)),
            .write(collection: "c", .upsert(key: "k", vector: [2], attributes: .set(#"{"a":"\r\n"}"#))),
            .write(collection: "c", .upsert(key: "k", vector: [2], attributes: .set(nil))),
            .write(collection: "c", .setAttributes(key: "k", attributes: nil)),
            .write(collection: "c", .setAttributes(key: "k", attributes: "{}")),
            .write(collection: "c", .remove(key: "k")),
            .write(collection: "c", .dropCollection),
        ]
        let stream = entries.flatMap { $0.encoded() }
        var at = 0
        var decoded: [StreamEntry] = []
        while at < stream.count {
            let (entry, length) = try XCTUnwrap(try StreamEntry.decode(stream[at...]))
            XCTAssertEqual(entry.encoded(), Array(stream[at..<(at + length)]))
            decoded.append(entry)
            at += length
        }
        XCTAssertEqual(decoded.count, entries.count)
        // A cut entry is incomplete, not an error; bytes that are no entry are.
        XCTAssertNil(try StreamEntry.decode(stream[0..<(entries[0].encoded().count - 1)]))
        XCTAssertThrowsError(try StreamEntry.decode(ArraySlice(Array("+OK\r\n".utf8))))
        XCTAssertThrowsError(try StreamEntry.decode(ArraySlice(StreamEntryTestBytes.unknownOperation)))
    }

    func testAStreamAppliedElsewhereRebuildsTheSameItemsAtTheSameOffset() async throws {
        let primary = try Engine(directory: temporaryDirectory(self), options: small())
        let replica = try Engine(directory: temporaryDirectory(self), options: small())
        defer { primary.close(); replica.close() }
        let c = try primary.createCollection(.init(name: "items", dimension: 4, metric: .l2, index: "Flat"))
        for i in 0..<300 {
            _ = try await c.upsert(key: "k\(i)", vector: [Float(i), 1, 2, 3], attributes: .set(#"{"i":\#(i)}"#))
        }
        for i in stride(from: 0, to: 300, by: 3) { _ = try await c.remove(key: "k\(i)") }
        _ = try await c.setAttributes(key: "k1", nil)
        _ = try await c.upsert(key: "k2", vector: [0, 0, 0, 1])
        _ = try await c.upsert(key: "k4", vector: [4, 1, 2, 3])  // unchanged: not in the stream
        let dropped = try primary.createCollection(.init(name: "gone", dimension: 2))
        _ = try await dropped.upsert(key: "x", vector: [1, 2])
        _ = try await primary.dropCollection("gone")

        let end = primary.replication.position.offset
        let bytes = try XCTUnwrap(primary.replication.bytes(from: 0, max: .max))
        XCTAssertEqual(UInt64(bytes.count), end)
        var entries: [(entry: StreamEntry, bytes: [UInt8])] = []
        var at = 0
        while let (e, n) = try StreamEntry.decode(bytes[at...]) {
            entries.append((e, Array(bytes[at..<(at + n)])))
            at += n
        }
        XCTAssertEqual(at, bytes.count)
        try replica.applyReplicated(entries)
        XCTAssertEqual(replica.replication.position.offset, end)
        XCTAssertEqual(replica.collectionNames(), ["items"])
        let r = try XCTUnwrap(replica.collection("items"))
        XCTAssertEqual(try r.itemCount(), try c.itemCount())
        for i in 0..<300 {
            XCTAssertEqual(try r.vector(key: "k\(i)"), try c.vector(key: "k\(i)"), "k\(i)")
            XCTAssertEqual(try r.item(key: "k\(i)"), try c.item(key: "k\(i)"), "k\(i)")
        }
        // The replica records the primary's bytes: its own backlog is the same stream.
        XCTAssertEqual(replica.replication.bytes(from: 0, max: .max), bytes)
    }

    func testBacklogKeepsTheLatestBytesAndAnswersPsync() async throws {
        var options = small()
        options.replicationBacklogBytes = 1 << 20
        let engine = try Engine(directory: temporaryDirectory(self), options: options)
        defer { engine.close() }
        let c = try engine.createCollection(.init(name: "b", dimension: 64, metric: .l2, index: "Flat"))
        let id = engine.replication.position.replid
        for i in 0..<9000 { _ = try await c.upsert(key: "k\(i)", vector: [Float](repeating: Float(i), count: 64)) }
        let end = engine.replication.position.offset
        let backlog = engine.replication.backlog
        XCTAssertGreaterThan(end, 2 << 20)
        XCTAssertLessThanOrEqual(backlog.bytes, 1 << 20)
        XCTAssertEqual(backlog.first + UInt64(backlog.bytes), end)
        XCTAssertNil(engine.replication.bytes(from: 0, max: 10), "trimmed away")
        XCTAssertEqual(engine.replication.bytes(from: end, max: 10), [])
        XCTAssertTrue(engine.replication.canContinue(replid: id, from: end - 100))
        XCTAssertFalse(engine.replication.canContinue(replid: id, from: 5))
        XCTAssertFalse(engine.replication.canContinue(replid: id, from: end + 1))
        XCTAssertFalse(engine.replication.canContinue(replid: ReplicationLog.newId(), from: end))
        // A new history (promotion): the old id continues only up to where the histories part.
        engine.replication.startNewHistory()
        _ = try await c.upsert(key: "new", vector: [Float](repeating: -1, count: 64))
        XCTAssertTrue(engine.replication.canContinue(replid: id, from: end))
        XCTAssertFalse(engine.replication.canContinue(replid: id, from: end + 1))
        XCTAssertTrue(engine.replication.canContinue(replid: engine.replication.position.replid, from: end + 1))
    }

    func testSnapshotUnderWritesStandsExactlyAtItsOffset() async throws {
        let dir = temporaryDirectory(self)
        var options = small()
        options.sealThreshold = 200
        let engine = try Engine(directory: dir + "/live", options: options)
        let c = try engine.createCollection(.init(name: "s", dimension: 8, metric: .l2, index: "Flat"))
        for i in 0..<2000 { _ = try await c.upsert(key: "k\(i)", vector: [Float](repeating: Float(i), count: 8)) }
        engine.waitForSealing()
        let writer = Task {
            var i = 2000
            while !Task.isCancelled {
                _ = try? await c.upsert(key: "k\(i % 2500)", vector: [Float](repeating: Float(-i), count: 8))
                i += 1
            }
        }
        let summary = try engine.writeSnapshot(to: dir + "/snap", bytesPerSecond: 2 << 20)
        writer.cancel()
        _ = await writer.result
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/snap.partial"))
        XCTAssertTrue(summary.files.contains { $0.hasSuffix(".faiss") }, "\(summary.files)")
        // Replaying the live stream up to the snapshot's offset gives exactly the snapshot.
        let bytes = try XCTUnwrap(engine.replication.bytes(from: 0, max: Int(summary.position.offset)))
        engine.close()
        let replayed = try Engine(directory: dir + "/replayed", options: options)
        var entries: [(entry: StreamEntry, bytes: [UInt8])] = []
        var at = 0
        while at < bytes.count, let (e, n) = try StreamEntry.decode(bytes[at...]) {
            entries.append((e, Array(bytes[at..<(at + n)])))
            at += n
        }
        XCTAssertEqual(at, bytes.count, "the offset falls between entries")
        try replayed.applyReplicated(entries)
        let restored = try Engine(directory: dir + "/snap", options: options)
        defer { restored.close(); replayed.close() }
        XCTAssertEqual(restored.replication.position.offset, summary.position.offset)
        let a = try XCTUnwrap(restored.collection("s")), b = try XCTUnwrap(replayed.collection("s"))
        XCTAssertEqual(try a.itemCount(), try b.itemCount())
        for i in 0..<2500 { XCTAssertEqual(try a.vector(key: "k\(i)"), try b.vector(key: "k\(i)"), "k\(i)") }
    }

    /// A folder opened with more unsealed items than the seal threshold (a restored snapshot,
    /// a crash): the replay seals them while the collection opens, and the clean-up of leftover
    /// files must not delete those seals' files (it did: "cannot rename seg-….faiss.tmp").
    func testItemsReplayedAtOpenAreSealedWithoutFailure() async throws {
        let dir = temporaryDirectory(self)
        var options = small()
        options.sealThreshold = 1_000_000
        var engine = try Engine(directory: dir, options: options)
        let c = try engine.createCollection(.init(name: "r", dimension: 16, metric: .l2, index: "Flat"))
        _ = await c.write(batch: (0..<20_000).map { .upsert(key: "k\($0)", vector: [Float](repeating: Float($0), count: 16), attributes: .keep) })
        engine.close()
        options.sealThreshold = 100
        engine = try Engine(directory: dir, options: options)
        defer { engine.close() }
        engine.waitForSealing()
        let summary = try XCTUnwrap(engine.collection("r")).segmentSummary()
        XCTAssertEqual(summary.frozen, 0, "a seal failed and waits for its retry")
        XCTAssertEqual(summary.sealedItems + summary.mutableCount, 20_000)
    }

    private func small() -> EngineOptions {
        var o = EngineOptions()
        o.storage.mapSize = 1 << 30
        o.storage.sync = .none
        o.categoryModel = false
        return o
    }
}

enum StreamEntryTestBytes {
    static let unknownOperation = Array("*2\r\n$1\r\nZ\r\n$1\r\nx\r\n".utf8)
}
