// Dataset: the vectors and attributes a benchmark runs on.
//
// Real: ../shared/data/debian-pkgs (63,436 × 384 MiniLM embeddings, category = Debian section,
// author = maintainer) when present. Generated otherwise: a seeded clustered set whose cluster
// sizes follow 1/rank (so categories, one per cluster, range from ~0.1% to ~17% of the items).
// Both get a `bucket` attribute: nested random subsets of 50%, 25%, 5%, 1%, 0.1% and 0.05%
// of the items, scattered over the vectors, so every selectivity from 0.05% to 50% is there.
import CBLAS
import Foundation
import LookalikeEngine
import LookalikeFormats

struct Dataset {
    var name: String
    var dimension: Int
    var metric: Metric
    /// Row-major, as given.
    var vectors: [Float]
    var keys: [String]
    var categories: [String]
    var buckets: [[String]]
    var authors: [String]

    var count: Int { keys.count }

    static let bucketShares: [(String, Double)] = [("p50", 0.5), ("p25", 0.25), ("p5", 0.05), ("p1", 0.01), ("p0.1", 0.001), ("p0.05", 0.0005)]

    static var sharedDirectory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("shared/data/debian-pkgs")
    }

    /// The real set if present (and not `generated`), else a generated one of `count` × `dimension`.
    static func load(generated: Bool, count: Int, dimension: Int, limit: Int?) throws -> Dataset {
        let npy = sharedDirectory.appendingPathComponent("vectors.f16.npy").path
        if !generated, FileManager.default.fileExists(atPath: npy) {
            return try real(npy: npy, meta: sharedDirectory.appendingPathComponent("meta.jsonl").path, limit: limit)
        }
        return generate(count: count, dimension: dimension, seed: 42)
    }

    static func real(npy: String, meta: String, limit: Int?) throws -> Dataset {
        let file = try VectorFile(path: npy)
        let n = min(file.count, limit ?? file.count)
        var vectors = [Float]()
        vectors.reserveCapacity(n * file.dimension)
        for i in 0..<n { vectors += try file.vector(at: i) }
        let metadata = try MetadataFile(path: meta, format: .jsonl)
        var keys: [String] = [], categories: [String] = [], authors: [String] = []
        while keys.count < n, let record = metadata.next() {
            let r = try record.get()
            keys.append(r["id"] as? String ?? "row\(keys.count)")
            categories.append(r["category"] as? String ?? "")
            authors.append(r["author"] as? String ?? "")
        }
        var rng = SeededRandom(seed: 7)
        return Dataset(name: "debian-pkgs \(n) × \(file.dimension) (real, cosine)", dimension: file.dimension, metric: .cosine,
                       vectors: vectors, keys: keys, categories: categories,
                       buckets: (0..<n).map { _ in bucketsFor(rng.uniform()) }, authors: authors)
    }

    /// `latent` 0: 200 Gaussian clusters in the full dimension (σ 0.6 around unit-variance
    /// centres), so every vector's noise is full-rank and neighbours differ by a hair at high
    /// dimension. `latent` L > 0: the same clusters drawn in an L-dimensional space and mapped
    /// into `d` by one random linear map, plus a small full-rank noise (σ 0.05): data of low
    /// intrinsic dimension, as image embeddings are, on which compressed codes can rank.
    static func generate(count n: Int, dimension d: Int, seed: UInt64, latent: Int = 0) -> Dataset {
        if latent > 0 { return generateLatent(count: n, dimension: d, seed: seed, latent: latent) }
        var rng = SeededRandom(seed: seed)
        let clusters = 200
        let cumulative = clusterShares(clusters)
        let centres = (0..<(clusters * d)).map { _ in rng.gaussian() }
        var vectors = [Float](repeating: 0, count: n * d)
        var categories: [String] = []
        for i in 0..<n {
            let u = rng.uniform()
            let c = cumulative.firstIndex { u <= $0 } ?? clusters - 1
            for j in 0..<d { vectors[i * d + j] = centres[c * d + j] + 0.6 * rng.gaussian() }
            categories.append("cat\(c)")
        }
        return Dataset(name: "generated \(n) × \(d) (200 clusters, 1/rank sizes, seed \(seed), cosine)", dimension: d,
                       metric: .cosine, vectors: vectors, keys: (0..<n).map { "item\($0)" }, categories: categories,
                       buckets: (0..<n).map { _ in bucketsFor(rng.uniform()) }, authors: (0..<n).map { "author\($0 % 997)" })
    }

    private static func generateLatent(count n: Int, dimension d: Int, seed: UInt64, latent l: Int) -> Dataset {
        var rng = SeededRandom(seed: seed)
        let clusters = 200
        let cumulative = clusterShares(clusters)
        let scale = 1 / Float(l).squareRoot()
        let map = (0..<(l * d)).map { _ in Float(rng.gaussian()) * scale }  // l rows of d
        let centres = (0..<(clusters * l)).map { _ in Float(rng.gaussian()) }
        var vectors = [Float](repeating: 0, count: n * d)
        var categories: [String] = []
        var z = [Float](repeating: 0, count: l)
        for i in 0..<n {
            let u = rng.uniform()
            let c = cumulative.firstIndex { u <= $0 } ?? clusters - 1
            for j in 0..<l { z[j] = centres[c * l + j] + 0.6 * Float(rng.gaussian()) }
            for j in 0..<d { vectors[i * d + j] = 0.05 * Float(rng.gaussian()) }
            vectors.withUnsafeMutableBufferPointer { v in
                map.withUnsafeBufferPointer { m in
                    let row = v.baseAddress! + i * d
                    for j in 0..<l {
                        let zj = z[j], mj = m.baseAddress! + j * d
                        for t in 0..<d { row[t] += zj * mj[t] }
                    }
                }
            }
            categories.append("cat\(c)")
        }
        return Dataset(name: "generated \(n) × \(d) (latent \(l)-d: 200 clusters, 1/rank sizes, seed \(seed), cosine)", dimension: d,
                       metric: .cosine, vectors: vectors, keys: (0..<n).map { "item\($0)" }, categories: categories,
                       buckets: (0..<n).map { _ in bucketsFor(rng.uniform()) }, authors: (0..<n).map { "author\($0 % 997)" })
    }

    /// The generators' cluster sizes: cluster c takes a share 1/(c+1) of the items (1/rank),
    /// as cumulative shares for drawing a cluster by one uniform number.
    private static func clusterShares(_ clusters: Int) -> [Double] {
        let weights = (0..<clusters).map { 1 / Double($0 + 1) }
        let total = weights.reduce(0, +)
        var cumulative: [Double] = []
        var sum = 0.0
        for w in weights { sum += w / total; cumulative.append(sum) }
        return cumulative
    }

    static func bucketsFor(_ u: Double) -> [String] {
        bucketShares.filter { u < $0.1 }.map(\.0)
    }

    func attributesJSON(_ i: Int) -> String {
        let object: [String: Any] = ["category": categories[i], "author": authors[i], "bucket": buckets[i]]
        return String(data: try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), encoding: .utf8)!
    }

    /// Rows as the index compares them: unit length for cosine.
    func prepared() -> [Float] {
        guard metric == .cosine else { return vectors }
        var out = vectors
        out.withUnsafeMutableBufferPointer { p in
            for i in 0..<count {
                let row = p.baseAddress! + i * dimension
                let norm = cblas_snrm2(Int32(dimension), row, 1)
                if norm > 0 { cblas_sscal(Int32(dimension), 1 / norm, row, 1) }
            }
        }
        return out
    }

    func row(_ i: Int) -> [Float] { Array(vectors[(i * dimension)..<((i + 1) * dimension)]) }
}

/// Exact similarities of one query against every prepared row (inner product; cosine rows are
/// unit length), the ground truth for tie-aware recall.
func exactScores(_ prepared: [Float], rows: Int, dimension: Int, query: [Float]) -> [Float] {
    var scores = [Float](repeating: 0, count: rows)
    var q = query
    let norm = cblas_snrm2(Int32(dimension), &q, 1)
    if norm > 0 { cblas_sscal(Int32(dimension), 1 / norm, &q, 1) }
    prepared.withUnsafeBufferPointer { m in
        cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(rows), Int32(dimension), 1, m.baseAddress!, Int32(dimension),
                    q, 1, 0, &scores, 1)
    }
    return scores
}

/// Tie-aware recall@k: a hit counts when its exact score reaches the k-th best exact score of
/// the allowed rows (so equal-scoring duplicates are interchangeable).
func tieAwareRecall(hitRows: [Int], scores: [Float], allowed: [Int], k: Int) -> Double {
    let want = min(k, allowed.count)
    guard want > 0 else { return 1 }
    var best = allowed.map { scores[$0] }
    best.sort(by: >)
    let kth = best[want - 1] - 1e-5
    let good = hitRows.prefix(want).filter { scores[$0] >= kth }.count
    return Double(good) / Double(want)
}

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

extension Dataset {
    /// Holds out `count` seeded-random rows as queries (returned as raw vectors); the rest, in
    /// their order, is the base the methods index. Queries are then never their own neighbour.
    func split(queries count: Int, seed: UInt64) -> (base: Dataset, queries: [[Float]]) {
        var rng = SeededRandom(seed: seed)
        var held = Set<Int>()
        while held.count < min(count, self.count / 2) { held.insert(Int(rng.next() % UInt64(self.count))) }
        let keep = (0..<self.count).filter { !held.contains($0) }
        var base = self
        base.vectors = []
        base.vectors.reserveCapacity(keep.count * dimension)
        for i in keep { base.vectors += vectors[(i * dimension)..<((i + 1) * dimension)] }
        base.keys = keep.map { keys[$0] }
        base.categories = keep.map { categories[$0] }
        base.buckets = keep.map { buckets[$0] }
        base.authors = keep.map { authors[$0] }
        return (base, held.sorted().map { row($0) })
    }
}

/// Exact top-k thresholds for a set of queries, for tie-aware recall at any scale: the k-th
/// best exact similarity per query, from chunked BLAS products over the prepared base (unit
/// rows for cosine; inner product otherwise). Only similarities (cosine/IP) are supported.
struct GroundTruth {
    let k: Int
    let dimension: Int
    /// Prepared queries, row-major.
    let queries: [Float]
    /// The k-th best similarity of each query.
    let kth: [Float]

    init(base prepared: [Float], rows: Int, queries raw: [[Float]], dimension d: Int, k: Int, normalise: Bool) {
        var q = raw.flatMap { $0 }
        let n = raw.count
        if normalise {
            q.withUnsafeMutableBufferPointer { p in
                for i in 0..<n {
                    let row = p.baseAddress! + i * d
                    let norm = cblas_snrm2(Int32(d), row, 1)
                    if norm > 0 { cblas_sscal(Int32(d), 1 / norm, row, 1) }
                }
            }
        }
        // best[i]: query i's k best so far, ascending.
        var best = [[Float]](repeating: [], count: n)
        let chunk = max(1, (1 << 26) / max(n, 1))  // ≤ 256 MB of scores at a time
        var scores = [Float](repeating: 0, count: n * min(chunk, rows))
        for start in stride(from: 0, to: rows, by: chunk) {
            let m = min(chunk, rows - start)
            prepared.withUnsafeBufferPointer { b in
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(m), Int32(d), 1, q, Int32(d),
                            b.baseAddress! + start * d, Int32(d), 0, &scores, Int32(m))
            }
            for i in 0..<n {
                var top = best[i]
                for j in 0..<m {
                    let s = scores[i * m + j]
                    if top.count < k {
                        top.insert(s, at: top.firstIndex { $0 > s } ?? top.count)
                    } else if s > top[0] {
                        top.removeFirst()
                        top.insert(s, at: top.firstIndex { $0 > s } ?? top.count)
                    }
                }
                best[i] = top
            }
        }
        self.k = k
        self.dimension = d
        self.queries = q
        self.kth = best.map { $0.first ?? -.infinity }
    }

    /// Tie-aware recall@k of one query's hits (base rows): a hit counts when its exact score
    /// reaches the k-th best (so equal-scoring duplicates are interchangeable).
    func recall(query i: Int, hits: [Int], base prepared: [Float]) -> Double {
        let good = hits.prefix(k).filter { r in
            guard r >= 0 else { return false }
            let s = prepared.withUnsafeBufferPointer { b in
                queries.withUnsafeBufferPointer { cblas_sdot(Int32(dimension), $0.baseAddress! + i * dimension, 1, b.baseAddress! + r * dimension, 1) }
            }
            return s >= kth[i] - 1e-5
        }.count
        return Double(good) / Double(k)
    }

    /// Mean recall over every query.
    func recall(_ hits: [[Int]], base prepared: [Float]) -> Double {
        hits.enumerated().reduce(0) { $0 + recall(query: $1.offset, hits: $1.element, base: prepared) } / Double(max(1, hits.count))
    }
}
