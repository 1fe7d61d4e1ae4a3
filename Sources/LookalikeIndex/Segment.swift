// Segments: the searchable pieces of a collection. A collection is a list of segments, each
// holding a contiguous, ascending run of ids (see Docs/architecture.md):
//   - FlatSegment: the mutable exact segment new items land in (and, once full, "frozen" while
//     its sealed replacement is built);
//   - SealedSegment: an immutable FAISS index of the collection's type, loaded from a file.
//
// Invariants: within a segment, ids ascend with position; a position's live bit only ever goes
// from set to clear; a published segment's FAISS index is never mutated.
// Threads: FlatSegment has one appender (the engine's commit thread) and any number of
// concurrent searchers, without locks: rows are written before `count` is published with
// release ordering, and capacity is fixed so rows never move. Deletes may come from any thread
// (LiveBitmap is atomic). SealedSegment is read-only apart from its LiveBitmap.
import Synchronization

public protocol Segment: AnyObject, Sendable {
    var dimension: Int { get }
    /// Positions in use (live or dead).
    var count: Int { get }
    var live: LiveBitmap { get }
    func id(at position: Int) -> UInt64
    func position(of id: UInt64) -> Int?
    /// Up to k live neighbours, closest first, distances as in `Neighbor`.
    func search(_ query: UnsafePointer<Float>, k: Int, effort: SearchEffort) throws -> [Neighbor]
    /// Exact top-k over the live items at `positions` only (a filter's members), read from
    /// the segment's own rows; nil when it does not keep its vectors as given (SQ, PQ, IVF).
    func exactSearch(_ query: UnsafePointer<Float>, k: Int, positions: [Int]) -> [Neighbor]?
    /// What it keeps in memory, by component (SegmentMemory.swift).
    func memoryUsage() -> MemoryUsage
}

/// A segment new items are appended to: the mutable segment, or one frozen while it waits for
/// its seal. One appender (the commit thread).
public protocol GrowingSegment: Segment {
    var capacity: Int { get }
    var isFull: Bool { get }
    /// The ids of positions 0..<count, in order.
    var idList: [UInt64] { get }
    /// Appends one vector (normalised for cosine) of the item `key`; not full, and `id` above
    /// every id here.
    func append(id: UInt64, key: String, vector: UnsafePointer<Float>)
    /// The keys of positions 0..<count, in order (what the seal writes as the segment's keys).
    var keyList: [String] { get }
}

/// A segment searched through a FAISS index (sealed, or the mutable graph): what the planners
/// of Search.swift and FilteredSearch.swift need besides `Segment`.
public protocol ANNSegment: Segment {
    var index: FaissIndex { get }
    var info: FaissInfo { get }
    /// The vectors as stored, when the index keeps them as given (exact scans read them).
    var rows: UnsafePointer<Float>? { get }
    /// Exact top-k over every live item; nil when the segment does not keep raw rows.
    func exactSearch(_ query: UnsafePointer<Float>, k: Int) -> [Neighbor]?
    /// A selector bitmap over the live items at `positions`; nil when none is live.
    func selector(positions: [Int]) -> [UInt8]?
    /// Approximate top-k among the items the selector allows.
    func search(_ query: UnsafePointer<Float>, k: Int, effort: SearchEffort, selector: [UInt8]) throws -> [Neighbor]
}

extension Segment {
    public var liveCount: Int { count - live.deadCount }

    /// Tombstones an id held here; returns false if it is not here or already dead.
    @discardableResult
    public func markDeleted(id: UInt64) -> Bool {
        guard let p = position(of: id) else { return false }
        return live.clear(p)
    }

    public var firstId: UInt64? { count > 0 ? id(at: 0) : nil }
    public var lastId: UInt64? { count > 0 ? id(at: count - 1) : nil }
}

/// Binary search for an id in ascending ids; nil if absent.
@inline(__always)
func positionOf(_ id: UInt64, in ids: UnsafePointer<UInt64>, count: Int) -> Int? {
    var lo = 0, hi = count
    while lo < hi {
        let mid = (lo + hi) >> 1
        if ids[mid] < id { lo = mid + 1 } else { hi = mid }
    }
    return lo < count && ids[lo] == id ? lo : nil
}

public final class FlatSegment: GrowingSegment, @unchecked Sendable {
    public let dimension: Int
    public let capacity: Int
    public let metric: FaissMetric
    public let live: LiveBitmap
    let rows: UnsafeMutablePointer<Float>
    let norms: UnsafeMutablePointer<Float>
    let ids: UnsafeMutablePointer<UInt64>
    private let published = Atomic<Int>(0)
    /// The keys appended, for the seal (searches read keys of growing segments from LMDB).
    private let keys = Mutex<[String]>([])
    /// Heap bytes of `keys`: a String each, and the UTF-8 of keys too long to be stored inline.
    private let keyHeapBytes = Atomic<Int>(0)
    var keyBytes: Int { keyHeapBytes.load(ordering: .relaxed) }

    public init(dimension: Int, capacity: Int, metric: FaissMetric) {
        require(capacity > 0 && dimension > 0, "a segment needs a capacity and a dimension")
        self.dimension = dimension
        self.capacity = capacity
        self.metric = metric
        // Untouched pages of these buffers cost no memory until rows are written.
        rows = .allocate(capacity: capacity * dimension)
        norms = .allocate(capacity: capacity)
        ids = .allocate(capacity: capacity)
        live = LiveBitmap(capacity: capacity)
    }

    deinit {
        rows.deallocate()
        norms.deallocate()
        ids.deallocate()
    }

    public var count: Int { published.load(ordering: .acquiring) }
    public var isFull: Bool { count >= capacity }
    public var freeSlots: Int { capacity - count }

    public func id(at position: Int) -> UInt64 { ids[position] }

    public func position(of id: UInt64) -> Int? {
        positionOf(id, in: ids, count: count)
    }

    /// Appends one vector (already normalised for cosine). Single appender only.
    /// Precondition: not full, and `id` larger than every id here.
    public func append(id: UInt64, key: String, vector: UnsafePointer<Float>) {
        keys.withLock { $0.append(key) }
        let utf8 = key.utf8.count
        keyHeapBytes.add(16 + (utf8 > 15 ? utf8 + 32 : 0), ordering: .relaxed)
        let n = published.load(ordering: .relaxed)
        require(n < capacity, "append to a full segment")
        require(n == 0 || ids[n - 1] < id, "ids must ascend")
        (rows + n * dimension).update(from: vector, count: dimension)
        norms[n] = metric == .l2 ? VectorMath.squaredNorm(vector, count: dimension) : 0
        ids[n] = id
        live.setLive(upTo: n + 1)
        published.store(n + 1, ordering: .releasing)
    }

    /// The first `count` rows, contiguous: what sealing feeds to FAISS.
    public var vectors: UnsafePointer<Float> { UnsafePointer(rows) }
    public var idList: [UInt64] { Array(UnsafeBufferPointer(start: ids, count: count)) }
    public var keyList: [String] { keys.withLock { Array($0.prefix(count)) } }

    public func search(_ query: UnsafePointer<Float>, k: Int, effort: SearchEffort) throws
        -> [Neighbor]
    {
        var top = TopK(k: k)
        let n = count
        let live = self.live
        let hasDead = live.deadCount > 0
        ExactScan.scan(
            rows: rows, rowCount: n, dimension: dimension, squaredNorms: norms, metric: metric,
            query: query, into: &top, idOf: { self.ids[$0] },
            isLive: hasDead ? { live.isLive($0) } : nil)
        return top.sorted()
    }

    /// Exact top-k over the live items at positions `range`, scanned in place (a graph's
    /// unlinked tail is contiguous: gathering its rows first would copy each one per query).
    /// `allowed`, if given, is asked only of the candidates that would enter the top k.
    public func exactSearch(_ query: UnsafePointer<Float>, k: Int, range: Range<Int>,
                            allowed: ((Int) -> Bool)? = nil) -> [Neighbor] {
        var top = TopK(k: k)
        let live = self.live, lo = range.lowerBound, ids = self.ids
        let hasDead = live.deadCount > 0
        let accept: ((Int) -> Bool)? = switch (hasDead, allowed) {
        case (false, nil): nil
        case (true, nil): { live.isLive(lo + $0) }
        case (false, let allowed?): { allowed(lo + $0) }
        case (true, let allowed?): { live.isLive(lo + $0) && allowed(lo + $0) }
        }
        ExactScan.scan(
            rows: rows + lo * dimension, rowCount: range.count, dimension: dimension,
            squaredNorms: norms + lo, metric: metric, query: query, into: &top,
            idOf: { ids[lo + $0] }, isLive: accept)
        return top.sorted()
    }

    public func exactSearch(_ query: UnsafePointer<Float>, k: Int, positions: [Int]) -> [Neighbor]? {
        var top = TopK(k: k)
        let live = self.live
        ExactScan.scan(positions: positions, rows: rows, dimension: dimension, squaredNorms: norms,
                       metric: metric, query: query, into: &top, idOf: { self.ids[$0] },
                       isLive: { live.isLive($0) })
        return top.sorted()
    }
}

public final class SealedSegment: ANNSegment, @unchecked Sendable {
    public let index: FaissIndex
    public let dimension: Int
    public let live: LiveBitmap
    public let metric: FaissMetric
    private let ids: [UInt64]
    /// The name under which its files are stored ("seg-000001"), as the manifest records it.
    public let name: String
    public let info: FaissInfo
    /// The vectors as stored (unit length for cosine), when the index keeps them as they are;
    /// then exact scans read them here with OpenBLAS. Nil for compressed or transformed indexes.
    public let rows: UnsafePointer<Float>?
    /// Squared norms of `rows`, for L2 exact scans.
    private let norms: [Float]
    var normsCount: Int { norms.count }
    /// The keys of its positions (KeyTable.swift); nil only until recovery attaches them to a
    /// segment written before keys files existed. Set before the segment is published.
    public private(set) nonisolated(unsafe) var keys: KeyTable?

    /// Attaches the keys table (recovery and the seal, before the segment is published).
    public func attach(keys: KeyTable) {
        require(keys.count == ids.count, "a key per position")
        self.keys = keys
    }

    /// Wraps a fully built index whose position i holds ids[i]; ids must ascend.
    public init(name: String, index: FaissIndex, ids: [UInt64], metric: FaissMetric) throws {
        let info = try index.info()
        guard info.count == ids.count else {
            throw IndexError.corrupt("\(name): index holds \(info.count) vectors, id list \(ids.count)")
        }
        for i in ids.indices.dropFirst() where ids[i - 1] >= ids[i] {
            throw IndexError.corrupt("\(name): ids do not ascend at position \(i)")
        }
        self.name = name
        self.index = index
        self.ids = ids
        self.metric = metric
        self.info = info
        dimension = info.dimension
        live = LiveBitmap(capacity: ids.count)
        live.setLive(upTo: ids.count)
        rows = index.flatVectors
        if let rows, metric == .l2 {
            let d = info.dimension
            norms = (0..<ids.count).map { VectorMath.squaredNorm(rows + $0 * d, count: d) }
        } else {
            norms = []
        }
    }

    /// Exact top-k over the stored rows; nil when this segment does not keep raw rows.
    public func exactSearch(_ query: UnsafePointer<Float>, k: Int) -> [Neighbor]? {
        guard let rows else { return nil }
        var top = TopK(k: k)
        let live = self.live
        let hasDead = live.deadCount > 0
        norms.withUnsafeBufferPointer { n in
            ExactScan.scan(rows: rows, rowCount: count, dimension: dimension, squaredNorms: n.baseAddress,
                           metric: metric, query: query, into: &top, idOf: { self.ids[$0] },
                           isLive: hasDead ? { live.isLive($0) } : nil)
        }
        return top.sorted()
    }

    public func exactSearch(_ query: UnsafePointer<Float>, k: Int, positions: [Int]) -> [Neighbor]? {
        guard let rows else { return nil }
        var top = TopK(k: k)
        let live = self.live
        norms.withUnsafeBufferPointer { n in
            ExactScan.scan(positions: positions, rows: rows, dimension: dimension, squaredNorms: n.baseAddress,
                           metric: metric, query: query, into: &top, idOf: { self.ids[$0] },
                           isLive: { live.isLive($0) })
        }
        return top.sorted()
    }

    public var count: Int { ids.count }
    public func id(at position: Int) -> UInt64 { ids[position] }
    public func position(of id: UInt64) -> Int? {
        ids.withUnsafeBufferPointer { positionOf(id, in: $0.baseAddress!, count: $0.count) }
    }
    public var idList: [UInt64] { ids }

    public func search(_ query: UnsafePointer<Float>, k: Int, effort: SearchEffort) throws
        -> [Neighbor]
    {
        guard liveCount > 0 else { return [] }
        // A Flat index is an exact scan: OpenBLAS does it faster than FAISS's scalar loops.
        if info.kind == .flat, let exact = exactSearch(query, k: k) { return exact }
        return try indexSearch(query, k: k, effort: effort, selector: live.selector)
    }

    /// A FAISS selector bitmap over the items at `positions` that are live now (a filter's
    /// members), for `search(_:k:effort:selector:)`; nil when none is live.
    public func selector(positions: [Int]) -> [UInt8]? {
        live.selector(positions: positions, size: count)
    }

    /// Approximate top-k among the items a selector bitmap allows (a filter's members): FAISS
    /// skips every other item. Items that died since the bitmap was built are dropped from the
    /// results. The caller scales the effort to the filter's selectivity (FilteredSearch).
    public func search(_ query: UnsafePointer<Float>, k: Int, effort: SearchEffort, selector: [UInt8]) throws
        -> [Neighbor]
    {
        try selector.withUnsafeBytes { try indexSearch(query, k: k, effort: effort, selector: $0) }
    }

    private func indexSearch(_ query: UnsafePointer<Float>, k: Int, effort: SearchEffort,
                             selector: UnsafeRawBufferPointer?) throws -> [Neighbor] {
        let kk = min(k, count)
        let result = try index.search(
            query, queryCount: 1, k: kk, effort: effort, selector: selector)
        var out: [Neighbor] = []
        out.reserveCapacity(kk)
        for i in 0..<kk {
            let p = result.positions[i]
            guard p >= 0, p < ids.count, live.isLive(Int(p)) else { continue }
            let d = result.distances[i]
            out.append(Neighbor(id: ids[Int(p)], distance: metric == .l2 ? d : -d))
        }
        return out
    }
}
