// The C shim's own behaviour: HNSW's fast (AVX2) flat storage computes the same distances as
// the definition, for every tail length and both metrics, before and after a file round trip.
import Foundation
import LookalikeFormats
import LookalikeIndex
import LookalikeTestSupport
import XCTest

final class FaissShimTests: XCTestCase {
    func reference(_ a: [Float], _ b: [Float], _ metric: FaissMetric) -> Double {
        metric == .l2
            ? zip(a, b).reduce(0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }
            : zip(a, b).reduce(0) { $0 + Double($1.0) * Double($1.1) }
    }

    func testHNSWDistancesMatchTheDefinition() throws {
        for dimension in [1, 7, 8, 15, 16, 17, 37, 384] {
            for metric in [FaissMetric.l2, .innerProduct] {
                let data = clusteredVectors(count: 300, dimension: dimension, clusters: 5, seed: UInt64(dimension))
                let index = try FaissIndex(spec: "HNSW16", dimension: dimension, metric: metric)
                try index.add(data.flatMap { $0 }, count: data.count)
                let path = FileManager.default.temporaryDirectory.appendingPathComponent("shim-\(UUID()).faiss").path
                defer { unlink(path) }
                try index.write(to: path)
                let reread = try FaissIndex.read(path: path, mmap: false)
                if ProcessInfo.processInfo.environment["LOOKALIKE_REFERENCE_DISTANCES"] == nil {
                    XCTAssertTrue(try index.info().fastDistances, "created HNSW uses the AVX2 storage")
                    XCTAssertTrue(try reread.info().fastDistances, "re-read HNSW uses the AVX2 storage")
                    XCTAssertTrue(try index.clone().info().fastDistances, "a clone does too")
                }
                for ix in [index, reread] {
                    let q = data[17].map { $0 + 0.01 }
                    let r = try ix.search(q, queryCount: 1, k: 5, effort: SearchEffort(efSearch: 64), selector: nil)
                    let all = data.map { reference(q, $0, metric) }
                    let best = metric == .l2 ? all.min()! : all.max()!
                    XCTAssertEqual(Double(r.distances[0]), best, accuracy: 1e-3 * max(1, abs(best)), "d=\(dimension) \(metric) best")
                    for (p, d) in zip(r.positions, r.distances) where p >= 0 {
                        let expected = reference(q, data[Int(p)], metric)
                        XCTAssertEqual(Double(d), expected, accuracy: 1e-3 * max(1, abs(expected)), "d=\(dimension) \(metric)")
                    }
                }
            }
        }
    }
}

extension FaissShimTests {
    /// PQ specs train without FAISS's polysemous codebook reordering (hours of software popcount
    /// at 4096-d on Debian's FAISS, and no search here uses it), also behind a pre-transform.
    func testPQSpecsTrainWithoutPolysemousReordering() throws {
        for spec in ["PQ8", "IVF16,PQ8", "OPQ8,IVF16,PQ8", "PCA16,PQ8"] {
            let index = try FaissIndex(spec: spec, dimension: 32, metric: .l2)
            XCTAssertFalse(try index.info().polysemousTraining, spec)
        }
        XCTAssertFalse(try FaissIndex(spec: "IVF16,PQ8np", dimension: 32, metric: .l2).info().polysemousTraining)
    }

    /// Exact scans read raw rows straight from indexes that keep them, and only from those.
    func testFlatVectorsOnlyWhereStoredAsGiven() throws {
        let data = clusteredVectors(count: 300, dimension: 16, clusters: 4, seed: 8)
        for (spec, raw) in [("Flat", true), ("HNSW16", true), ("IVF4,Flat", false), ("SQ8", false),
                            ("HNSW16,SQ8", false), ("PCA8,Flat", false)] {
            let index = try FaissIndex(spec: spec, dimension: 16, metric: .l2)
            if try !index.info().isTrained { try index.train(data.flatMap { $0 }, count: data.count) }
            try index.add(data.flatMap { $0 }, count: data.count)
            XCTAssertEqual(index.flatVectors != nil, raw, spec)
            if let rows = index.flatVectors {
                XCTAssertEqual(Array(UnsafeBufferPointer(start: rows + 16 * 42, count: 16)), data[42], spec)
            }
        }
    }
}

extension FaissShimTests {
    /// HNSW searched with a selector (tombstones, filters): only members come back, and they are
    /// the members' nearest (against brute force over the members), for a selector that keeps
    /// almost everything (a few deletes) and one that keeps a small share (a filter).
    func testHNSWWithASelectorReturnsTheNearestMembers() throws {
        let dimension = 32
        let raw = clusteredVectors(count: 4_000, dimension: dimension, clusters: 20, seed: 21)
        for metric in [FaissMetric.l2, .innerProduct] {
            // Inner product as the engine uses it: over unit vectors (cosine).
            let data = metric == .l2 ? raw : raw.map { VectorMath.normalized($0)! }
            let index = try FaissIndex(spec: "HNSW16", dimension: dimension, metric: metric)
            try index.setHNSW(efConstruction: 40, efSearch: 4_096)  // as the engine does (Docs/engine.md)
            try index.add(data.flatMap { $0 }, count: data.count)
            for (share, ef) in [(0.98, 64), (0.5, 128), (0.05, 1_024)] {
                var rng = SeededRandom(seed: UInt64(share * 100))
                let members = (0..<data.count).map { _ in rng.uniform() < share }
                var bitmap = [UInt8](repeating: 0, count: (data.count + 7) / 8)
                for (i, m) in members.enumerated() where m { bitmap[i >> 3] |= 1 << (i & 7) }
                var found = 0, wanted = 0
                for q in stride(from: 5, to: 4_000, by: 200) {
                    let query = data[q].map { $0 + 0.02 }
                    let r = try bitmap.withUnsafeBytes {
                        try index.search(query, queryCount: 1, k: 10, effort: SearchEffort(efSearch: ef), selector: $0)
                    }
                    let hits = r.positions.filter { $0 >= 0 }.map(Int.init)
                    XCTAssertTrue(hits.allSatisfy { members[$0] }, "\(metric) \(share): only members")
                    let truth = members.indices.filter { members[$0] }
                        .map { ($0, reference(query, data[$0], metric)) }
                        .sorted { metric == .l2 ? $0.1 < $1.1 : $0.1 > $1.1 }.prefix(10).map(\.0)
                    found += Set(hits).intersection(truth).count
                    wanted += truth.count
                }
                XCTAssertGreaterThanOrEqual(Double(found) / Double(wanted), 0.9, "\(metric) share \(share)")
            }
        }
    }
}
