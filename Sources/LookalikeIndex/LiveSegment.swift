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
public protocol LiveSegment: GrowingSegment, ANNSegment {
    /// Every appended row, with ids and live bits.
    var buffer: FlatSegment { get }
    var metric: FaissMetric { get }
    /// Leading positions in the index.
    var indexed: Int { get }
    /// Why indexing stopped, if it failed (the items stay searchable through the exact tail;
    /// the seal then builds the index anew from the rows).
    var indexFailure: String? { get }
    /// Adds up to `limit` waiting rows to the index; returns how many. Indexer only.
    func indexPending(limit: Int, threads: Int) throws -> Int
}

extension LiveSegment {
    /// Appended items not yet in the index.
    public var backlog: Int { count - indexed }

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
        var bitmap = [UInt8](repeating: 0, count: max(1, (capacity + 7) / 8))
        var any = false
        for p in positions where live.isLive(p) {
            bitmap[p >> 3] |= UInt8(1 << (p & 7))
            any = true
        }
        return any ? bitmap : nil
    }
}
