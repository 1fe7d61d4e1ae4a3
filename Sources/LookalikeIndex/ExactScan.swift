// ExactScan: brute-force k-NN over a block of contiguous rows, with OpenBLAS doing the dot
// products (Debian's FAISS has no AVX2 code paths; OpenBLAS does).
//
// Used by the mutable flat segment, by exact ("TRUTH") queries and by filtered scans of a
// filter's own rows (`scan(positions:)`): one implementation of "exact" for all of them. The
// batch job (new items' neighbours) scores many queries at once with `scanBatch` (sgemm).
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

    /// Queries per sgemm tile, and rows per tile: the tile of scores (256 × 1024 floats, 1 MiB)
    /// stays in cache while it is read back, so the kernel is bound by arithmetic, not memory.
    public static let batchQueryTile = 256
    /// A query group that accepts rows of every group (scanBatch).
    public static let anyGroup: Int32 = -1
    public static let batchRowTile = 1024

    /// Pushes every row into the TopK of every query, one sgemm per tile of queries × rows.
    /// - queries: queryCount × dimension, row-major, prepared as the index stores them;
    ///   querySquaredNorms required for L2.
    /// - rows: rowCount × dimension; rowSquaredNorms required for L2; rowIds their ids.
    /// - queryIds: a row with the query's own id is skipped (an item is not its own neighbour).
    /// - scratch: at least batchQueryTile × batchRowTile floats, owned by this call's thread.
    /// - queryGroups, rowGroups (both or neither): a row is a candidate for a query only when
    ///   their groups are equal, or the query's group is `anyGroup` (a category restriction).
    /// Single-threaded (BLAS runs one thread in Lookalike): callers split the queries.
    public static func scanBatch(
        queries: UnsafePointer<Float>, queryCount: Int, querySquaredNorms: UnsafePointer<Float>?,
        queryIds: UnsafePointer<UInt64>,
        rows: UnsafePointer<Float>, rowCount: Int, rowSquaredNorms: UnsafePointer<Float>?,
        rowIds: UnsafePointer<UInt64>,
        dimension d: Int, metric: FaissMetric, tops: UnsafeMutablePointer<TopK>,
        scratch: UnsafeMutablePointer<Float>,
        queryGroups: UnsafePointer<Int32>? = nil, rowGroups: UnsafePointer<Int32>? = nil
    ) {
        var q0 = 0
        while q0 < queryCount {
            let qn = min(batchQueryTile, queryCount - q0)
            var r0 = 0
            while r0 < rowCount {
                let rn = min(batchRowTile, rowCount - r0)
                // scratch[i][j] = queries[q0 + i] · rows[r0 + j]
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(qn), Int32(rn), Int32(d), 1,
                            queries + q0 * d, Int32(d), rows + r0 * d, Int32(d), 0, scratch, Int32(rn))
                for i in 0..<qn {
                    let q = q0 + i
                    let selfId = queryIds[q]
                    let group = queryGroups.map { $0[q] } ?? anyGroup
                    let qNorm = metric == .l2 ? querySquaredNorms![q] : 0
                    let line = scratch + i * rn
                    var threshold = tops[q].threshold
                    for j in 0..<rn {
                        let distance = metric == .l2
                            ? max(0, qNorm + rowSquaredNorms![r0 + j] - 2 * line[j]) : -line[j]
                        if distance > threshold { continue }
                        if group != anyGroup, rowGroups![r0 + j] != group { continue }
                        let id = rowIds[r0 + j]
                        if id == selfId { continue }
                        tops[q].push(Neighbor(id: id, distance: distance))
                        threshold = tops[q].threshold
                    }
                }
                r0 += rn
            }
            q0 += qn
        }
    }
}
