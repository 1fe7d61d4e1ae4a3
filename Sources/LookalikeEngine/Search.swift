// Search: top-k over every segment of a collection, merged, then keys (from the sealed segments'
// key tables) and attributes (from LMDB).
// Threads: any thread; searches take a snapshot of the segment list and run without locks.
import LookalikeIndex
import LookalikeStorage

public struct SearchRequest: Sendable {
    public enum Query: Sendable {
        case vector([Float])
        /// "More like this": the stored item's vector; the item itself is left out.
        case key(String)
        /// A user's history: the stored items' vectors combined into one query
        /// (Recommendations.swift); the items themselves are always left out.
        case history([String], HistoryWeighting)
    }
    public var query: Query
    public var k: Int
    /// HNSW effort; nil uses the collection's default.
    public var efSearch: Int?
    /// IVF lists to visit; nil uses the collection's default.
    public var nprobe: Int?
    /// Exact brute force over the stored vectors instead of the approximate index.
    public var exact: Bool
    public var withAttributes: Bool
    /// For `.key` queries: leave the item itself out ("more like this"). Redis's VSIM ELE
    /// keeps it (it scores 1).
    public var excludeQueryItem: Bool
    /// For filtered queries: let the planner choose (the default), or force a plan
    /// (benchmarks and tests compare them).
    public var filterPlan: FilterPlan = .automatic
    /// Re-rank COUNT × this many candidates with the exact vectors (Rescoring.swift); 0 = off;
    /// nil = the collection's default.
    public var rescore: Int? = nil

    public init(query: Query, k: Int = 10, efSearch: Int? = nil, nprobe: Int? = nil,
                exact: Bool = false, withAttributes: Bool = false, excludeQueryItem: Bool = true) {
        self.query = query
        self.k = k
        self.efSearch = efSearch
        self.nprobe = nprobe
        self.exact = exact
        self.withAttributes = withAttributes
        self.excludeQueryItem = excludeQueryItem
    }
}

public struct SearchHit: Sendable, Equatable {
    /// The item (for a view's hit, the item it belongs to: Views.swift).
    public var key: String
    public var id: UInt64
    /// Cosine similarity (cosine), inner product (ip), or Euclidean distance (l2).
    public var score: Float
    public var attributes: String?
    /// The view whose vector scored, when it was not the item's own.
    public var view: String? = nil
}

extension Collection {
    public func search(_ request: SearchRequest) throws -> [SearchHit] {
        try validate(request)
        return try unlimitedSearch(request)
    }

    /// Top-k among hits that satisfy `accept`, examining at most `maxCandidates` nearest items
    /// (nil: 100 × k, as Redis's FILTER-EF; 0: as many as needed). Candidates are taken in
    /// widening rounds, so a common filter costs little more than an unfiltered search. For
    /// filters without an indexed part; FilteredSearch plans the others.
    func search(_ request: SearchRequest, where accept: (SearchHit) -> Bool, maxCandidates: Int?) throws -> [SearchHit] {
        try validate(request)
        let total = try vectorCount()
        guard total > 0 else { return [] }
        let budget = maxCandidates == 0 ? total : min(total, max(request.k, maxCandidates ?? request.k * 100))
        var round = request
        round.withAttributes = true
        round.k = min(budget, max(request.k * 4, 64))
        while true {
            let hits = try unlimitedSearch(round)
            var matched = hits.filter(accept)
            if matched.count >= request.k || round.k >= budget || hits.count < round.k {
                matched = Array(matched.prefix(request.k))
                if !request.withAttributes { for i in matched.indices { matched[i].attributes = nil } }
                return matched
            }
            round.k = min(budget, round.k * 4)
        }
    }

    func validate(_ request: SearchRequest) throws {
        guard request.k >= 1, request.k <= engine.options.maxK else {
            throw EngineError.invalidArgument("COUNT must be between 1 and \(engine.options.maxK)")
        }
        if let e = request.efSearch, e < 1 { throw EngineError.invalidArgument("EF must be positive") }
        if let n = request.nprobe, n < 1 { throw EngineError.invalidArgument("NPROBE must be positive") }
        if let r = request.rescore, r < 0 || r > Self.maxOversampling {
            throw EngineError.invalidArgument("RESCORE must be from 1 to \(Self.maxOversampling) (or NORESCORE)")
        }
    }

    private func unlimitedSearch(_ request: SearchRequest) throws -> [SearchHit] {
        let (query, excluded) = try resolveQuery(request)
        let oversampling = oversampling(request)
        var wanted = (request.k + excluded.count) * max(1, oversampling)
        while true {
            var top = TopK(k: wanted)
            let neighbors = try query.withUnsafeBufferPointer { q in
                for segment in segmentsSnapshot() {
                    top.push(contentsOf: try search(segment, q.baseAddress!, k: wanted, request: request))
                }
                return oversampling > 0 ? try rescored(top.sorted(), query: q.baseAddress!) : top.sorted()
            }
            let found = try hits(for: neighbors, excluding: excluded, limit: request.k,
                                 withAttributes: request.withAttributes)
            // Short only when several of an item's views were among the nearest (or items went
            // away meanwhile): ask for more until k distinct items or the collection runs out.
            if found.count >= request.k || top.count < wanted { return found }
            wanted *= 4
        }
    }

    /// The query vector as the index wants it, and the keys to leave out of the results.
    func resolveQuery(_ request: SearchRequest) throws -> ([Float], Set<String>) {
        switch request.query {
        case .vector(let v):
            return (try queryVector(v), [])
        case .key(let key):
            guard let v = try vector(key: key) else { throw EngineError.keyNotFound(key) }
            return (try indexVector(v), request.excludeQueryItem ? [Views.split(key).item] : [])
        case .history(let keys, let weighting):
            return (try historyVector(keys, weighting), Set(keys.map { Views.split($0).item }))
        }
    }

    private func search(_ segment: any Segment, _ q: UnsafePointer<Float>, k: Int,
                        request: SearchRequest) throws -> [Neighbor] {
        guard let sealed = segment as? any ANNSegment else {
            return try segment.search(q, k: k, effort: SearchEffort())  // flat: exact already
        }
        if request.exact && sealed.info.kind != .flat {
            return try sealed.exactSearch(q, k: k) ?? exactSearchFromStore(sealed, q, k: k)
        }
        var effort = effort(for: sealed, k: k, request: request)
        var found = try wrapped { try sealed.search(q, k: k, effort: effort) }
        // Tombstones can starve a graph search: widen while it finds fewer than it could.
        let reachable = min(k, sealed.liveCount)
        while found.count < reachable && sealed.info.kind == .hnsw
            && effort.efSearch < engine.options.maxEfSearch
        {
            effort.efSearch = min(effort.efSearch * 4, engine.options.maxEfSearch)
            found = try wrapped { try sealed.search(q, k: k, effort: effort) }
        }
        if found.count < reachable { return try sealed.exactSearch(q, k: k) ?? exactSearchFromStore(sealed, q, k: k) }
        return found
    }

    func effort(for segment: any ANNSegment, k: Int, request: SearchRequest) -> SearchEffort {
        let ef = request.efSearch ?? definition.efSearch ?? 64
        let nlist = segment.info.nlist
        let nprobe = request.nprobe ?? definition.nprobe ?? max(1, nlist / 16)
        return SearchEffort(efSearch: min(max(ef, k), engine.options.maxEfSearch),
                            nprobe: min(max(1, nprobe), max(1, nlist)))
    }

    /// Brute force over a sealed segment's live vectors read from LMDB (the source of truth), for
    /// indexes that do not keep the vectors as given (SQ, PQ, IVF).
    func exactSearchFromStore(_ segment: any Segment, _ q: UnsafePointer<Float>, k: Int) throws -> [Neighbor] {
        guard let first = segment.firstId, let last = segment.lastId else { return [] }
        var scan = StoredVectorScan(dimension: definition.dimension, metric: definition.metric, query: q, k: k)
        try wrapped {
            try engine.environment.read { txn in
                try store.forEachVector(from: first, txn) { id, bytes in
                    guard id <= last else { return false }
                    if let p = segment.position(of: id), segment.live.isLive(p) { scan.add(id: id, bytes: bytes) }
                    return true
                }
            }
        }
        return scan.finish()
    }

    /// Turns neighbours (best first) into hits: each item once, at its best view's score
    /// (Views.swift); excluded items and ids removed after the search started are skipped.
    /// Keys of sealed items come from their segments' key tables (KeyTable.swift: no LMDB page
    /// is touched); LMDB is read, in one read transaction, only for attributes and for items
    /// still in a growing segment.
    func hits(for neighbors: [Neighbor], excluding excluded: Set<String>, limit: Int,
              withAttributes: Bool) throws -> [SearchHit] {
        let sealed = state.withLock { $0.sealed }
        // nil: ask LMDB; "": removed (dead in its segment).
        let known: [String?] = neighbors.map { n in
            guard !withAttributes, let seg = Self.sealedSegment(holding: n.id, in: sealed), let table = seg.keys,
                  let p = seg.position(of: n.id) else { return nil }
            return seg.live.isLive(p) ? table.key(at: p) : ""
        }
        func collect(_ record: (Int) throws -> ItemRecord?) rethrows -> [SearchHit] {
            var out: [SearchHit] = []
            var seen = Set<String>()
            for (i, n) in neighbors.enumerated() {
                guard out.count < limit else { break }
                guard let record = try record(i) else { continue }
                let (item, view) = Views.split(record.key)
                guard !excluded.contains(item), seen.insert(item).inserted else { continue }
                out.append(SearchHit(key: item, id: n.id, score: score(n.distance),
                                     attributes: record.attributes, view: view))
            }
            return out
        }
        let fromTables = { (i: Int) -> ItemRecord? in
            known[i].flatMap { $0.isEmpty ? nil : ItemRecord(key: $0, attributes: nil) }
        }
        if !known.contains(where: { $0 == nil }) { return collect(fromTables) }
        return try wrapped {
            try engine.environment.read { txn in
                try collect { i in
                    if known[i] != nil { return fromTables(i) }
                    let id = neighbors[i].id
                    return withAttributes ? try store.item(id, txn)
                        : try store.key(id, txn).map { ItemRecord(key: $0, attributes: nil) }
                }
            }
        }
    }

    /// The sealed segment whose id range holds `id` (they ascend and are disjoint), or nil.
    static func sealedSegment(holding id: UInt64, in sealed: [SealedSegment]) -> SealedSegment? {
        var lo = 0, hi = sealed.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if sealed[mid].lastId! < id { lo = mid + 1 } else { hi = mid }
        }
        guard lo < sealed.count, sealed[lo].firstId! <= id else { return nil }
        return sealed[lo]
    }

    /// The user-facing score of an internal distance (see Neighbor).
    func score(_ distance: Float) -> Float {
        switch definition.metric {
        case .l2: return max(0, distance).squareRoot()
        case .cosine, .ip: return -distance
        }
    }
}

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
