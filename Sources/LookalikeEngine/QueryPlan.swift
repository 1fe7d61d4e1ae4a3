// QueryPlan: the one path every search takes — VSIM by vector or element, with FILTER or
// CATEGORY or neither, threshold queries (VSIM/VWITHIN with a score bound), histories
// (VHISTORY), each CATEGORY AUTO share, each cascade stage and VPREDICT's neighbour vote.
//
// One request, six steps, in one segment snapshot and one LMDB read transaction:
//   1. resolve the query: the vector as the index wants it, and the items to leave out
//      (`Collection.resolveQuery`);
//   2. resolve the members: a FILTER's or CATEGORY's indexed part as each segment's positions
//      (FilteredSearch.swift; MemberCache, LMDB on a miss), and the check of the rest;
//   3. plan each segment: unrestricted ANN, or for members the cost model's exact scan,
//      post-filter or selector walk (FilteredSearch.swift);
//   4. run the segments for `depth` candidates each and merge them (and rescore:
//      Rescoring.swift);
//   5. collect hits best first (`collect`): each item once at its best view, keys from the
//      sealed segments' key tables, attributes read only for a candidate that needs them (a
//      check, WITHATTRIBS), and nothing read past the k-th hit or the threshold;
//   6. widen: depth ×4 while fewer than k hits came back and more candidates can exist
//      (several views of one item, removed items, candidates that failed the check, a
//      threshold not yet crossed).
// Invariants: the segment snapshot is taken before the read transaction opens, so an id a
// segment holds is in the transaction's snapshot unless it was removed since (then skipped);
// member ids come from the same transaction (or a cache entry valid for these segments).
// Threads: any thread (the server's search pool); a plan lives for one request, unshared.
import LookalikeIndex
import LookalikeStorage

struct QueryPlan {
    let collection: Collection
    let request: SearchRequest
    /// Step 1: the index's query vector, and the items never returned.
    let query: [Float]
    let excluded: Set<String>
    /// The snapshot every round searches.
    let segments: [any Segment]
    let sealed: [SealedSegment]
    /// Step 2: each segment's members; nil when the request has no indexed restriction.
    let members: [MemberPositions]?
    /// Checked on each candidate's attributes: a filter the members only approximate (they are
    /// a superset), or one with no indexed part at all.
    let check: FilterExpression?
    /// Most candidates worth asking for in one round: the members, or FILTER-EF's budget, or
    /// every row of the snapshot.
    let limit: Int
    /// Candidates asked for in the first round.
    let firstDepth: Int
    let oversampling: Int

    /// The hits, best first: at most k, all passing the check and the threshold.
    func run(_ txn: Transaction) throws -> [SearchHit] {
        guard limit > 0 else { return [] }
        var depth = firstDepth
        return try query.withUnsafeBufferPointer { q in
            while true {
                let wanted = min(depth, limit)
                let (neighbors, complete) = try candidates(wanted, q.baseAddress!, txn)
                let (hits, crossed) = try collect(neighbors, txn)
                if hits.count >= request.k || crossed || complete || wanted >= limit { return hits }
                depth = wanted * 4
            }
        }
    }

    /// Steps 3 and 4: `wanted` nearest candidates over the segments (or their members),
    /// merged and rescored; `complete` when the segments had no more to give.
    private func candidates(_ wanted: Int, _ q: UnsafePointer<Float>, _ txn: Transaction) throws
        -> (neighbors: [Neighbor], complete: Bool)
    {
        var top = TopK(k: max(1, wanted))
        if let members {
            for part in members { top.push(contentsOf: try collection.search(part, q, k: wanted, request: request, txn)) }
        } else {
            for segment in segments { top.push(contentsOf: try collection.search(segment, q, k: wanted, request: request, txn)) }
        }
        // Unrestricted, fewer than asked means the segments are spent. A member plan may come
        // back short and still have members left (a forced post-filter): only `limit` ends it.
        let complete = members == nil && top.count < wanted
        let sorted = top.sorted()
        return (oversampling > 0 ? try collection.rescored(sorted, query: q, txn) : sorted, complete)
    }

    /// Step 5: hits from candidates (closest first). `crossed`: a candidate failed the
    /// threshold, so every later one does too and no wider round can add a hit.
    private func collect(_ neighbors: [Neighbor], _ txn: Transaction) throws -> (hits: [SearchHit], crossed: Bool) {
        let needsAttributes = request.withAttributes || check != nil
        let passes = thresholdTest()
        var out: [SearchHit] = []
        var seen = Set<String>()
        for n in neighbors {
            guard out.count < request.k else { break }
            let score = collection.score(n.distance)
            if let passes, !passes(score) { return (out, true) }
            guard let record = try record(of: n.id, attributes: needsAttributes, txn) else { continue }  // removed
            let (item, view) = Views.split(record.key)
            guard !excluded.contains(item), seen.insert(item).inserted else { continue }
            if let check, !check.matches(record.attributes) { continue }
            out.append(SearchHit(key: item, id: n.id, score: score,
                                 attributes: request.withAttributes ? record.attributes : nil, view: view))
        }
        return (out, false)
    }

    /// One candidate's key, and its attributes when asked; nil when it was removed. A sealed
    /// candidate's key comes from its segment's key table (KeyTable.swift: no LMDB page is
    /// touched); LMDB is read for attributes and for items still in a growing segment.
    private func record(of id: UInt64, attributes: Bool, _ txn: Transaction) throws -> ItemRecord? {
        if !attributes, let segment = Collection.sealedSegment(holding: id, in: sealed), let table = segment.keys,
           let p = segment.position(of: id)
        {
            return segment.live.isLive(p) ? ItemRecord(key: table.key(at: p), attributes: nil) : nil
        }
        if attributes { return try collection.store.item(id, txn) }
        return try collection.store.key(id, txn).map { ItemRecord(key: $0, attributes: nil) }
    }

    /// The request's score bound as a test on hit scores (cosine, IP: at least; L2: at most).
    private func thresholdTest() -> ((Float) -> Bool)? {
        guard let t = request.threshold else { return nil }
        return collection.definition.metric == .l2 ? { $0 <= t } : { $0 >= t }
    }
}

extension Collection {
    /// Every search (see QueryPlan): validated, a predicted category resolved, then planned
    /// and run in one segment snapshot and one read transaction.
    public func search(_ request: SearchRequest) throws -> [SearchHit] {
        try validate(request)
        engine.indexer.noteSearch()
        let category: CategoryValue?
        switch request.category {
        case .predicted(let attribute, let topP, let predict):
            // Resolved to values first: each of its searches is a plan of its own.
            return try searchInPredictedCategory(request, attribute: attribute, topP: topP, predict: predict)
        case .value(let value, let attribute): category = CategoryValue(value: value, attribute: attribute)
        case nil: category = nil
        }
        let (query, excluded) = try resolveQuery(request)
        let (segments, sealed) = state.withLock { ($0.all, $0.sealed) }
        return try wrapped {
            try engine.environment.read { txn in
                try plan(request, category: category, query: query, excluded: excluded, segments: segments,
                         sealed: sealed, txn).run(txn)
            }
        }
    }

    /// Steps 1 and 2 of a plan: the restriction resolved, the first depth and the limit.
    /// `category`: the request's, as a value (a plan never sees CATEGORY AUTO).
    private func plan(_ request: SearchRequest, category: CategoryValue?, query: [Float], excluded: Set<String>,
                      segments: [any Segment], sealed: [SealedSegment], _ txn: Transaction) throws -> QueryPlan
    {
        let restriction = try restriction(of: request, category: category)
        let oversampling = oversampling(request)
        let scale = max(1, oversampling)
        var first = request.k + excluded.count
        if request.threshold != nil { first = min(first, 64 + excluded.count) }  // most thresholds keep few
        var members: [MemberPositions]? = nil
        var limit = segments.reduce(0) { $0 + $1.count } * scale
        if let set = restriction.members {
            let parts = try memberPositions(set, segments: segments, txn)
            members = parts
            limit = parts.reduce(0) { $0 + $1.positions.count }
        } else if restriction.check != nil {
            // No indexed part: examine the nearest items in widening rounds, as Redis's
            // FILTER-EF does (nil: 100 × k; 0: as many as needed).
            let total = try store.vectorCount(txn)
            let budget = request.filterCandidates == 0 ? total : min(total, max(request.k, request.filterCandidates ?? request.k * 100))
            limit = (budget + excluded.count) * scale
            first = min(budget, max(request.k * 4, 64)) + excluded.count
        }
        return QueryPlan(collection: self, request: request, query: query, excluded: excluded, segments: segments,
                         sealed: sealed, members: members, check: restriction.check, limit: limit,
                         firstDepth: first * scale, oversampling: oversampling)
    }
}
