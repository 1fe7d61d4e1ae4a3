// GraphLinks: an element's neighbours in the HNSW graph that holds it (VLINKS).
//
// Each sealed segment is a FAISS HNSW index, a graph of its own, and so is the mutable graph
// segment new items are linked into (GraphSegment): an element's links are those of its node
// in the segment that holds its id, so they never reach into other segments.
// What VLINKS shows is what searches walk, translated:
//   - positions become ids and ids names, read in one LMDB transaction;
//   - removed or replaced items stay in a sealed graph (FAISS cannot unlink them) with their
//     live bit cleared: they are left out, as searches leave them out;
//   - a view's node stands for its item (Views.swift): an item is listed once per level, at
//     its best score, and the element's own item is never its own neighbour.
// Scores are those VSIM reports for the pair (before the protocol's cosine mapping): computed
// from the stored vectors, prepared as the index prepares them.
// Elements outside any graph get an error saying why: the index is not HNSW, or the element
// still waits to be linked (milliseconds, or until a seal for types without a mutable graph).
// Threads: any thread; sealed segments are immutable, and the mutable graph may be read while
// the indexer links into it (only positions already linked are asked for), without a lock.
import LookalikeIndex
import LookalikeStorage

public struct GraphLink: Sendable, Equatable {
    public var key: String
    /// Cosine similarity (cosine), inner product (ip) or Euclidean distance (l2), as SearchHit.
    public var score: Float
}

extension Collection {
    /// The element's links, one array per level, the highest level first (as Redis's VLINKS);
    /// nil when there is no element of that name.
    public func links(key: String) throws -> [[GraphLink]]? {
        try wrapped {
            try engine.environment.read { txn in
                guard let id = try store.id(forKey: key, txn), let own = try store.vector(id, txn) else { return nil }
                guard specKind == .hnsw else { throw noGraph() }
                // A sealed graph, or the mutable one once the item is linked into it.
                let graphs = segmentsSnapshot().compactMap { $0 as? any ANNSegment }
                guard let segment = graphs.first(where: { $0.position(of: id) != nil }), segment.info.kind == .hnsw,
                      let position = segment.position(of: id),
                      position < ((segment as? GraphSegment)?.indexed ?? segment.count) else { throw notInGraphYet(key) }
                let origin = try preparedVector(own)
                let item = Array(Views.split(key).item.utf8)
                return try segment.index.hnswLinks(position: position).reversed().map { level in
                    try linked(level, in: segment, from: origin, excluding: item, txn)
                }
            }
        }
    }

    /// One level's neighbours: live ones, as items, each once at its best score.
    private func linked(_ positions: [Int64], in segment: any ANNSegment, from origin: [Float],
                        excluding item: [UInt8], _ txn: Transaction) throws -> [GraphLink] {
        var out: [GraphLink] = []
        var slot: [[UInt8]: Int] = [:]  // names by bytes: String equality is Unicode-canonical
        for p in positions.map(Int.init) where p >= 0 && p < segment.count && segment.live.isLive(p) {
            let id = segment.id(at: p)
            guard let key = try store.key(id, txn), let vector = try store.vector(id, txn) else { continue }
            let other = Views.split(key).item
            let bytes = Array(other.utf8)
            guard bytes != item else { continue }
            let score = pairScore(origin, try preparedVector(vector))
            if let i = slot[bytes] {
                if isBetter(score, than: out[i].score) { out[i].score = score }
            } else {
                slot[bytes] = out.count
                out.append(GraphLink(key: other, score: score))
            }
        }
        return out
    }

    private func pairScore(_ a: [Float], _ b: [Float]) -> Float {
        switch definition.metric {
        case .l2: return zip(a, b).reduce(Float(0)) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }.squareRoot()
        case .cosine, .ip: return zip(a, b).reduce(Float(0)) { $0 + $1.0 * $1.1 }
        }
    }

    private func isBetter(_ score: Float, than other: Float) -> Bool {
        definition.metric == .l2 ? score < other : score > other
    }

    private func noGraph() -> EngineError {
        .invalidArgument("'\(name)' uses index \(definition.index), which has no graph: links need an HNSW index (INDEX HNSW32 when the set is created)")
    }

    private func notInGraphYet(_ key: String) -> EngineError {
        .invalidArgument("'\(key)' is not in an HNSW graph yet: new and changed elements wait in an exact segment until they are linked or sealed (SAVE does both now; VINFO's index-state tells when an index still waits for items to train on)")
    }
}
