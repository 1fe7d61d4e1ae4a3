// Compressed HNSW (HNSWn,SQ8 and HNSWn,SQfp16) in the shim's fast loop: the AVX2 code kernels
// against the scalar references and FAISS 1.7.3's own distance computer and decoder, for every
// tail length and both metrics, across write/read and clone; recall of the shim's loop on such
// storage against brute force; and such segments sealed (their graph linked on the float rows,
// the flat build's links), reloaded and compacted by the engine, a pre-transformed HNSW still
// sealed by FAISS's add.
import Foundation
import LookalikeEngine
import LookalikeIndex
import LookalikeTestSupport
import XCTest

final class CompressedHNSWTests: XCTestCase {
    let specs: [(String, FaissInfo.Storage)] = [("HNSW16,SQ8", .sq8), ("HNSW16,SQfp16", .fp16)]

    func definition(_ a: [Float], _ b: [Float], _ metric: FaissMetric) -> Double {
        metric == .l2
            ? zip(a, b).reduce(0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }
            : zip(a, b).reduce(0) { $0 + Double($1.0) * Double($1.1) }
    }

    func built(_ spec: String, _ data: [[Float]], _ metric: FaissMetric) throws -> FaissIndex {
        let index = try FaissIndex(spec: spec, dimension: data[0].count, metric: metric)
        try index.train(data.flatMap { $0 }, count: data.count)
        try index.add(data.flatMap { $0 }, count: data.count)
        return index
    }

    func assertClose(_ a: [Float], _ b: [Float], _ tolerance: Double, _ what: String) {
        XCTAssertEqual(a.count, b.count)
        for (x, y) in zip(a, b) {
            XCTAssertEqual(Double(x), Double(y), accuracy: tolerance * max(1, abs(Double(y))), what)
        }
    }

    func testCodeKernelsMatchReferenceFAISSAndDecodedVectors() throws {
        let avx = ProcessInfo.processInfo.environment["LOOKALIKE_REFERENCE_DISTANCES"] == nil
        for dimension in [1, 5, 7, 8, 9, 15, 16, 17, 31, 33, 100, 384] {
            let data = clusteredVectors(count: 200, dimension: dimension, clusters: 5, seed: UInt64(dimension))
            for (spec, storage) in specs {
                for metric in [FaissMetric.l2, .innerProduct] {
                    let index = try built(spec, data, metric)
                    let path = FileManager.default.temporaryDirectory.appendingPathComponent("sq-\(UUID()).faiss").path
                    defer { unlink(path) }
                    try index.write(to: path)
                    for (name, ix) in [("built", index), ("read", try FaissIndex.read(path: path, mmap: false)),
                                       ("clone", try index.clone())] {
                        let what = "\(spec) d=\(dimension) \(metric) \(name)"
                        let info = try ix.info()
                        XCTAssertEqual(info.storage, storage, what)
                        XCTAssertEqual(info.fastDistances, avx, what)
                        XCTAssertEqual(info.count, data.count, what)
                        let query = data[3].map { $0 * 0.9 + 0.05 }
                        let positions = Array(0..<data.count)
                        let fast = try ix.codeDistances(query, positions: positions, using: .shim)
                        let scalar = try ix.codeDistances(query, positions: positions, using: .shimReference)
                        let faiss = try ix.codeDistances(query, positions: positions, using: .faiss)
                        // FAISS's decoder (sa_decode through reconstruct), scored in Double.
                        let decoded = try positions.map {
                            Float(definition(query, try ix.reconstruct(position: $0, dimension: dimension), metric))
                        }
                        assertClose(fast, scalar, 1e-4, what + " AVX2 vs scalar")
                        assertClose(fast, faiss, 1e-4, what + " vs FAISS's distance computer")
                        assertClose(fast, decoded, 1e-4, what + " vs FAISS's decoded vectors")
                    }
                }
            }
        }
    }

    /// The shim's loop on compressed codes finds the true neighbours (what quantization allows),
    /// and agrees with FAISS's own loop over the same graph.
    func testSearchOnCodesRecallsTheTrueNeighbours() throws {
        let dimension = 48
        let data = clusteredVectors(count: 3000, dimension: dimension, clusters: 30, seed: 11)
        let queries = clusteredVectors(count: 40, dimension: dimension, clusters: 30, seed: 11 + 99)
        for (spec, minimum) in [("HNSW32,SQ8", 0.85), ("HNSW32,SQfp16", 0.95)] {
            for metric in [FaissMetric.l2, .innerProduct] {
                let index = try built(spec, data, metric)
                var ours = 0.0, theirs = 0.0
                for q in queries {
                    let scored = data.indices.map { (Int64($0), definition(q, data[$0], metric)) }
                    let truth = Set(scored.sorted { metric == .l2 ? $0.1 < $1.1 : $0.1 > $1.1 }.prefix(10).map(\.0))
                    let a = try index.search(q, queryCount: 1, k: 10, effort: SearchEffort(efSearch: 128), selector: nil)
                    let b = try index.search(q, queryCount: 1, k: 10, effort: SearchEffort(efSearch: 128), selector: nil,
                                             faissSearch: true)
                    ours += Double(Set(a.positions).intersection(truth).count) / 10
                    theirs += Double(Set(b.positions).intersection(truth).count) / 10
                }
                ours /= Double(queries.count)
                theirs /= Double(queries.count)
                XCTAssertGreaterThanOrEqual(ours, minimum, "\(spec) \(metric)")
                XCTAssertGreaterThanOrEqual(ours, theirs - 0.03, "\(spec) \(metric): the shim's loop vs FAISS's")
            }
        }
    }

    /// A live graph is for flat storage only: compressed storage refuses it (the engine keeps
    /// those collections on the exact mutable segment + seal lifecycle).
    func testLiveGraphIsRefusedOnCompressedStorage() throws {
        let data = clusteredVectors(count: 300, dimension: 16, clusters: 3, seed: 2)
        let index = try built("HNSW16,SQ8", data, .l2)
        XCTAssertThrowsError(try index.reserveGraph(capacity: 1000))
    }
}

/// The engine's lifecycle with compressed HNSW specs: seal (trained template cloned for later
/// segments; the graph built from the float rows), reopen from the files, compact, recall
/// against brute force.
final class CompressedHNSWEngineTests: XCTestCase {
    func testSealReloadAndCompactCompressedSegments() async throws {
        let dimension = 24
        let vectors = clusteredVectors(count: 3500, dimension: dimension, clusters: 25, seed: 5)
        let data = vectors.enumerated().map { (key: "item-\($0.offset)", vector: $0.element) }
        let queries = clusteredVectors(count: 30, dimension: dimension, clusters: 25, seed: 5 + 77)
        for spec in ["HNSW32,SQ8", "HNSW32,SQfp16"] {
            for metric in [Metric.cosine, .l2] {
                let directory = temporaryDirectory(self)
                var options = EngineOptions()
                options.sealThreshold = 1000
                var engine: Engine? = try Engine(directory: directory, options: options)
                var c = try engine!.createCollection(CollectionDefinition(
                    name: "items", dimension: dimension, metric: metric, index: spec, efSearch: 128))
                let results = await c.write(batch: data.map { .upsert(key: $0.key, vector: $0.vector, attributes: .keep) })
                XCTAssertTrue(results.allSatisfy { (try? $0.get()) == .added })
                engine!.waitForSealing()
                XCTAssertGreaterThanOrEqual(c.segmentSummary().sealed, 3, "\(spec) \(metric): later segments cloned from the template")
                func meanRecall() throws -> Double {
                    try queries.reduce(0.0) { sum, q in
                        let hits = try c.search(SearchRequest(query: .vector(q), k: 10))
                        return sum + recall(hits.map(\.key), bruteForce(q, data, k: 10, metric: metric))
                    } / Double(queries.count)
                }
                let before = try meanRecall()
                XCTAssertGreaterThanOrEqual(before, 0.85, "\(spec) \(metric)")
                engine!.close()
                engine = try Engine(directory: directory, options: options)
                c = try XCTUnwrap(engine!.collection("items"))
                XCTAssertGreaterThanOrEqual(c.segmentSummary().sealed, 3, "\(spec) \(metric) reloaded")
                XCTAssertGreaterThanOrEqual(try meanRecall(), 0.85, "\(spec) \(metric) reloaded")
                _ = try engine!.compact(c)
                XCTAssertGreaterThanOrEqual(try meanRecall(), 0.85, "\(spec) \(metric) compacted")
                engine!.close()
            }
        }
    }

    /// A compressed seal links its graph with the shim's loop on the frozen float rows, then
    /// encodes them (not FAISS's add, which decodes codes for every node-to-node distance): with
    /// one build thread its links are those of the same build done here, and stay so across a
    /// restart (the segment's files written and read back).
    func testSealBuildsTheGraphFromTheFloatRows() async throws {
        let dimension = 16, count = 1_200, efc = 40
        let vectors = clusteredVectors(count: count, dimension: dimension, clusters: 12, seed: 9)
        for spec in ["HNSW16,SQ8", "HNSW16,SQfp16"] {
            let directory = temporaryDirectory(self)
            var options = EngineOptions()
            options.sealThreshold = count
            options.buildThreads = 1
            var engine: Engine? = try Engine(directory: directory, options: options)
            var c = try engine!.createCollection(CollectionDefinition(
                name: "items", dimension: dimension, metric: .l2, index: spec, efConstruction: efc))
            _ = await c.write(batch: vectors.enumerated().map { .upsert(key: "k\($0.offset)", vector: $0.element, attributes: .keep) })
            try engine!.persist()
            XCTAssertEqual(c.segmentSummary().sealed, 1, spec)
            XCTAssertEqual(c.segmentSummary().sealedItems, count, spec)

            let reference = try FaissIndex(spec: spec, dimension: dimension, metric: .l2)
            try reference.setHNSW(efConstruction: efc, efSearch: 64)
            let rows = vectors.flatMap { $0 }
            if try !reference.info().isTrained { try reference.train(rows, count: count) }
            try rows.withUnsafeBufferPointer { try reference.build($0.baseAddress!, count: count, threads: 1) }
            // VLINKS lists the highest level first, by key; the reference's positions are the keys' numbers.
            func expected(_ i: Int) throws -> [Set<String>] {
                try reference.hnswLinks(position: i).reversed().map { Set($0.map { "k\($0)" }) }
            }
            func actual(_ i: Int) throws -> [Set<String>] {
                try XCTUnwrap(c.links(key: "k\(i)")).map { Set($0.map(\.key)) }
            }
            for i in stride(from: 0, to: count, by: 7) {
                XCTAssertEqual(try actual(i), try expected(i), "\(spec) k\(i): the links of the build from rows")
            }
            engine!.close()
            engine = try Engine(directory: directory, options: options)
            c = try XCTUnwrap(engine!.collection("items"))
            for i in stride(from: 3, to: count, by: 7) {
                XCTAssertEqual(try actual(i), try expected(i), "\(spec) k\(i) after a restart")
            }
            engine!.close()
        }
    }

    /// An HNSW behind a pre-transform (the build from rows cannot reach its inner index) is still
    /// sealed by FAISS's add, not refused.
    func testPreTransformedHNSWStillSeals() async throws {
        let vectors = clusteredVectors(count: 1_200, dimension: 16, clusters: 12, seed: 13)
        var options = EngineOptions()
        options.sealThreshold = 1_200
        let engine = try Engine(directory: temporaryDirectory(self), options: options)
        defer { engine.close() }
        let c = try engine.createCollection(CollectionDefinition(name: "items", dimension: 16, metric: .l2, index: "PCA8,HNSW16"))
        _ = await c.write(batch: vectors.enumerated().map { .upsert(key: "k\($0.offset)", vector: $0.element, attributes: .keep) })
        try engine.persist()
        XCTAssertEqual(c.segmentSummary().sealed, 1)
        XCTAssertEqual(try c.search(SearchRequest(query: .vector(vectors[5]), k: 10)).count, 10)
    }
}

/// Rescoring (Rescoring.swift): compressed candidates re-ranked with the exact vectors.
final class RescoringTests: XCTestCase {
    func exactScore(_ q: [Float], _ v: [Float], _ metric: Metric) -> Double {
        var dot = 0.0, l2 = 0.0, qn = 0.0, vn = 0.0
        for i in q.indices {
            let a = Double(q[i]), b = Double(v[i])
            dot += a * b; l2 += (a - b) * (a - b); qn += a * a; vn += b * b
        }
        switch metric {
        case .l2: return l2.squareRoot()
        case .ip: return dot
        case .cosine: return dot / (qn.squareRoot() * vn.squareRoot())
        }
    }

    func testRescoredScoresAreExactForEveryIndexType() async throws {
        let dimension = 32
        let vectors = clusteredVectors(count: 3000, dimension: dimension, clusters: 20, seed: 21)
        let data = vectors.enumerated().map { (key: "item-\($0.offset)", vector: $0.element) }
        let byKey = Dictionary(uniqueKeysWithValues: data.map { ($0.key, $0.vector) })
        let queries = clusteredVectors(count: 20, dimension: dimension, clusters: 20, seed: 21 + 5)
        // (spec, rescored by default)
        for (spec, byDefault) in [("HNSW32,SQ8", true), ("HNSW32,SQfp16", true), ("IVF16,SQ4", false), ("HNSW32", false)] {
            for metric in [Metric.cosine, .l2] {
                var options = EngineOptions()
                options.sealThreshold = 1500
                let engine = try Engine(directory: temporaryDirectory(self), options: options)
                defer { engine.close() }
                let c = try engine.createCollection(CollectionDefinition(
                    name: "items", dimension: dimension, metric: metric, index: spec, efSearch: 128, nprobe: 16))
                _ = await c.write(batch: data.map { .upsert(key: $0.key, vector: $0.vector, attributes: .keep) })
                engine.waitForSealing()
                XCTAssertGreaterThan(c.segmentSummary().sealed, 0, spec)
                XCTAssertEqual(c.defaultRescore, byDefault ? 4 : 0, spec)
                var inexact = 0, total = 0.0
                for q in queries {
                    var request = SearchRequest(query: .vector(q), k: 10)
                    request.rescore = 4
                    let hits = try c.search(request)
                    XCTAssertEqual(hits.count, 10)
                    total += recall(hits.map(\.key), bruteForce(q, data, k: 10, metric: metric))
                    for (i, h) in hits.enumerated() {
                        let exact = exactScore(q, byKey[h.key]!, metric)
                        XCTAssertEqual(Double(h.score), exact, accuracy: 1e-4 * max(1, abs(exact)), "\(spec) \(metric)")
                        if i > 0 {
                            let better = metric == .l2 ? hits[i - 1].score <= h.score : hits[i - 1].score >= h.score
                            XCTAssertTrue(better, "\(spec) \(metric): exact order")
                        }
                    }
                    request.rescore = 0
                    for h in try c.search(request) where abs(Double(h.score) - exactScore(q, byKey[h.key]!, metric)) > 1e-4 {
                        inexact += 1
                    }
                }
                XCTAssertGreaterThanOrEqual(total / Double(queries.count), 0.95, "\(spec) \(metric) rescored recall")
                if spec != "HNSW32" { XCTAssertGreaterThan(inexact, 0, "\(spec) \(metric): without rescoring, scores are the codes'") }
            }
        }
    }

    /// At 512-d every vector is on LMDB's overflow pages, so rescoring reads it by pread
    /// (LMDBFileRead.swift): scores still equal the exact ones, from a sealed segment and the
    /// live one, and after a fifth of the items get new vectors.
    func testRescoredScoresAreExactWhenVectorsArePread() async throws {
        let dimension = 512
        let vectors = clusteredVectors(count: 1600, dimension: dimension, clusters: 10, seed: 5)
        var byKey = Dictionary(uniqueKeysWithValues: vectors.enumerated().map { ("item-\($0.offset)", $0.element) })
        let queries = clusteredVectors(count: 10, dimension: dimension, clusters: 10, seed: 6)
        var options = EngineOptions()
        options.sealThreshold = 1200
        let engine = try Engine(directory: temporaryDirectory(self), options: options)
        defer { engine.close() }
        let c = try engine.createCollection(CollectionDefinition(
            name: "items", dimension: dimension, metric: .cosine, index: "HNSW32,SQ8", efSearch: 64))
        _ = await c.write(batch: byKey.sorted { $0.key < $1.key }.map { .upsert(key: $0.key, vector: $0.value, attributes: .keep) })
        engine.waitForSealing()
        XCTAssertGreaterThan(c.segmentSummary().sealed, 0)
        func check(_ label: String) throws {
            for q in queries {
                let hits = try c.search(SearchRequest(query: .vector(q), k: 10))  // rescored ×4 by default
                XCTAssertEqual(hits.count, 10, label)
                for h in hits {
                    let exact = exactScore(q, byKey[h.key]!, .cosine)
                    XCTAssertEqual(Double(h.score), exact, accuracy: 1e-4, "\(label): \(h.key)")
                }
            }
        }
        try check("as loaded")
        let replaced = clusteredVectors(count: 320, dimension: dimension, clusters: 10, seed: 7)
        let writes = replaced.enumerated().map { (key: "item-\($0.offset * 5)", vector: $0.element) }
        for w in writes { byKey[w.key] = w.vector }
        _ = await c.write(batch: writes.map { .upsert(key: $0.key, vector: $0.vector, attributes: .keep) })
        try check("after new vectors")
    }

    func testBadRescoreIsRefused() throws {
        let engine = try Engine(directory: temporaryDirectory(self), options: EngineOptions())
        defer { engine.close() }
        XCTAssertThrowsError(try engine.createCollection(CollectionDefinition(name: "x", dimension: 4, rescore: -1)))
        XCTAssertThrowsError(try engine.createCollection(CollectionDefinition(name: "x", dimension: 4, rescore: 101)))
        let c = try engine.createCollection(CollectionDefinition(name: "y", dimension: 4, rescore: 3))
        XCTAssertEqual(c.defaultRescore, 3)
        var request = SearchRequest(query: .vector([1, 0, 0, 0]), k: 1)
        request.rescore = 101
        XCTAssertThrowsError(try c.search(request))
    }
}

/// Hits take sealed items' keys from the segments' key tables (KeyTable.swift), and folders
/// from before keys files are migrated at open.
final class KeyTableTests: XCTestCase {
    func testKeysFilesAreWrittenMigratedAndFollowRemovals() async throws {
        let directory = temporaryDirectory(self)
        var options = EngineOptions()
        options.sealThreshold = 500
        let vectors = clusteredVectors(count: 2400, dimension: 8, clusters: 6, seed: 4)
        do {
            let engine = try Engine(directory: directory, options: options)
            let c = try engine.createCollection(CollectionDefinition(name: "items", dimension: 8, index: "HNSW16,SQ8"))
            _ = await c.write(batch: vectors.enumerated().map { .upsert(key: "k\($0.offset)-ü", vector: $0.element, attributes: .keep) })
            engine.waitForSealing()
            engine.close()
        }
        let folder = try XCTUnwrap(FileManager.default.contentsOfDirectory(atPath: "\(directory)/segments").first)
        let segments = "\(directory)/segments/\(folder)"
        let keysFiles = try FileManager.default.contentsOfDirectory(atPath: segments).filter { $0.hasSuffix(".keys") }
        let listing = (try? FileManager.default.contentsOfDirectory(atPath: segments)) ?? []
        XCTAssertEqual(keysFiles.count, 2, "one keys file per sealed segment: \(listing)")
        guard keysFiles.count == 2 else { return }
        // A folder from before keys files: the next open writes them again from LMDB.
        for f in keysFiles { try FileManager.default.removeItem(atPath: "\(segments)/\(f)") }
        try Data("damaged".utf8).write(to: URL(fileURLWithPath: "\(segments)/\(keysFiles[0])"))
        let engine = try Engine(directory: directory, options: options)
        defer { engine.close() }
        let c = try XCTUnwrap(engine.collection("items"))
        let again = try FileManager.default.contentsOfDirectory(atPath: segments).filter { $0.hasSuffix(".keys") }
        XCTAssertEqual(Set(again), Set(keysFiles))
        for i in [0, 999, 1000, 2300] {
            let hits = try c.search(SearchRequest(query: .vector(vectors[i]), k: 1))
            XCTAssertEqual(hits.first?.key, "k\(i)-ü")
        }
        // A removed item is never a hit, though its key stays in the table.
        _ = await c.write(batch: [.remove(key: "k7-ü")])
        let hits = try c.search(SearchRequest(query: .vector(vectors[7]), k: 20))
        XCTAssertFalse(hits.contains { $0.key == "k7-ü" })
        XCTAssertEqual(hits.count, 20)
    }
}
