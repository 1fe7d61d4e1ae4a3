// HNSWLinks: a node's links in an HNSW index's graph, as positions (VLINKS reads them).
// Invariants: only published indexes are read, which are never mutated, so the two calls
// below (sizes, then links) see the same graph.
// Threads: any thread, concurrently with searches.
import CFaiss

extension FaissIndex {
    /// The positions the node at `position` links to, one array per level, level 0 first.
    /// Throws for an index without a graph (Flat, IVF...) or a position it does not hold.
    public func hnswLinks(position: Int) throws -> [[Int64]] {
        var levels: Int32 = 0
        var total = 0
        try checkFaiss { lk_index_hnsw_links(handle, Int64(position), &levels, nil, 0, nil, 0, &total, $0, $1) }
        var counts = [Int32](repeating: 0, count: Int(levels))
        var links = [Int64](repeating: -1, count: total)
        try counts.withUnsafeMutableBufferPointer { c in
            try links.withUnsafeMutableBufferPointer { l in
                try checkFaiss {
                    lk_index_hnsw_links(handle, Int64(position), &levels, c.baseAddress, Int32(c.count),
                                        l.baseAddress, l.count, &total, $0, $1)
                }
            }
        }
        var out: [[Int64]] = []
        var start = 0
        for n in counts.map(Int.init) {
            out.append(Array(links[start..<(start + n)]))
            start += n
        }
        return out
    }
}
