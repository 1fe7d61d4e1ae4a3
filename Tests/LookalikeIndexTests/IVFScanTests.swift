// The shim's IVF search (Sources/CFaiss/ivf_scan.cpp) against FAISS 1.7.3's own (the
// faissSearch switch): IVF-Flat, IVF-SQ8 and IVF-SQfp16 under L2 and inner product, at
// dimensions with kernel tails (13, 100), with no selector, a selector of deletes and a
// filter's, one query and a batch, on in-memory lists, mmapped lists and a clone; the same for
// IVF-PQ, whose coarse step only is the shim's (ivfpq_search.cpp); that it declines what it
// does not handle; and its recall against brute force.
import Foundation
import LookalikeFormats
import LookalikeIndex
import LookalikeTestSupport
import XCTest

final class IVFScanTests: XCTestCase {
    let avx = ProcessInfo.processInfo.environment["LOOKALIKE_REFERENCE_DISTANCES"] == nil

    func built(_ spec: String, _ data: [[Float]], _ metric: FaissMetric) throws -> FaissIndex {
        let index = try FaissIndex(spec: spec, dimension: data[0].count, metric: metric)
        try index.train(data.flatMap { $0 }, count: data.count)
        try index.add(data.flatMap { $0 }, count: data.count)
        return index
    }

    func bitmap(_ count: Int, _ keep: (Int) -> Bool) -> [UInt8] {
        var bits = [UInt8](repeating: 0, count: (count + 7) / 8)
        for i in 0..<count where keep(i) { bits[i >> 3] |= 1 << (i & 7) }
        return bits
    }

    func search(_ index: FaissIndex, _ queries: [Float], count: Int, k: Int, nprobe: Int, selector: [UInt8]?,
                faiss: Bool) throws -> (distances: [Float], positions: [Int64]) {
        try queries.withUnsafeBufferPointer { q in
            if let selector {
                return try selector.withUnsafeBytes {
                    try index.search(q.baseAddress!, queryCount: count, k: k, effort: SearchEffort(nprobe: nprobe),
                                     selector: $0, threads: 2, faissSearch: faiss)
                }
            }
            return try index.search(q.baseAddress!, queryCount: count, k: k, effort: SearchEffort(nprobe: nprobe),
                                    selector: nil, threads: 2, faissSearch: faiss)
        }
    }

    /// Every copy (built, mmapped, clone) of each spec, under L2 and inner product, with no
    /// selector, deletes and a filter, nprobe 1 and 4, one query a call, a batch of 5 (split over
    /// 2 threads) and one of 25: the shim's path takes it and finds what FAISS's own search finds.
    func assertEqualsFAISSOwnSearch(_ specs: [String], dimension: Int, count: Int = 2_000,
                                    file: StaticString = #filePath, line: UInt = #line) throws {
        let k = 10
        let data = clusteredVectors(count: count, dimension: dimension, clusters: 24, seed: UInt64(dimension))
        let queries = clusteredVectors(count: 25, dimension: dimension, clusters: 24, seed: UInt64(dimension) + 50)
        let deletes = bitmap(data.count) { $0 % 7 != 3 }
        let filter = bitmap(data.count) { ($0 * 2_654_435_761) % 100 < 15 }
        for spec in specs {
            for metric in [FaissMetric.l2, .innerProduct] {
                let index = try built(spec, data, metric)
                let path = FileManager.default.temporaryDirectory.appendingPathComponent("ivf-\(UUID()).faiss").path
                defer { unlink(path) }
                try index.write(to: path)
                let copies = [("built", index), ("mmapped", try FaissIndex.read(path: path, mmap: true)),
                              ("clone", try index.clone())]
                for (name, ix) in copies {
                    XCTAssertEqual(try ix.info().fastDistances, avx, "\(spec) \(name): the shim's path takes it", file: file, line: line)
                    for (selectorName, selector) in [("none", nil), ("deletes", deletes), ("filter", filter)] as [(String, [UInt8]?)] {
                        for nprobe in [1, 4] {
                            let what = "\(spec) d=\(dimension) \(metric) \(name) selector=\(selectorName) nprobe=\(nprobe)"
                            // One query per call (the engine's path), then one batch (FAISS's BLAS coarse step).
                            var ours: (distances: [Float], positions: [Int64]) = ([], [])
                            for q in 0..<queries.count {
                                let r = try search(ix, queries[q], count: 1, k: k, nprobe: nprobe, selector: selector, faiss: false)
                                ours.distances += r.distances
                                ours.positions += r.positions
                            }
                            let flat = queries.flatMap { $0 }
                            let batch = try search(ix, flat, count: queries.count, k: k, nprobe: nprobe, selector: selector, faiss: false)
                            let theirs = try search(ix, flat, count: queries.count, k: k, nprobe: nprobe, selector: selector, faiss: true)
                            var small = try search(ix, Array(flat[..<(5 * dimension)]), count: 5, k: k, nprobe: nprobe, selector: selector, faiss: false)
                            small.distances += ours.distances[(5 * k)...]
                            small.positions += ours.positions[(5 * k)...]
                            for (label, r) in [("single", ours), ("batch of 5", small), ("batch", batch)] {
                                XCTAssertEqual(r.positions, theirs.positions, what + " " + label + ": same positions", file: file, line: line)
                                for (a, b) in zip(r.distances, theirs.distances) where b.isFinite && abs(b) < 1e30 {
                                    XCTAssertEqual(a, b, accuracy: 1e-4 * max(1, abs(b)), what + " " + label, file: file, line: line)
                                }
                            }
                            if let selector {
                                for p in ours.positions where p >= 0 {
                                    XCTAssertTrue(selector[Int(p) >> 3] & (1 << (Int(p) & 7)) != 0, what + ": members only", file: file, line: line)
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    func testFastPathEqualsFAISSOwnSearch() throws {
        for dimension in [13, 100] {
            try assertEqualsFAISSOwnSearch(["IVF16,Flat", "IVF16,SQ8", "IVF16,SQfp16"], dimension: dimension)
        }
    }

    /// IVF-PQ: the shim's coarse step, FAISS's own list scan (ivfpq_search.cpp). Dimensions
    /// whose coarse kernels have tails (13: 8 + 5; 100: 6 x 16 + 4), 4- and 8-bit codes (10,000
    /// items for 8 bits: FAISS's k-means warns below 39 points a centroid).
    func testPQCoarseStepEqualsFAISSOwnSearch() throws {
        try assertEqualsFAISSOwnSearch(["IVF16,PQ13x4"], dimension: 13)
        try assertEqualsFAISSOwnSearch(["IVF16,PQ10x4"], dimension: 100)
        try assertEqualsFAISSOwnSearch(["IVF16,PQ20"], dimension: 100, count: 10_000)
    }

    /// What the shim does not copy (a pre-transform, 4-bit SQ, PQ behind OPQ) is left to FAISS.
    func testOtherIVFTypesAreLeftToFAISS() throws {
        let data = clusteredVectors(count: 2_000, dimension: 16, clusters: 8, seed: 4)
        for spec in ["PCA8,IVF8,Flat", "IVF8,SQ4", "OPQ4,IVF8,PQ4x4"] {
            let index = try built(spec, data, .l2)
            XCTAssertFalse(try index.info().fastDistances, spec)
            let r = try search(index, data[5], count: 1, k: 5, nprobe: 2, selector: nil, faiss: false)
            XCTAssertEqual(r.positions.count, 5, spec)
            XCTAssertTrue(r.positions.contains(5), "\(spec): the query's own vector is found")
        }
    }

    /// Recall@10 against brute force in Double: every list probed, IVF-Flat is exact and SQ
    /// loses what 8 bits lose, PQ24 (2 dimensions a byte) more (0.85 L2, 0.78 IP when written);
    /// a few lists probed, the shim's path finds what FAISS's does.
    func testRecallAgainstBruteForce() throws {
        let dimension = 48, k = 10
        let data = clusteredVectors(count: 5_000, dimension: dimension, clusters: 40, seed: 9)
        let queries = clusteredVectors(count: 40, dimension: dimension, clusters: 40, seed: 9 + 31)
        for metric in [FaissMetric.l2, .innerProduct] {
            let truth: [Set<Int64>] = queries.map { q in
                let scored = data.indices.map { i -> (Int64, Double) in
                    var dot = 0.0, l2 = 0.0
                    for j in 0..<dimension {
                        dot += Double(q[j]) * Double(data[i][j])
                        l2 += Double(q[j] - data[i][j]) * Double(q[j] - data[i][j])
                    }
                    return (Int64(i), metric == .l2 ? l2 : -dot)
                }
                return Set(scored.sorted { $0.1 < $1.1 }.prefix(k).map(\.0))
            }
            for (spec, exhaustive) in [("IVF32,Flat", 0.99), ("IVF32,SQ8", 0.85), ("IVF32,PQ24", 0.7)] {
                let index = try built(spec, data, metric)
                func recall(_ nprobe: Int, faiss: Bool) throws -> Double {
                    try queries.indices.reduce(0.0) { sum, q in
                        let r = try search(index, queries[q], count: 1, k: k, nprobe: nprobe, selector: nil, faiss: faiss)
                        return sum + Double(Set(r.positions).intersection(truth[q]).count) / Double(k)
                    } / Double(queries.count)
                }
                XCTAssertGreaterThanOrEqual(try recall(32, faiss: false), exhaustive, "\(spec) \(metric) every list")
                XCTAssertEqual(try recall(4, faiss: false), try recall(4, faiss: true), accuracy: 1e-9, "\(spec) \(metric) nprobe 4")
                XCTAssertGreaterThan(try recall(4, faiss: false), 0.5, "\(spec) \(metric) nprobe 4")
            }
        }
    }
}
