// Operators' surfaces that need no server: the config file's parsing and rewrite
// (ConfigFile.swift) and the engine's per-collection statistics the metrics read
// (Statistics.swift). The server-side paths are in Tests/server (test_config_file.py,
// test_metrics.py).
import Foundation
import LookalikeEngine
import LookalikeProtocol
import LookalikeTestSupport
import XCTest

final class OperationsTests: XCTestCase {
    private func file(_ text: String) throws -> String {
        let path = temporaryDirectory(self) + ".conf"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func testDirectivesQuotesEscapesAndRedisNames() throws {
        let path = try file("""
            # comment
              maxclients   12
            bind 127.0.0.1
            requirepass "a \\"quoted\\" pass\\x41"
            default-index 'IVF16,Flat'
            Lookalike-Max-Count 5

            """)
        let d = try ConfigFile.read(path)
        XCTAssertEqual(d.map(\.line), [2, 3, 4, 5, 6])
        XCTAssertEqual(d.map(\.flag), ["max-clients", "host", "requirepass", "default-index", "max-count"])
        XCTAssertEqual(d.map(\.value), ["12", "127.0.0.1", "a \"quoted\" passA", "IVF16,Flat", "5"])
    }

    func testABadLineIsNamed() throws {
        for (text, fragment) in [("port 1\nbind a b\n", "line 2"), ("x \"open\n", "line 1: unbalanced quotes"),
                                 ("a \"b\"c\n", "line 1: a closing quote"), ("config other.conf\n", "line 1")] {
            XCTAssertThrowsError(try ConfigFile.read(try file(text))) { error in
                XCTAssertTrue("\(error)".contains(fragment), "\(error) lacks \(fragment)")
            }
        }
        XCTAssertThrowsError(try ConfigFile.read("/nonexistent/lookalike.conf"))
    }

    func testRewriteKeepsCommentsOrderAndQuotesWhatNeedsIt() throws {
        let path = try file("# top\nslowlog-max-len 1\n\n# mid\nport 7000\nslowlog-max-len 2\n")
        try ConfigFile.rewrite(path, values: [(flag: "slowlog-max-len", value: "9"), (flag: "default-index", value: "IVF8, Flat")])
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8),
                       "# top\nslowlog-max-len 9\n\n# mid\nport 7000\ndefault-index \"IVF8, Flat\"\n")
        // What the rewrite wrote reads back as written.
        XCTAssertEqual(try ConfigFile.read(path).map(\.value), ["9", "7000", "IVF8, Flat"])
    }

    func testCollectionStatisticsFollowTheCollection() async throws {
        var options = EngineOptions()
        options.sealThreshold = 50
        options.mergeFactor = 0
        let engine = try Engine(directory: temporaryDirectory(self), options: options)
        defer { engine.close() }
        let c = try engine.createCollection(.init(name: "s", dimension: 8, metric: .l2, index: "HNSW16"))
        for (i, v) in clusteredVectors(count: 120, dimension: 8, clusters: 4, seed: 3).enumerated() {
            try await c.upsert(key: "k\(i)", vector: v)
        }
        try engine.persist()
        let s = try XCTUnwrap(engine.collectionStatistics().first)
        XCTAssertEqual(s.name, "s")
        XCTAssertEqual(s.items, 120)
        XCTAssertEqual(s.sealingSegments, 0, "persist waits for every seal")
        XCTAssertEqual(s.sealedSegments, c.segmentSummary().sealed)
        XCTAssertGreaterThanOrEqual(s.sealedSegments, 2)
        XCTAssertEqual(s.mutableItems, 0)
        XCTAssertEqual(s.segmentsDueToMerge, 0, "merging is off")
        XCTAssertEqual(s.estimatedBytes, try c.memoryUsage().total)
        _ = try await engine.dropCollection("s")
        XCTAssertTrue(engine.collectionStatistics().isEmpty)
    }
}
