// Names carry byte strings losslessly; FILTER limits hold before a deep tree exists (issue 17).
import LookalikeTestSupport
import XCTest
@testable import LookalikeEngine
import LookalikeFormats
import Foundation
import Synchronization

final class NamesAndLimitsTests: XCTestCase {
    func testEveryByteStringRoundTrips() {
        var rng = SeededRandom(seed: 17)
        var samples: [[UInt8]] = [[], [0xFF], [0xFE], [0x63, 0x80], [0xC3, 0xA9], [0xF4, 0x8F, 0xBE, 0x80],
                                  [0xED, 0xA0, 0x80], [0xE0, 0x80, 0x80], [0xF4, 0x90, 0x80, 0x80], [0x1F, 0x00]]
        for _ in 0..<2000 {
            samples.append((0..<Int(rng.next() % 12)).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        }
        var seen: [String: [UInt8]] = [:]
        for bytes in samples {
            let s = Names.string(bytes)
            XCTAssertEqual(Names.bytes(s), bytes, "\(bytes)")
            if let other = seen[s] { XCTAssertEqual(other, bytes, "two byte strings became one name") }
            seen[s] = bytes
        }
    }

    func testValidUTF8NamesStayThemselves() {
        for name in ["shoes", "café", "靴", "a\u{1F}b", ""] {
            XCTAssertEqual(Names.string(Array(name.utf8)), name)
            XCTAssertEqual(Names.bytes(name), Array(name.utf8))
        }
    }

    func testFilterLimits() throws {
        var limits = FilterLimits()
        limits.maxDepth = 20
        XCTAssertNoThrow(try FilterExpression(String(repeating: "(", count: 10) + ".a" + String(repeating: ")", count: 10), limits: limits))
        for deep in [String(repeating: "(", count: 30) + ".a" + String(repeating: ")", count: 30),
                     String(repeating: "not ", count: 30) + ".a",
                     "1" + String(repeating: " + 1", count: 30),
                     "2" + String(repeating: " ** 2", count: 30),
                     String(repeating: "[", count: 30) + "1" + String(repeating: "]", count: 30)] {
            XCTAssertThrowsError(try FilterExpression(deep, limits: limits), deep) { error in
                XCTAssertTrue("\(error)".contains("nested deeper than 20"), "\(error)")
            }
        }
        limits.maxBytes = 10
        XCTAssertThrowsError(try FilterExpression(".aaaa == 12345", limits: limits))
    }
}

/// A write queued behind a drop of its collection, in the same group commit, must fail: before
/// the fix it went into the emptied tables, was acknowledged, and vanished with the collection.
final class DropInBatchTests: XCTestCase {
    func testWriteAfterDropInOneBatchIsNeverAcknowledgedAndLost() throws {
        let engine = try Engine(directory: temporaryDirectory(self))
        defer { engine.close() }
        let definition = CollectionDefinition(name: "r", dimension: 2, metric: .l2, index: "Flat")
        var acknowledgedAfterDrop = 0
        for round in 0..<30 {
            let c = try engine.createCollection(definition)
            let done = DispatchGroup()
            let upsertOK = Mutex(false)
            done.enter()
            engine.writeQueue.submit(PreparedWrite(collection: c, request: .dropCollection, preparedVector: nil) { _ in done.leave() })
            done.enter()
            c.submit(.upsert(key: "k\(round)", vector: [1, 2], attributes: .keep)) { result in
                if case .success = result { upsertOK.withLock { $0 = true } }
                done.leave()
            }
            done.wait()
            XCTAssertNil(engine.collection("r"))
            if upsertOK.withLock({ $0 }) { acknowledgedAfterDrop += 1 }
        }
        XCTAssertEqual(acknowledgedAfterDrop, 0, "writes acknowledged after their collection's drop, then lost")
    }

    /// The commit thread keeps a writer per open collection (CollectionWriter.swift), and the
    /// writer holds its collection: a committed drop must retire it, or every dropped collection
    /// stays in memory with its segments until the engine closes.
    func testDroppedCollectionIsLetGoByTheCommitThread() async throws {
        let engine = try Engine(directory: temporaryDirectory(self))
        defer { engine.close() }
        let definition = CollectionDefinition(name: "r", dimension: 2, metric: .l2, index: "Flat")
        let other = try engine.createCollection(CollectionDefinition(name: "o", dimension: 2, metric: .l2, index: "Flat"))
        weak var dropped: Collection?
        do {
            let c = try engine.createCollection(definition)
            try await c.upsert(key: "a", vector: [1, 2])
            dropped = c
        }
        let removed = try await engine.dropCollection("r")
        XCTAssertTrue(removed)
        engine.waitForMerging()  // a merge scheduled at open holds the collection until it runs
        // Acknowledged in a later batch: the commit thread has let go of the drop's batch.
        try await other.upsert(key: "b", vector: [3, 4])
        XCTAssertNil(dropped, "the dropped collection is still held")

        // Created again under its name, it allocates ids of its own from 0.
        let again = try engine.createCollection(definition)
        try await again.upsert(key: "c", vector: [5, 6])
        XCTAssertEqual(again.idHighWaterMark, 1)
    }
}

/// A closed engine lets go of its LMDB environment (DEBUG RELOAD opens a new one each time):
/// found by fuzz-commands, where every reload left data.mdb open and its map reserved.
final class EngineCloseTests: XCTestCase {
    func openDescriptors(on directory: String) -> Int {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return fds.filter { fd in
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)"))?.hasPrefix(directory) ?? false
        }.count
    }

    func testClosedEnginesReleaseTheirEnvironment() throws {
        let directory = temporaryDirectory(self)
        for round in 0..<5 {
            let engine = try Engine(directory: directory)
            try engine.createCollectionIfMissing(CollectionDefinition(name: "c", dimension: 2, metric: .l2, index: "Flat"))
            XCTAssertGreaterThan(openDescriptors(on: directory), 0, "round \(round)")
            engine.close()
        }
        // Nothing holds a closed engine: every descriptor on the folder is closed.
        for _ in 0..<50 where openDescriptors(on: directory) > 0 { Thread.sleep(forTimeInterval: 0.02) }
        XCTAssertEqual(openDescriptors(on: directory), 0)
    }
}
