// FilteredSearch: top-k restricted to a filter's members ("items like this, in this
// category") with a recall that does not fall as the filter gets more selective. HNSW with a
// plain filter walks past non-members and returns too few or wrong hits; this planner never
// relies on that.
//
// Plan, per query (steps 2 and 3 of QueryPlan.swift, which runs it):
//   1. Members: a CATEGORY's value and the filter's indexed part (`category == X`,
//      `author in [...]`, joined by and/or; see FilterExpression.indexedSet) resolve to an
//      ascending id list from the LMDB attribute tables, in the search's read transaction. A
//      filter without an indexed part has no members: QueryPlan checks the nearest items in
//      widening rounds instead, as Redis does.
//   2. Per segment, the members' positions (cached: MemberCache), and a plan by a cost model
//      in vectors touched (`planCosts`):
//      - exact: score only the members' rows (gathered, one BLAS call per block): always
//        for the mutable segment and for small filters;
//      - post-filter: ask the unfiltered index for ~2k/selectivity items and keep members;
//        when k members are among them they are exactly the filter's top k;
//      - otherwise (too few members near the query: a category that lies elsewhere) the
//        cheaper of exact and a FAISS walk restricted by a bitmap selector, efSearch / nprobe
//        raised by 1/selectivity and widened while it returns fewer than it could.
//   3. Hits are checked against the whole expression (the indexed part is a superset), one
//      by one, until k pass; while fewer pass and unexamined members remain, QueryPlan widens.
//      A filter its members decide exactly (FilterExpression.isDecided) is not checked.
// Guarantee: when at least k live items match, k come back.
// Invariants: member ids come from one LMDB snapshot; an id committed but not yet applied to
// the segments is simply not found, exactly as for unfiltered searches.
// Threads: any thread, like every search; nothing here is shared or mutable.
import LookalikeIndex
import LookalikeStorage

/// How a filtered query is answered in a sealed ANN segment; `.automatic` lets the cost
/// model choose. Forcing a plan (benchmarks, tests) also turns off its fallbacks.
public enum FilterPlan: String, Sendable, CaseIterable {
    case automatic
    /// Scan the members' vectors.
    case exact
    /// FAISS restricted to the members by a bitmap selector, effort raised by 1/selectivity.
    case approximate
    /// An unfiltered search for ~2k/selectivity items, members kept.
    case postFilter
}

extension Collection {
    /// The error for a filter on an attribute that has no LMDB table.
    func notIndexed(_ attribute: String) -> EngineError {
        .invalidArgument("'\(attribute)' is not an indexed attribute of '\(name)' (indexed: \(definition.attributes.joined(separator: ", ")))")
    }

    /// A request's restriction (step 2 of QueryPlan): the members an index can list — the
    /// CATEGORY value and a FILTER's indexed part, both when both are given — and the
    /// filter to check on each candidate: none when the members are exactly the filter's
    /// matches (`isDecided`), so no hit's attributes are parsed. A FILTER with no indexed part
    /// has no members: the nearest items are checked instead, within its FILTER-EF budget.
    /// Called in the plan's read transaction: the kinds read here include those of every item
    /// in its snapshot (a write's kinds are noted before it commits: AttributeKinds.swift).
    func restriction(of request: SearchRequest, category: CategoryValue?) throws
        -> (members: FilterExpression.IndexedSet?, check: FilterExpression?)
    {
        let indexed = Set(definition.attributes)
        var parts: [FilterExpression.IndexedSet] = []
        if let category {
            guard indexed.contains(category.attribute) else { throw notIndexed(category.attribute) }
            parts.append(.value(attribute: category.attribute, text: category.value))
        }
        if let set = request.filter?.indexedSet(over: indexed) { parts.append(set) }
        let decided = request.filter?.isDecided(over: indexed, kinds: kinds(of:)) ?? false
        return (parts.isEmpty ? nil : .allOf(parts), decided ? nil : request.filter)
    }

    /// Each segment's share of the set's members: from the cache while it is valid for these
    /// segments, else resolved in `txn` (generations read first: see MemberCache's invariants).
    func memberPositions(_ set: FilterExpression.IndexedSet, segments: [any Segment], _ txn: Transaction) throws -> [MemberPositions] {
        if let parts = memberCache.lookup(set, segments: segments) { return parts }
        let generations = memberCache.generations(of: set)
        let members = try self.members(of: set, txn)
        let parts = segments.compactMap { MemberPositions(segment: $0, members: members) }
        memberCache.store(set, generations: generations, segments: segments, parts: parts)
        return parts
    }

    private func members(of set: FilterExpression.IndexedSet, _ txn: Transaction) throws -> [UInt64] {
        switch set {
        case .value(let attribute, let text):
            return try store.ids(attribute: attribute, value: text, txn)
        case .union(let parts):
            var out = Set<UInt64>()
            for p in parts { out.formUnion(try members(of: p, txn)) }
            return out.sorted()
        case .intersection(let parts):
            // Smallest first: each later part only needs membership tests.
            let lists = try parts.map { try members(of: $0, txn) }.sorted { $0.count < $1.count }
            var out = lists[0]
            for other in lists.dropFirst() where !out.isEmpty {
                let lookup = Set(other)
                out = out.filter(lookup.contains)
            }
            return out
        }
    }

    /// One segment's nearest `k` members, by the plan the cost model (or the request) chose,
    /// with its fallbacks; never fewer than k when the segment holds k live members.
    func search(_ part: MemberPositions, _ q: UnsafePointer<Float>, k: Int,
                request: SearchRequest, _ txn: Transaction) throws -> [Neighbor] {
        guard !request.exact, let sealed = part.segment as? any ANNSegment, let selector = part.selector else {
            EngineMetrics.filtered(.exact)
            return try exactSearch(part, q, k: k, txn)
        }
        let reachable = min(k, part.positions.count)
        let costs = planCosts(part, sealed, k: k, request: request)
        var plan = request.filterPlan
        if plan == .automatic {
            plan = part.positions.count <= engine.options.exactFilterLimit || costs.exact <= costs.postFilter ? .exact : .postFilter
        }
        EngineMetrics.filtered(plan == .postFilter ? .postFilter : plan == .approximate ? .selector : .exact)
        switch plan {
        case .exact, .automatic:
            return try exactSearch(part, q, k: k, txn)
        case .postFilter:
            // The unfiltered nearest items, members kept: whenever k members are among them
            // they are the filter's top k (every other member is farther than all of them).
            let wide = min(sealed.liveCount, Int((Double(k) * 2 * costs.inverseSelectivity).rounded(.up)) + k)
            // Asking for every item: a graph walk may not reach them all (HNSW can leave a few
            // nodes without in-links), a scan of the members is the same answer, complete.
            if wide >= sealed.liveCount {
                EngineMetrics.filtered(.fallbackExact)
                return try exactSearch(part, q, k: k, txn)
            }
            let found = try wrapped { try sealed.search(q, k: wide, effort: postFilterEffort(sealed, wide: wide, request: request)) }
                .filter { n in sealed.position(of: n.id).map { selector[$0 >> 3] & UInt8(1 << ($0 & 7)) != 0 } ?? false }
            if found.count >= reachable || request.filterPlan == .postFilter { return Array(found.prefix(k)) }
            // Too few members near the query (a category that lies elsewhere): the cheaper of
            // a selector walk and a scan.
            if costs.exact <= costs.selector {
                EngineMetrics.filtered(.fallbackExact)
                return try exactSearch(part, q, k: k, txn)
            }
            EngineMetrics.filtered(.fallbackSelector)
        case .approximate:
            break
        }
        var effort = filteredEffort(for: part, sealed: sealed, k: k, request: request)
        var found = try wrapped { try sealed.search(q, k: k, effort: effort, selector: selector) }
        // A walk can still stop short inside a sparse filter: widen, then scan.
        while found.count < reachable, let wider = widened(effort, sealed) {
            effort = wider
            found = try wrapped { try sealed.search(q, k: k, effort: effort, selector: selector) }
        }
        guard found.count < reachable && request.filterPlan != .approximate else { return found }
        EngineMetrics.filtered(.fallbackExact)
        return try exactSearch(part, q, k: k, txn)
    }

    /// Exact over the members of one segment: from its own rows, or by id from LMDB.
    private func exactSearch(_ part: MemberPositions, _ q: UnsafePointer<Float>, k: Int, _ txn: Transaction) throws -> [Neighbor] {
        if let found = part.segment.exactSearch(q, k: k, positions: part.positions) { return found }
        var scan = StoredVectorScan(dimension: definition.dimension, metric: definition.metric, query: q, k: k)
        for p in part.positions where part.segment.live.isLive(p) {
            if let bytes = try store.vectorBytes(part.segment.id(at: p), txn) { scan.add(id: part.segment.id(at: p), bytes: bytes) }
        }
        return scan.finish()
    }

    /// Each plan's cost for one segment, in vectors touched: exact touches every member
    /// (several times the cost when they must be read from LMDB); an HNSW walk about 24 nodes
    /// per unit of efSearch (measured: one efSearch-64 query costs as much as scanning ~1,500
    /// rows); IVF scans nprobe/nlist of the segment plus the centroids. Post-filtering asks
    /// the unfiltered index for ~2k/s items; the selector walk raises the effort by 1/s.
    func planCosts(_ part: MemberPositions, _ sealed: any ANNSegment, k: Int, request: SearchRequest)
        -> (exact: Double, postFilter: Double, selector: Double, inverseSelectivity: Double)
    {
        let inverse = max(1, Double(max(1, sealed.liveCount)) / Double(max(1, part.positions.count)))
        func cost(_ e: SearchEffort) -> Double {
            if sealed.info.kind == .hnsw { return Double(e.efSearch) * 24 }
            let nlist = Double(max(1, sealed.info.nlist))
            return Double(sealed.count) * Double(e.nprobe) / nlist + nlist
        }
        let wide = min(sealed.liveCount, Int((Double(k) * 2 * inverse).rounded(.up)) + k)
        return (Double(part.positions.count) * (sealed.rows != nil ? 1 : 8),
                cost(postFilterEffort(sealed, wide: wide, request: request)),
                cost(filteredEffort(for: part, sealed: sealed, k: k, request: request)),
                inverse)
    }

    /// Effort for an unfiltered search whose whole top `wide` must be right (not only its top
    /// k): efSearch at least `postFilterDepth` (6) times `wide`. On the real set (HNSW32, efConstruction 40) a
    /// 50% filter got recall@10 0.984 at twice, and 0.989–0.992 at four times (full runs of
    /// `lookalike-bench filtered`, graphs built anew each run): too close to the 0.99 target.
    func postFilterEffort(_ sealed: any ANNSegment, wide: Int, request: SearchRequest) -> SearchEffort {
        var e = effort(for: sealed, k: wide, request: request)
        e.efSearch = min(engine.options.maxEfSearch, max(e.efSearch, engine.options.postFilterDepth * wide))
        return e
    }

    /// The collection's effort raised by 1/selectivity within this segment, so the walk (or
    /// the lists probed) meets as many members as an unfiltered search meets items. (1/√s was
    /// tried: faster at 25-50%, but a category that follows the vectors, far from the query,
    /// then loses a third of its recall: the walk must travel to reach it.)
    func filteredEffort(for part: MemberPositions, sealed: any ANNSegment, k: Int, request: SearchRequest) -> SearchEffort {
        var effort = effort(for: sealed, k: k, request: request)
        let inverseSelectivity = max(1, Double(max(1, sealed.liveCount)) / Double(max(1, part.positions.count)))
        effort.efSearch = Int(min(Double(engine.options.maxEfSearch), (Double(effort.efSearch) * inverseSelectivity).rounded(.up)))
        effort.nprobe = Int(min(Double(max(1, sealed.info.nlist)), (Double(effort.nprobe) * inverseSelectivity).rounded(.up)))
        return effort
    }
}

/// One segment's share of a filter's members: their positions there, ascending, and for an
/// ANN segment the FAISS selector over them. Immutable once built; shared through MemberCache.
final class MemberPositions: Sendable {
    let segment: any Segment
    let positions: [Int]
    let selector: [UInt8]?

    /// Nil when no member lives in this segment.
    init?(segment: any Segment, members: [UInt64]) {
        guard let first = segment.firstId, let last = segment.lastId else { return nil }
        // Members are ascending: only the slice within [first, last] can be here.
        var lo = 0, hi = members.count
        while lo < hi { let mid = (lo + hi) >> 1; if members[mid] < first { lo = mid + 1 } else { hi = mid } }
        var positions: [Int] = []
        var i = lo
        while i < members.count, members[i] <= last {
            if let p = segment.position(of: members[i]), segment.live.isLive(p) { positions.append(p) }
            i += 1
        }
        guard !positions.isEmpty else { return nil }
        self.segment = segment
        self.positions = positions
        if let sealed = segment as? any ANNSegment, sealed.info.kind != .flat {
            selector = sealed.selector(positions: positions)
        } else {
            selector = nil
        }
    }

    var bytes: Int { positions.count * 8 + (selector?.count ?? 0) + 64 }
}
