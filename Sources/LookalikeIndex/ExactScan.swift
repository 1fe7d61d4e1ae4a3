// ExactScan: brute-force k-NN over a block of contiguous rows, with OpenBLAS doing the dot
// products (Debian's FAISS has no AVX2 code paths; OpenBLAS does).
//
// Used by the mutable flat segment, by exact ("TRUTH") queries and by filtered scans of a
// filter's own rows (`scan(positions:)`): one implementation of "exact" for all of them.
// Threads: stateless; callers pass rows that nobody writes during the call.
import CBLAS

public enum ExactScan {
    /// Rows scored per BLAS call: bounds the scratch buffer, keeps it in cache.
    static let chunkRows = 4096

    /// Pushes the rows [0, rowCount) into `top`.
    /// - rows: rowCount × dimension floats, row-major.
    /// - squaredNorms: per row, required for L2 (distance = |x|² − 2x·q + |q|²).
    /// - idOf: the id for a row; `isLive`: whether a row may be returned.
    public static func scan(
        rows: UnsafePointer<Float>, rowCount: Int, dimension: Int,
        squaredNorms: UnsafePointer<Float>?, metric: FaissMetric,
        query: UnsafePointer<Float>, into top: inout TopK,
        idOf: (Int) -> UInt64, isLive: ((Int) -> Bool)?
    ) {
        guard rowCount > 0, top.k > 0 else { return }
        let queryNorm = metric == .l2 ? VectorMath.squaredNorm(query, count: dimension) : 0
        let scratchCount = min(chunkRows, rowCount)
        let scores = UnsafeMutablePointer<Float>.allocate(capacity: scratchCount)
        defer { scores.deallocate() }
        var start = 0
        while start < rowCount {
            let n = min(chunkRows, rowCount - start)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(n), Int32(dimension), 1,
                        rows + start * dimension, Int32(dimension), query, 1, 0, scores, 1)
            for i in 0..<n {
                let row = start + i
                let distance: Float
                if metric == .l2 {
                    distance = max(0, squaredNorms![row] - 2 * scores[i] + queryNorm)
                } else {
                    distance = -scores[i]
                }
                if distance > top.threshold { continue }
                if let isLive, !isLive(row) { continue }
                top.push(Neighbor(id: idOf(row), distance: distance))
            }
            start += n
        }
    }

    /// Pushes the rows at `positions` (ascending or not) into `top`: rows are gathered into a
    /// block and scored with one BLAS call per block, so a filter's few rows cost only their
    /// own dot products, however many rows the segment holds.
    public static func scan(
        positions: [Int], rows: UnsafePointer<Float>, dimension: Int,
        squaredNorms: UnsafePointer<Float>?, metric: FaissMetric,
        query: UnsafePointer<Float>, into top: inout TopK,
        idOf: (Int) -> UInt64, isLive: ((Int) -> Bool)?
    ) {
        guard !positions.isEmpty, top.k > 0 else { return }
        let block = min(256, positions.count)
        let gathered = UnsafeMutablePointer<Float>.allocate(capacity: block * dimension)
        let picked = UnsafeMutablePointer<Int>.allocate(capacity: block)
        defer { gathered.deallocate(); picked.deallocate() }
        var next = 0
        while next < positions.count {
            var n = 0
            while n < block && next < positions.count {
                let p = positions[next]
                next += 1
                if let isLive, !isLive(p) { continue }
                (gathered + n * dimension).update(from: rows + p * dimension, count: dimension)
                picked[n] = p
                n += 1
            }
            guard n > 0 else { continue }
            var gatheredNorms = [Float](repeating: 0, count: metric == .l2 ? n : 0)
            if metric == .l2 { for i in 0..<n { gatheredNorms[i] = squaredNorms![picked[i]] } }
            gatheredNorms.withUnsafeBufferPointer { g in
                scan(rows: gathered, rowCount: n, dimension: dimension, squaredNorms: g.baseAddress,
                     metric: metric, query: query, into: &top, idOf: { idOf(picked[$0]) }, isLive: nil)
            }
        }
    }
}
