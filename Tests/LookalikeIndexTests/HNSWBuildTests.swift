// The build at once from rows (FaissIndex.build, lk_hnsw_build): a compressed HNSW's graph
// (HNSWn,SQ8, HNSWn,SQfp16) linked by the shim's insertion loop on the float rows, then the rows
// encoded into its storage. Its links equal the flat build's on the same rows (one thread), its
// storage is the compressed one, it recalls what brute force finds, and it writes, reads, clones,
// is searched by FAISS's own loop and added to by FAISS's add like any FAISS index. Wrong uses
// (a non-empty index, a live graph, an untrained index, another index type or storage, a
// pre-transform) are refused, changing nothing.
// Helpers (data, queries, truth, recall, inserted) are HNSWInsertTests'.
import Foundation
import LookalikeIndex
import XCTest

extension HNSWInsertTests {
    /// `spec`, trained on `base` when it needs it, built from `base` at once.
    func builtFromRows(_ base: [Float], spec: String, metric: FaissMetric, efConstruction: Int = 40,
                       threads: Int) throws -> FaissIndex {
        let index = try FaissIndex(spec: spec, dimension: dimension, metric: metric)
        try index.setHNSW(efConstruction: efConstruction, efSearch: 256)
        let n = base.count / dimension
        if try !index.info().isTrained { try index.train(base, count: n) }
        try base.withUnsafeBufferPointer { try index.build($0.baseAddress!, count: n, threads: threads) }
        return index
    }

    func allLinks(_ index: FaissIndex) throws -> [[[Int64]]] {
        try (0..<index.info().count).map { try index.hnswLinks(position: $0) }
    }

    func testBuiltCompressedGraphHasTheFlatBuildsLinks() throws {
        for metric in [FaissMetric.l2, .innerProduct] {
            let base = data(2_500, metric: metric, seed: 31)
            let flat = try inserted(base, metric: metric, batches: [2_500], threads: 1)
            let flatLinks = try allLinks(flat)
            for (spec, storage) in [("HNSW16,SQ8", FaissInfo.Storage.sq8), ("HNSW16,SQfp16", .fp16), ("HNSW16", .flat)] {
                let built = try builtFromRows(base, spec: spec, metric: metric, threads: 1)
                let info = try built.info()
                XCTAssertEqual(info.storage, storage, "\(spec) \(metric)")
                XCTAssertEqual(info.count, 2_500, "\(spec) \(metric)")
                XCTAssertEqual(try allLinks(built), flatLinks, "\(spec) \(metric): the flat build's links")
            }
        }
    }

    func testBuiltCompressedGraphRecallsAndRoundTrips() throws {
        for metric in [FaissMetric.l2, .innerProduct] {
            let base = data(6_000, metric: metric, seed: 41)
            let qs = queries(base, count: 300, seed: 42)
            let truth = try self.truth(base, qs, metric: metric)
            for (spec, minimum) in [("HNSW32,SQ8", 0.85), ("HNSW32,SQfp16", 0.9)] {
                let what = "\(spec) \(metric)"
                let built = try builtFromRows(base, spec: spec, metric: metric, threads: 2)
                let ours = try recall(built, qs, truth, ef: 64)
                XCTAssertGreaterThanOrEqual(ours, minimum, what)
                // FAISS's own add on the same storage: the build from rows is not worse.
                let faiss = try FaissIndex(spec: spec, dimension: dimension, metric: metric)
                try faiss.setHNSW(efConstruction: 40, efSearch: 256)
                try faiss.train(base, count: 6_000)
                try faiss.add(base, count: 6_000)
                XCTAssertGreaterThanOrEqual(ours, try recall(faiss, qs, truth, ef: 64) - 0.02, what + " vs FAISS's add")
                // FAISS's own search loop accepts the graph.
                XCTAssertGreaterThanOrEqual(try recall(built, qs, truth, ef: 64, faissSearch: true), minimum - 0.03, what)

                let path = FileManager.default.temporaryDirectory.appendingPathComponent("built-\(UUID()).faiss").path
                defer { unlink(path) }
                try built.write(to: path)
                let links = try allLinks(built)
                let expected = try built.search(qs, queryCount: 300, k: 10, effort: SearchEffort(efSearch: 64), selector: nil)
                for (name, copy) in [("read", try FaissIndex.read(path: path, mmap: false)), ("clone", try built.clone())] {
                    XCTAssertEqual(try copy.info().storage, try built.info().storage, what + " " + name)
                    XCTAssertEqual(try allLinks(copy), links, what + " " + name)
                    let again = try copy.search(qs, queryCount: 300, k: 10, effort: SearchEffort(efSearch: 64), selector: nil)
                    XCTAssertEqual(again.positions, expected.positions, what + " " + name)
                    XCTAssertEqual(again.distances, expected.distances, what + " " + name)
                }
                // A built index grows by FAISS's add like any other.
                try built.add(Array(base[0..<(100 * dimension)]), count: 100)
                XCTAssertEqual(try built.info().count, 6_100, what)
            }
        }
    }

    func testBuildIsRefusedWhereItCannotApply() throws {
        let base = data(300, metric: .l2, seed: 51)
        let built = try builtFromRows(base, spec: "HNSW16,SQ8", metric: .l2, threads: 1)
        let links = try allLinks(built)
        XCTAssertThrowsError(try built.build(base, count: 300, threads: 1), "not empty")
        XCTAssertEqual(try built.info().count, 300)
        XCTAssertEqual(try allLinks(built), links, "a refused build changes nothing")

        let untrained = try FaissIndex(spec: "HNSW16,SQ8", dimension: dimension, metric: .l2)
        XCTAssertThrowsError(try untrained.build(base, count: 300, threads: 1), "untrained")
        XCTAssertEqual(try untrained.info().count, 0)
        let live = try FaissIndex(spec: "HNSW16", dimension: dimension, metric: .l2)
        try live.reserveGraph(capacity: 300)
        XCTAssertThrowsError(try live.build(base, count: 300, threads: 1), "a live graph")
        for spec in ["Flat", "IVF4,Flat", "HNSW16,SQ4", "PCA16,HNSW16"] {
            let other = try FaissIndex(spec: spec, dimension: dimension, metric: .l2)
            if try !other.info().isTrained { try other.train(base, count: 300) }
            XCTAssertThrowsError(try other.build(base, count: 300, threads: 1), spec)
            XCTAssertEqual(try other.info().count, 0, spec)
            XCTAssertEqual(try other.info().preTransform, spec.hasPrefix("PCA"), spec)
        }
        XCTAssertFalse(try built.info().preTransform)
    }
}
