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
        add(id: id) { row in
            guard bytes.count == row.count else { return bytes.count }
            row.copyMemory(from: bytes)
            return bytes.count
        }
    }

    /// Adds one row that `fill` writes straight into the block's next slot (`dimension` × 4
    /// bytes), returning the record's size, or nil when there is none: so a reader copies a
    /// stored vector once, into its row (CollectionStore.readVector). A record of another size
    /// (not written) is skipped (false). The block must not be full.
    @discardableResult
    mutating func add(id: UInt64, fill: (UnsafeMutableRawBufferPointer) throws -> Int?) rethrows -> Bool {
        let d = dimension
        let slot = count
        let metric = self.metric
        var norm: Float = 0
        let filled = try rows.withUnsafeMutableBufferPointer { r -> Bool in
            let row = UnsafeMutableBufferPointer(rebasing: r[(slot * d)..<((slot + 1) * d)])
            guard try fill(UnsafeMutableRawBufferPointer(row)) == d * 4 else { return false }
            if metric == .cosine { VectorMath.normalize(row) }
            if metric == .l2 { norm = VectorMath.squaredNorm(row.baseAddress!, count: d) }
            return true
        }
        guard filled else { return false }
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
        block = StoredBlock(dimension: dimension, metric: metric, capacity: Self.blockRows(dimension: dimension))
    }

    /// Rows scored per BLAS call: a block of about 256 KiB (16 to 1,024 rows), so the rows just
    /// copied in are still in the cache when they are scored. (It was 1,024 rows at every
    /// dimension: 16 MiB zeroed per scan at 4096-d, and read back from memory.)
    static func blockRows(dimension: Int) -> Int {
        max(16, min(1024, (256 << 10) / (4 * max(1, dimension))))
    }

    /// Adds one stored vector; a record of the wrong size is skipped.
    mutating func add(id: UInt64, bytes: UnsafeRawBufferPointer) {
        block.add(id: id, bytes: bytes)
        if block.isFull { flush() }
    }

    /// Adds one stored vector that `fill` writes into its row (StoredBlock.add(id:fill:)).
    mutating func add(id: UInt64, fill: (UnsafeMutableRawBufferPointer) throws -> Int?) rethrows {
        try block.add(id: id, fill: fill)
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
