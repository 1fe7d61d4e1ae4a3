// ExactScan: brute-force k-NN over a block of contiguous rows, with OpenBLAS doing the dot
// products (Debian's FAISS has no AVX2 code paths; OpenBLAS does).
//
// Used by the mutable flat segment, by exact ("TRUTH") queries and, later, by filtered scans
// of small candidate sets: one implementation of "exact" for all of them.
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
}
