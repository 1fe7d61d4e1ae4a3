// LiveSegment: what the mutable segments that index new items as they arrive share. A commit
// appends an item to the segment's `buffer` (exact rows); the engine's indexer then adds it to
// the segment's FAISS index in the background, leading positions first. Two kinds:
//   - GraphSegment: an HNSW graph with flat storage, linked by the shim's insertion loop;
//   - IVFSegment: a trained IVF index, its lists appended to.
// Invariants: 0 <= indexed <= count; position p of the index holds buffer position p; a search
// reads `indexed` once, takes the index's answer below it and scans the rest (the tail)
// exactly, so an acknowledged item is never missed. When full and fully indexed, the segment
// is sealed as it is: its index is written and becomes a SealedSegment's, with no rebuild.
// Threads: `append` from the commit thread; `indexPending` from the engine's indexer (one at a
// time); searches from any thread.
import Synchronization

public protocol LiveSegment: GrowingSegment, ANNSegment {
    /// Every appended row, with ids and live bits.
    var buffer: FlatSegment { get }
    var metric: FaissMetric { get }
    /// How many leading positions are in the index, and why indexing stopped if it did.
    var progress: IndexProgress { get }
    /// Adds buffer rows `from..<from + count` to the index (what differs between the kinds);
    /// a graph links them with `efConstruction` when given, else with its own.
    func addToIndex(from: Int, count: Int, threads: Int, efConstruction: Int?) throws
    /// The index's top k for one query, positions as the index numbers them.
    func indexSearch(_ query: UnsafePointer<Float>, k: Int, effort: SearchEffort,
                     members: UnsafeRawBufferPointer?) throws -> (distances: [Float], positions: [Int64])
    /// What the index holds so far (its vectors or lists, links, trained tables).
    func indexMemory() -> FaissMemory
}

/// A live segment's indexing state: `indexed` only grows, by one indexer at a time, and is
/// published (releasing) after the rows are in the index; `failure` is set once.
public final class IndexProgress: Sendable {
    private let count = Atomic<Int>(0)
    private let failure = Mutex<String?>(nil)
    public init() {}
    var indexed: Int { count.load(ordering: .acquiring) }
    var failureReason: String? { failure.withLock { $0 } }

    /// Runs `add(from, n)` for up to `limit` of the rows below `total` not yet indexed, then
    /// publishes them; an error is kept (no further adds) and rethrown.
    func advance(total: Int, limit: Int, _ add: (Int, Int) throws -> Void) throws -> Int {
        guard failureReason == nil else { return 0 }
        let from = count.load(ordering: .relaxed)
        let n = min(limit, total - from)
        guard n > 0 else { return 0 }
        do { try add(from, n) } catch {
            failure.withLock { $0 = "\(error)" }
            throw error
        }
        count.store(from + n, ordering: .releasing)
        return n
    }
}

extension LiveSegment {
    /// Leading positions in the index.
    public var indexed: Int { progress.indexed }
    /// Why indexing stopped, if it failed (the items stay searchable through the exact tail;
    /// the seal then builds the index anew from the rows).
    public var indexFailure: String? { progress.failureReason }
    /// Appended items not yet in the index.
    public var backlog: Int { count - indexed }

    /// Adds up to `limit` waiting rows to the index; returns how many. Indexer only.
    /// `efConstruction`: a cheaper beam than the graph's own for these rows (catching up).
    @discardableResult
    public func indexPending(limit: Int, threads: Int, efConstruction: Int? = nil) throws -> Int {
        try progress.advance(total: count, limit: limit) { from, n in
            try addToIndex(from: from, count: n, threads: threads, efConstruction: efConstruction)
        }
    }

    public func search(_ query: UnsafePointer<Float>, k: Int, effort: SearchEffort) throws -> [Neighbor] {
        try search(query, k: k, effort: effort, members: live.selector)
    }

    public func search(_ query: UnsafePointer<Float>, k: Int, effort: SearchEffort, selector: [UInt8]) throws
        -> [Neighbor]
    {
        try selector.withUnsafeBytes { try search(query, k: k, effort: effort, members: $0) }
    }

    private func search(_ query: UnsafePointer<Float>, k: Int, effort: SearchEffort,
                        members: UnsafeRawBufferPointer?) throws -> [Neighbor] {
        try searchIndexedAndTail(query, k: k, members: members) { k in
            try indexSearch(query, k: k, effort: effort, members: members)
        }
    }

    /// `indexSearch(k)` answers over the index (positions below `indexed` are kept); the
    /// tail is scanned in place. `members`: a bitmap over positions (nil: every live one).
    func searchIndexedAndTail(_ query: UnsafePointer<Float>, k: Int, members: UnsafeRawBufferPointer?,
                              indexSearch: (Int) throws -> (distances: [Float], positions: [Int64])) throws -> [Neighbor] {
        let n = indexed
        let total = count
        var top = TopK(k: k)
        if n > 0 {
            let result = try indexSearch(min(k, n))
            for (p, d) in zip(result.positions, result.distances) where p >= 0 && p < n && live.isLive(Int(p)) {
                top.push(Neighbor(id: buffer.id(at: Int(p)), distance: metric == .l2 ? d : -d))
            }
        }
        if total > n {
            let allowed: ((Int) -> Bool)? = members.map { members in
                let bits = members.bindMemory(to: UInt8.self)
                return { p in p >> 3 < bits.count && bits[p >> 3] & UInt8(1 << (p & 7)) != 0 }
            }
            top.push(contentsOf: buffer.exactSearch(query, k: k, range: n..<total, allowed: allowed))
        }
        return top.sorted()
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

    public func append(id: UInt64, key: String, vector: UnsafePointer<Float>) {
        buffer.append(id: id, key: key, vector: vector)
    }
    public var keyList: [String] { buffer.keyList }

    public func exactSearch(_ query: UnsafePointer<Float>, k: Int) -> [Neighbor]? {
        try? buffer.search(query, k: k, effort: SearchEffort())
    }

    public func exactSearch(_ query: UnsafePointer<Float>, k: Int, positions: [Int]) -> [Neighbor]? {
        buffer.exactSearch(query, k: k, positions: positions)
    }

    /// A bitmap over the whole capacity, so positions appended later read as non-members.
    public func selector(positions: [Int]) -> [UInt8]? {
        live.selector(positions: positions, size: capacity)
    }
}
