// GraphSegment: the mutable segment of an HNSW collection with flat storage ("HNSW32"): new
// items are appended here as they commit, and linked into an HNSW graph in the background
// within milliseconds, so a query searches them through the graph instead of scanning them.
//
// Owns: `buffer`, a FlatSegment of every appended row (ids, live bits, and the rows the exact
// tail is scanned from); `index`, an HNSW index reserved for `capacity` vectors, whose
// position p holds buffer position p; and `indexed`, how many leading positions are linked.
// Invariants:
//   - 0 <= indexed <= count <= capacity; positions below `indexed` are in the graph, the rest
//     (the tail, bounded by the engine's backpressure) are found by an exact scan;
//   - the graph is only ever appended to, by one indexer at a time, and never moves its
//     storage (reserved); a search reads `indexed` once and uses only graph positions below it.
// When full and fully indexed it is sealed as it is: its index is written to a file and
// becomes a SealedSegment's, with no rebuild (Sealing.swift).
// Threads: `append` from the commit thread only; `indexPending` from the engine's indexer only
// (one at a time); searches from any thread, concurrently with both, without locks (the
// shim's insertion loop is safe against concurrent searches: lookalike_faiss.h).
import Synchronization

public final class GraphSegment: GrowingSegment, ANNSegment, @unchecked Sendable {
    public let buffer: FlatSegment
    public let index: FaissIndex
    public let info: FaissInfo
    public let metric: FaissMetric
    private let indexedCount = Atomic<Int>(0)
    private let failure = Mutex<String?>(nil)

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

    public var dimension: Int { buffer.dimension }
    public var capacity: Int { buffer.capacity }
    public var count: Int { buffer.count }
    public var isFull: Bool { buffer.isFull }
    public var live: LiveBitmap { buffer.live }
    public func id(at position: Int) -> UInt64 { buffer.id(at: position) }
    public func position(of id: UInt64) -> Int? { buffer.position(of: id) }
    public var idList: [UInt64] { buffer.idList }
    public var rows: UnsafePointer<Float>? { buffer.vectors }

    /// Leading positions linked into the graph.
    public var indexed: Int { indexedCount.load(ordering: .acquiring) }
    /// Appended items not yet in the graph.
    public var backlog: Int { count - indexed }
    /// Why linking stopped, if it failed (the items stay searchable through the exact tail;
    /// the seal then builds the index anew from the rows).
    public var indexFailure: String? { failure.withLock { $0 } }

    public func append(id: UInt64, key: String, vector: UnsafePointer<Float>) {
        buffer.append(id: id, key: key, vector: vector)
    }
    public var keyList: [String] { buffer.keyList }

    /// Links up to `limit` waiting rows into the graph; returns how many. Indexer only.
    @discardableResult
    public func indexPending(limit: Int, threads: Int) throws -> Int {
        guard indexFailure == nil else { return 0 }
        let from = indexedCount.load(ordering: .relaxed)
        let n = min(limit, count - from)
        guard n > 0 else { return 0 }
        do {
            try index.insert(buffer.vectors + from * dimension, count: n, threads: threads)
        } catch {
            failure.withLock { $0 = "\(error)" }
            throw error
        }
        indexedCount.store(from + n, ordering: .releasing)
        return n
    }

    public func search(_ query: UnsafePointer<Float>, k: Int, effort: SearchEffort) throws -> [Neighbor] {
        try search(query, k: k, effort: effort, members: live.selector)
    }

    public func search(_ query: UnsafePointer<Float>, k: Int, effort: SearchEffort, selector: [UInt8]) throws
        -> [Neighbor]
    {
        try selector.withUnsafeBytes { try search(query, k: k, effort: effort, members: $0) }
    }

    /// The graph's answer over the linked positions plus an exact scan of the tail, merged.
    /// `members`: a bitmap over positions (nil: every live one).
    private func search(_ query: UnsafePointer<Float>, k: Int, effort: SearchEffort,
                        members: UnsafeRawBufferPointer?) throws -> [Neighbor] {
        let n = indexed
        let total = count
        var top = TopK(k: k)
        if n > 0 {
            let result = try index.search(query, queryCount: 1, k: min(k, n), effort: effort, selector: members)
            for (p, d) in zip(result.positions, result.distances) where p >= 0 && p < n && live.isLive(Int(p)) {
                top.push(Neighbor(id: buffer.id(at: Int(p)), distance: metric == .l2 ? d : -d))
            }
        }
        if total > n {
            let tail: [Int]
            if let members {
                let bits = members.bindMemory(to: UInt8.self)
                tail = (n..<total).filter { $0 >> 3 < bits.count && bits[$0 >> 3] & UInt8(1 << ($0 & 7)) != 0 }
            } else {
                tail = Array(n..<total)
            }
            if !tail.isEmpty { top.push(contentsOf: buffer.exactSearch(query, k: k, positions: tail) ?? []) }
        }
        return top.sorted()
    }

    public func exactSearch(_ query: UnsafePointer<Float>, k: Int) -> [Neighbor]? {
        try? buffer.search(query, k: k, effort: SearchEffort())
    }

    public func exactSearch(_ query: UnsafePointer<Float>, k: Int, positions: [Int]) -> [Neighbor]? {
        buffer.exactSearch(query, k: k, positions: positions)
    }

    /// A bitmap over the whole capacity, so positions appended later read as non-members.
    public func selector(positions: [Int]) -> [UInt8]? {
        var bitmap = [UInt8](repeating: 0, count: max(1, (capacity + 7) / 8))
        var any = false
        for p in positions where live.isLive(p) {
            bitmap[p >> 3] |= UInt8(1 << (p & 7))
            any = true
        }
        return any ? bitmap : nil
    }
}
