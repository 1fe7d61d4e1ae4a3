// Rescoring: re-ranking a search's nearest candidates with the exact float vectors LMDB holds,
// so that compressed indexes (HNSW over 8-bit or fp16 codes, SQ, PQ) return exact scores and
// the exact order among what they found (Qdrant's "rescore", Milvus's "refine").
//
// A search with oversampling r asks every segment for r × (COUNT + excluded) candidates, merges
// them, reads just those candidates' vectors (in the search's read transaction, one LMDB get each: no scan;
// vectors on LMDB's overflow pages, 506-d and up, are copied by pread straight into their rows
// of the scan rather than read through the map, whose fault-around made most of the data file resident:
// CollectionStore.readVector, LMDBFileRead.swift) and scores them exactly with OpenBLAS (StoredVectorScan, the exact scans' one scorer). The
// collection's default is its definition's `rescore` (0 = off); without one, compressed HNSW
// specs (`HNSW32,SQ8`, `HNSW32,SQfp16`, and VADD … Q8's sets) rescore with the engine's
// `rescoreOversampling` (4; `--rescore-oversampling`) and every other spec does not (their scores are exact already, or the definition opts in). A query overrides
// it (VSIM … RESCORE r | NORESCORE). Exact (TRUTH) searches are exact already and skip it.
// Threads: any thread (the caller's: the server's search pool); reads LMDB only.
import LookalikeIndex
import LookalikeStorage

extension Collection {
    /// The most a definition or query may oversample.
    public static let maxOversampling = 100

    /// The oversampling a collection uses when a query says nothing: 0 = no rescoring.
    public var defaultRescore: Int {
        if let r = definition.rescore { return r }
        return specStorage == .sq8 || specStorage == .fp16 ? engine.options.rescoreOversampling : 0
    }

    /// The oversampling of one search: 0 when it does not rescore.
    func oversampling(_ request: SearchRequest) -> Int {
        request.exact ? 0 : (request.rescore ?? defaultRescore)
    }

    /// `candidates` (closest first, by the index's distances) re-ranked by exact distances to
    /// `query` (the index's query: normalised for cosine), computed from the stored vectors.
    /// Candidates whose vector has gone (removed meanwhile) are left out.
    func rescored(_ candidates: [Neighbor], query: UnsafePointer<Float>, _ txn: Transaction) throws -> [Neighbor] {
        guard !candidates.isEmpty else { return [] }
        var scan = StoredVectorScan(dimension: definition.dimension, metric: definition.metric, query: query,
                                    k: candidates.count)
        for n in candidates {  // each vector is read straight into its row of the scan
            try scan.add(id: n.id) { row in try store.readVector(n.id, txn, into: row) }
        }
        return scan.finish()
    }
}
