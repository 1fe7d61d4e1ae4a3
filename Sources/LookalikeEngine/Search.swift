// Search: what a search asks (SearchRequest) and returns (SearchHit), and how one segment is
// searched without a restriction (an ANN walk widened past tombstones, or exact). The request's
// path through the segments is QueryPlan.swift's; restricted segments are FilteredSearch.swift's.
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
    /// Only items whose attributes satisfy it (VSIM … FILTER).
    public var filter: FilterExpression? = nil
    /// Only items in a category (VSIM … CATEGORY).
    public var category: CategoryRestriction? = nil
    /// For a filter with no indexed part: the most nearest items examined (nil: 100 × k, as
    /// Redis's FILTER-EF; 0: as many as needed).
    public var filterCandidates: Int? = nil
    /// Only hits whose score passes it (cosine and IP: score ≥ it; L2: distance ≤ it), best
    /// first, with k as the cap: every item within the threshold that a search of that depth
    /// finds (with `exact`, every one).
    public var threshold: Float? = nil

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

/// A category restriction (VSIM … CATEGORY x | CATEGORY AUTO).
public enum CategoryRestriction: Sendable, Equatable {
    /// Items whose indexed `attribute` holds `value`.
    case value(String, attribute: String = "category")
    /// The query's category: a stored element's own (unless `predict`), else the predicted one;
    /// with `topP`, the most likely categories adding up to it share the k (CategorySearch.swift).
    case predicted(attribute: String = "category", topP: Double? = nil, predict: Bool = false)
}

/// The one restriction a plan (QueryPlan) knows: an indexed attribute's value. A `.predicted`
/// restriction becomes values before any plan is made (Collection.search), so no plan has a
/// case it cannot run.
struct CategoryValue: Equatable {
    var value: String
    var attribute: String
}

extension SearchRequest {
    /// This request within a category (an indexed attribute's value).
    public func inCategory(_ value: String, attribute: String = "category") -> SearchRequest {
        var r = self
        r.category = .value(value, attribute: attribute)
        return r
    }

    /// This request restricted by a filter; `candidates` as `filterCandidates`.
    public func filtered(_ filter: FilterExpression, candidates: Int? = nil) -> SearchRequest {
        var r = self
        r.filter = filter
        r.filterCandidates = candidates
        return r
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
    func validate(_ request: SearchRequest) throws {
        guard request.k >= 1, request.k <= engine.options.maxK else {
            throw EngineError.invalidArgument("COUNT must be between 1 and \(engine.options.maxK)")
        }
        if let e = request.efSearch, e < 1 { throw EngineError.invalidArgument("EF must be positive") }
        if let n = request.nprobe, n < 1 { throw EngineError.invalidArgument("NPROBE must be positive") }
        if let t = request.threshold, !t.isFinite { throw EngineError.invalidArgument("the threshold must be a finite number") }
        if let n = request.filterCandidates, n < 0 { throw EngineError.invalidArgument("FILTER-EF must not be negative") }
        if let r = request.rescore, r < 0 || r > Self.maxOversampling {
            throw EngineError.invalidArgument("RESCORE must be from 1 to \(Self.maxOversampling) (or NORESCORE)")
        }
    }

    /// The query vector as the index wants it, and the keys to leave out of the results.
    func resolveQuery(_ request: SearchRequest) throws -> ([Float], Set<String>) {
        switch request.query {
        case .vector(let v):
            return (try queryVector(v), [])
        case .key(let key):
            guard let v = try vector(key: key) else { throw EngineError.keyNotFound(key) }
            return (try preparedVector(v), request.excludeQueryItem ? [Views.split(key).item] : [])
        case .history(let keys, let weighting):
            return (try historyVector(keys, weighting), Set(keys.map { Views.split($0).item }))
        }
    }

    /// One segment's nearest `k`, unrestricted: the index's walk, widened while tombstones
    /// starve it, or exact (TRUTH, flat segments, or a walk that still came back short).
    func search(_ segment: any Segment, _ q: UnsafePointer<Float>, k: Int,
                request: SearchRequest, _ txn: Transaction) throws -> [Neighbor] {
        guard let sealed = segment as? any ANNSegment else {
            return try segment.search(q, k: k, effort: SearchEffort())  // flat: exact already
        }
        if request.exact && sealed.info.kind != .flat {
            return try sealed.exactSearch(q, k: k) ?? exactSearchFromStore(sealed, q, k: k, txn)
        }
        var effort = effort(for: sealed, k: k, request: request)
        var found = try wrapped { try sealed.search(q, k: k, effort: effort) }
        // Tombstones can starve a graph search, and short lists an IVF probe: widen while it
        // finds fewer than it could, before scanning everything.
        let reachable = min(k, sealed.liveCount)
        while found.count < reachable, let wider = widened(effort, sealed) {
            effort = wider
            found = try wrapped { try sealed.search(q, k: k, effort: effort) }
        }
        if found.count < reachable { return try sealed.exactSearch(q, k: k) ?? exactSearchFromStore(sealed, q, k: k, txn) }
        return found
    }

    /// The next, wider effort for a walk that came back short: efSearch ×4 for a graph, nprobe
    /// ×4 for IVF (a probe of lists holding fewer than k live items); nil at the bound (then
    /// the caller scans). Without the IVF step, a query whose nearest list is short would scan
    /// every vector of the segment from LMDB (1 query in 1,000 at nprobe 1 on debian-pkgs).
    func widened(_ effort: SearchEffort, _ segment: any ANNSegment) -> SearchEffort? {
        var e = effort
        switch segment.info.kind {
        case .hnsw where e.efSearch < engine.options.maxEfSearch:
            e.efSearch = min(e.efSearch * 4, engine.options.maxEfSearch)
        case .ivf where e.nprobe < segment.info.nlist:
            e.nprobe = min(e.nprobe * 4, segment.info.nlist)
        default:
            return nil
        }
        return e
    }

    /// IVF lists read per query when neither the query nor the definition says: nlist/16, and
    /// at least 64. Measured (Docs/sizing.md): nlist/16 gave recall@10 0.93–0.95 at 1,024 lists
    /// (1M × 128, 62k × 384) but 0.89–0.93 at 316 (19 lists, 100k × 128 and × 384), where 64
    /// gave 0.96–1.0.
    static func defaultNprobe(nlist: Int) -> Int { max(64, nlist / 16) }

    func effort(for segment: any ANNSegment, k: Int, request: SearchRequest) -> SearchEffort {
        let ef = request.efSearch ?? definition.efSearch ?? 64
        let nlist = segment.info.nlist
        let nprobe = request.nprobe ?? definition.nprobe ?? Self.defaultNprobe(nlist: nlist)
        return SearchEffort(efSearch: min(max(ef, k), engine.options.maxEfSearch),
                            nprobe: min(max(1, nprobe), max(1, nlist)))
    }

    /// Brute force over a sealed segment's live vectors read from LMDB (the source of truth), for
    /// indexes that do not keep the vectors as given (SQ, PQ, IVF).
    func exactSearchFromStore(_ segment: any Segment, _ q: UnsafePointer<Float>, k: Int, _ txn: Transaction) throws -> [Neighbor] {
        guard let first = segment.firstId, let last = segment.lastId else { return [] }
        var scan = StoredVectorScan(dimension: definition.dimension, metric: definition.metric, query: q, k: k)
        try store.forEachVector(from: first, txn) { id, bytes in
            guard id <= last else { return false }
            if let p = segment.position(of: id), segment.live.isLive(p) { scan.add(id: id, bytes: bytes) }
            return true
        }
        return scan.finish()
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

