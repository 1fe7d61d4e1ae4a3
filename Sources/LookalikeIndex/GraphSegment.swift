// GraphSegment: the live segment (LiveSegment.swift) of an HNSW collection with flat storage
// ("HNSW32"): new items are linked into an HNSW graph within milliseconds, so a query searches
// them through the graph instead of scanning them.
//
// Owns: `buffer`, a FlatSegment of every appended row; `index`, an HNSW index reserved for
// `capacity` vectors, whose position p holds buffer position p; and `indexed`, how many leading
// positions are linked.
// Invariants (besides LiveSegment's): the graph is only ever appended to, by one indexer at a
// time, and never moves its storage (reserved); a search uses only graph positions below the
// `indexed` it read.
// Threads: `append` from the commit thread only; `indexPending` from the engine's indexer only
// (one at a time); searches from any thread, concurrently with both, without locks (the
// shim's insertion loop is safe against concurrent searches: lookalike_faiss.h).

public final class GraphSegment: LiveSegment, @unchecked Sendable {
    public let buffer: FlatSegment
    public let index: FaissIndex
    public let info: FaissInfo
    public let metric: FaissMetric
    public let progress = IndexProgress()

    /// A new empty graph of `spec` (an HNSW spec with flat storage) for `capacity` vectors.
    public init(spec: String, dimension: Int, capacity: Int, metric: FaissMetric,
                efConstruction: Int, maxEfSearch: Int) throws {
        let index = try FaissIndex(spec: spec, dimension: dimension, metric: metric)
        try index.setHNSW(efConstruction: efConstruction, efSearch: maxEfSearch)
        try index.reserveGraph(capacity: capacity)
        self.index = index
        info = try index.info()
        self.metric = metric
        buffer = FlatSegment(dimension: dimension, capacity: capacity, metric: metric)
    }

    public func addToIndex(from: Int, count: Int, threads: Int, efConstruction: Int?) throws {
        try index.insert(buffer.vectors + from * dimension, count: count, threads: threads, efConstruction: efConstruction)
    }

    /// Safe beside an insert: the shim reads the graph below its published count.
    public func indexMemory() -> FaissMemory { (try? index.memory()) ?? FaissMemory() }

    public func indexSearch(_ query: UnsafePointer<Float>, k: Int, effort: SearchEffort,
                            members: UnsafeRawBufferPointer?) throws -> (distances: [Float], positions: [Int64]) {
        try index.search(query, queryCount: 1, k: k, effort: effort, selector: members)
    }
}
