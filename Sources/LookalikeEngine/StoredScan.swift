// StoredScan: brute force over vectors read from LMDB (the source of truth), for what the
// indexes cannot answer exactly from their own rows: TRUTH over SQ/PQ/IVF segments, member
// scans of such segments, rescoring, and the new-items batch job (StoredBlock).
// Threads: values owned by one caller on one thread; LMDB bytes are copied before the read
// transaction that lent them ends.
import LookalikeIndex
import LookalikeStorage

/// Stored vectors (float32 bytes as written) gathered into a block of rows, prepared as the
/// index stores them: unit length for cosine, squared norms for L2. The one place that turns
/// stored bytes into rows to score (StoredVectorScan, the new-items batch job).
struct StoredBlock {
    let dimension: Int
    let metric: Metric
    let capacity: Int
    private(set) var rows: [Float]
    private(set) var norms: [Float]
    private(set) var ids: [UInt64]
    private(set) var count = 0

    init(dimension: Int, metric: Metric, capacity: Int) {
        self.dimension = dimension
        self.metric = metric
        self.capacity = capacity
        rows = [Float](repeating: 0, count: capacity * dimension)
        norms = [Float](repeating: 0, count: capacity)
        ids = [UInt64](repeating: 0, count: capacity)
    }

    var isFull: Bool { count == capacity }

    /// Adds one row; a record of the wrong size is skipped (false). The block must not be full.
    @discardableResult
    mutating func add(id: UInt64, bytes: UnsafeRawBufferPointer) -> Bool {
        let d = dimension
        guard bytes.count == d * 4 else { return false }
        let slot = count
        let metric = self.metric
        var norm: Float = 0
        rows.withUnsafeMutableBufferPointer { r in
            let row = UnsafeMutableBufferPointer(rebasing: r[(slot * d)..<((slot + 1) * d)])
            _ = bytes.copyBytes(to: row)
            if metric == .cosine { VectorMath.normalize(row) }
            if metric == .l2 { norm = VectorMath.squaredNorm(row.baseAddress!, count: d) }
        }
        norms[slot] = norm
        ids[slot] = id
        count += 1
        return true
    }

    mutating func removeAll() { count = 0 }
}

/// Brute force over vectors read from LMDB, chunk by chunk, scored with OpenBLAS.
struct StoredVectorScan {
    let query: UnsafePointer<Float>
    private(set) var top: TopK
    private var block: StoredBlock

    init(dimension: Int, metric: Metric, query: UnsafePointer<Float>, k: Int) {
        self.query = query
        top = TopK(k: k)
        block = StoredBlock(dimension: dimension, metric: metric, capacity: 1024)
    }

    /// Adds one stored vector; a record of the wrong size is skipped.
    mutating func add(id: UInt64, bytes: UnsafeRawBufferPointer) {
        block.add(id: id, bytes: bytes)
        if block.isFull { flush() }
    }

    /// The k closest of everything added, closest first.
    mutating func finish() -> [Neighbor] {
        flush()
        return top.sorted()
    }

    private mutating func flush() {
        guard block.count > 0 else { return }
        let (n, ids, d, metric, query) = (block.count, block.ids, block.dimension, block.metric, query)
        block.rows.withUnsafeBufferPointer { r in
            block.norms.withUnsafeBufferPointer { nb in
                ExactScan.scan(rows: r.baseAddress!, rowCount: n, dimension: d, squaredNorms: nb.baseAddress!,
                               metric: metric.faiss, query: query, into: &top, idOf: { ids[$0] }, isLive: nil)
            }
        }
        block.removeAll()
    }
}
