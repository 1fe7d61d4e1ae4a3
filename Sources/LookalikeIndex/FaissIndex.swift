// FaissIndex: one FAISS index behind the C module, as a Swift object.
//
// Owns: the lk_index pointer (freed in deinit).
// Invariants: labels are positions in add order; every FAISS failure is a thrown IndexError.
// Threads: `search`, `reconstruct`, `write`, `info`, `memory` may run concurrently; `train`, `add`,
// `build`, `setHNSW`, `reserveGraph` must not overlap with anything else on the same index. Segments
// guarantee this by building an index completely before publishing it, and never mutating a
// published one. The exception is a live HNSW graph: after `reserveGraph(capacity:)` (while
// nobody searches), one thread at a time may `insert` while any number search, `info`,
// `reconstruct`, read `flatVectors` or `links`; searches see the vectors of inserts that had
// returned when they started (and never a position beyond). `write` and `clone` must not
// overlap an `insert`. `setBuildPriority` applies to the calling thread's later inserts.
import CFaiss

public enum IndexError: Error, CustomStringConvertible, Equatable {
    case faiss(String)
    case io(String)
    case corrupt(String)

    public var description: String {
        switch self {
        case .faiss(let m): return "FAISS error: \(m)"
        case .io(let m): return "index file error: \(m)"
        case .corrupt(let m): return "index file is damaged: \(m)"
        }
    }
}

/// Calls a C-module function that reports failure as non-zero plus a message.
@inline(__always)
func checkFaiss(_ body: (UnsafeMutablePointer<CChar>, Int) -> Int32) throws {
    var buffer = [CChar](repeating: 0, count: 512)
    let rc = buffer.withUnsafeMutableBufferPointer { body($0.baseAddress!, $0.count) }
    if rc != 0 {
        let message = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        throw IndexError.faiss(message)
    }
}

public struct FaissInfo: Sendable, Equatable {
    public enum Kind: Sendable, Equatable { case flat, hnsw, ivf, other }
    public var kind: Kind
    public var dimension: Int
    public var isTrained: Bool
    public var count: Int
    public var nlist: Int
    public var hnswM: Int
    public var hnswEfSearch: Int
    public var hnswEfConstruction: Int
    public var trainHint: Int
    public var codeSize: Int
    /// HNSW storage computes distances with the shim's AVX2 code (not FAISS's scalar loop), or an
    /// IVF index is searched by the shim's coarse quantizer and list scanner (ivf_scan.cpp).
    public var fastDistances: Bool
    /// IVF: how uneven the inverted lists are (1 = even; FAISS's imbalance factor); else 0.
    public var ivfImbalance: Double = 0
    /// HNSW: how the shim's loop scores its vectors (float rows, 8-bit or fp16 codes); else .other.
    public var storage: Storage = .other
    /// The searchable index sits behind a pre-transform (PCA, OPQ): kind, storage and the HNSW
    /// fields are the inner index's, which the shim's builds cannot reach.
    public var preTransform = false
    /// Training would also run FAISS's polysemous reordering of PQ codebooks (never: see
    /// lk_index_create).
    public var polysemousTraining = false

    public enum Storage: Sendable, Equatable { case flat, sq8, fp16, other }
}

/// The bytes an index keeps in memory, by kind (lk_index_memory_get): what is in use, not
/// reserved capacity.
public struct FaissMemory: Sendable, Equatable {
    /// Stored vectors or codes outside IVF lists (Flat, SQ, PQ, an HNSW's storage).
    public var vectors = 0
    /// HNSW neighbour slots, offsets and levels.
    public var links = 0
    /// IVF lists' codes and ids.
    public var lists = 0
    /// Whether the IVF lists are a memory-mapped file rather than heap.
    public var listsMapped = false
    /// Trained tables: centroids, SQ ranges, PQ codebooks, transforms.
    public var other = 0
    public init() {}
}

/// Per-query effort and an optional selector bitmap over positions.
public struct SearchEffort: Sendable, Equatable {
    public var efSearch: Int
    public var nprobe: Int
    public init(efSearch: Int = 0, nprobe: Int = 0) {
        self.efSearch = efSearch
        self.nprobe = nprobe
    }
}

public final class FaissIndex: @unchecked Sendable {
    let handle: OpaquePointer

    private init(handle: OpaquePointer) { self.handle = handle }
    deinit { lk_index_free(handle) }

    /// Creates an index from a FAISS factory string. Throws if FAISS rejects the spec.
    public convenience init(spec: String, dimension: Int, metric: FaissMetric) throws {
        var out: OpaquePointer?
        try checkFaiss { lk_index_create(spec, Int32(dimension), metric.cValue, &out, $0, $1) }
        self.init(handle: out!)
    }

    /// Reads an index file written by `write(to:)`. `mmap` only for IVF indexes never added to.
    public static func read(path: String, mmap: Bool) throws -> FaissIndex {
        var out: OpaquePointer?
        try checkFaiss { lk_index_read(path, mmap ? 1 : 0, &out, $0, $1) }
        return FaissIndex(handle: out!)
    }

    public func clone() throws -> FaissIndex {
        var out: OpaquePointer?
        try checkFaiss { lk_index_clone(handle, &out, $0, $1) }
        return FaissIndex(handle: out!)
    }

    public func info() throws -> FaissInfo {
        var raw = lk_index_info()
        try checkFaiss { lk_index_info_get(handle, &raw, $0, $1) }
        let kind: FaissInfo.Kind
        switch Int(raw.kind) {
        case Int(LK_KIND_FLAT): kind = .flat
        case Int(LK_KIND_HNSW): kind = .hnsw
        case Int(LK_KIND_IVF): kind = .ivf
        default: kind = .other
        }
        return FaissInfo(
            kind: kind, dimension: Int(raw.dim), isTrained: raw.is_trained != 0,
            count: Int(raw.ntotal), nlist: Int(raw.nlist), hnswM: Int(raw.hnsw_m),
            hnswEfSearch: Int(raw.hnsw_ef_search),
            hnswEfConstruction: Int(raw.hnsw_ef_construction),
            trainHint: Int(raw.train_hint), codeSize: Int(raw.code_size),
            fastDistances: raw.fast_distances != 0, ivfImbalance: raw.ivf_imbalance,
            storage: Self.storage(raw.storage), preTransform: raw.pre_transform != 0,
            polysemousTraining: raw.polysemous_training != 0)
    }

    /// What the index keeps in memory. On a live IVF index, not while lists are appended to.
    public func memory() throws -> FaissMemory {
        var raw = lk_index_memory()
        try checkFaiss { lk_index_memory_get(handle, &raw, $0, $1) }
        var m = FaissMemory()
        m.vectors = Int(raw.vector_bytes)
        m.links = Int(raw.link_bytes)
        m.lists = Int(raw.list_bytes)
        m.listsMapped = raw.list_mapped != 0
        m.other = Int(raw.other_bytes)
        return m
    }

    private static func storage(_ raw: Int32) -> FaissInfo.Storage {
        switch Int(raw) {
        case Int(LK_STORAGE_FLAT): return .flat
        case Int(LK_STORAGE_SQ8): return .sq8
        case Int(LK_STORAGE_FP16): return .fp16
        default: return .other
        }
    }

    public func setHNSW(efConstruction: Int, efSearch: Int) throws {
        try checkFaiss { lk_index_set_hnsw(handle, Int32(efConstruction), Int32(efSearch), $0, $1) }
    }

    public func train(_ vectors: UnsafePointer<Float>, count: Int) throws {
        try checkFaiss { lk_index_train(handle, Int64(count), vectors, $0, $1) }
    }

    public func add(_ vectors: UnsafePointer<Float>, count: Int) throws {
        try checkFaiss { lk_index_add(handle, Int64(count), vectors, $0, $1) }
    }

    /// IVF (no pre-transform): the inverted list each vector goes to. Reads the quantizer
    /// only, so it may run beside searches.
    public func assignLists(_ vectors: UnsafePointer<Float>, count: Int) throws -> [Int64] {
        var lists = [Int64](repeating: -1, count: count)
        try lists.withUnsafeMutableBufferPointer { l in
            try checkFaiss { lk_ivf_assign(handle, Int64(count), vectors, l.baseAddress, $0, $1) }
        }
        return lists
    }

    /// IVF: appends vectors to the lists `assignLists` gave. No search may run meanwhile.
    public func addAssigned(_ vectors: UnsafePointer<Float>, count: Int, lists: [Int64]) throws {
        require(lists.count == count, "a list per vector")
        try lists.withUnsafeBufferPointer { l in
            try checkFaiss { lk_ivf_add_assigned(handle, Int64(count), vectors, l.baseAddress, $0, $1) }
        }
    }

    /// HNSW with flat storage (`HNSWn`) only: makes room for `capacity` vectors in all, so that
    /// later `insert`s never move what concurrent searches read. Call while nobody searches.
    public func reserveGraph(capacity: Int) throws {
        try checkFaiss { lk_hnsw_reserve(handle, Int64(capacity), $0, $1) }
    }

    /// Appends `count` vectors (positions `info().count...`) and links them, with up to `threads`
    /// OpenMP threads (<= 0: the default) at the index's efConstruction, or at `efConstruction`
    /// when given (this call only). Searches may run meanwhile; they see the new vectors once
    /// this returns. Throws, changing nothing, beyond the reserved capacity.
    public func insert(_ vectors: UnsafePointer<Float>, count: Int, threads: Int, efConstruction: Int? = nil) throws {
        try checkFaiss { lk_hnsw_insert(handle, Int64(count), vectors, Int32(threads), Int32(efConstruction ?? 0), $0, $1) }
    }

    /// HNSW on flat, 8-bit or fp16 storage (`HNSWn`, `HNSWn,SQ8`, `HNSWn,SQfp16`), empty, trained
    /// and not live: links `count` rows with the shim's insertion loop, every distance between
    /// float rows (so the graph is the one `insert` gives on them, whatever the storage), then
    /// stores them (encoded, for SQ), with up to `threads` threads (<= 0: the default). Reads
    /// `vectors` in place. Throws, leaving the index empty, for another index or on a failure.
    public func build(_ vectors: UnsafePointer<Float>, count: Int, threads: Int) throws {
        try checkFaiss { lk_hnsw_build(handle, Int64(count), vectors, Int32(threads), $0, $1) }
    }

    /// The nice value (and, with `idle`, the SCHED_IDLE policy) of the calling thread and of
    /// the workers of its later `insert`s.
    public static func setBuildPriority(nice: Int, idle: Bool) { lk_set_build_priority(Int32(nice), idle ? 1 : 0) }

    /// Searches `queryCount` queries; returns distances and positions, `k` per query (-1 = none).
    /// `faissSearch` runs FAISS's own HNSW loop or IVF search instead of the shim's (tests, A/B;
    /// refused on a live graph).
    public func search(
        _ queries: UnsafePointer<Float>, queryCount: Int, k: Int, effort: SearchEffort,
        selector: UnsafeRawBufferPointer?, threads: Int = 1, faissSearch: Bool = false
    ) throws -> (distances: [Float], positions: [Int64]) {
        var distances = [Float](repeating: 0, count: queryCount * k)
        var positions = [Int64](repeating: -1, count: queryCount * k)
        var params = lk_search_params()
        params.ef_search = Int32(effort.efSearch)
        params.nprobe = Int32(effort.nprobe)
        params.threads = Int32(threads)
        params.faiss_search = faissSearch ? 1 : 0
        if let selector {
            params.bitmap = selector.baseAddress?.assumingMemoryBound(to: UInt8.self)
            params.bitmap_bytes = selector.count
        }
        try distances.withUnsafeMutableBufferPointer { d in
            try positions.withUnsafeMutableBufferPointer { p in
                try checkFaiss {
                    lk_index_search(handle, Int64(queryCount), queries, Int64(k), &params,
                                    d.baseAddress, p.baseAddress, $0, $1)
                }
            }
        }
        return (distances, positions)
    }

    public func reconstruct(position: Int, dimension: Int) throws -> [Float] {
        var out = [Float](repeating: 0, count: dimension)
        try out.withUnsafeMutableBufferPointer { o in
            try checkFaiss { lk_index_reconstruct(handle, Int64(position), o.baseAddress, $0, $1) }
        }
        return out
    }

    /// The stored vectors as contiguous rows, when the index keeps them as given (Flat, or
    /// HNSW's flat storage); nil otherwise. Valid while the index lives and is not added to.
    public var flatVectors: UnsafePointer<Float>? { lk_index_flat_vectors(handle) }

    public func write(to path: String) throws {
        try checkFaiss { lk_index_write(handle, path, $0, $1) }
    }

    /// How the distances of `codeDistances` are computed (tests and kernel A/B).
    public enum DistanceCode: Int32, Sendable { case shim = 0, shimReference = 1, faiss = 2 }

    /// HNSW on the shim's storage: FAISS-convention distances (inner product, or squared L2) of
    /// `query` to the stored vectors at `positions`, by the shim's kernels, its scalar
    /// references, or FAISS's own distance computer.
    public func codeDistances(_ query: [Float], positions: [Int], using code: DistanceCode) throws -> [Float] {
        var out = [Float](repeating: 0, count: positions.count)
        let p = positions.map(Int64.init)
        try out.withUnsafeMutableBufferPointer { o in
            try checkFaiss { lk_index_code_distances(handle, query, p, Int64(p.count), code.rawValue, o.baseAddress, $0, $1) }
        }
        return out
    }

    /// OpenMP threads FAISS may use within one call (1 when many threads call in parallel).
    public static func setThreads(_ n: Int) { lk_set_omp_threads(Int32(n)) }
}

/// The metric FAISS computes: cosine collections use inner product on normalised vectors.
public enum FaissMetric: Sendable {
    case l2, innerProduct
    var cValue: Int32 {
        self == .l2 ? Int32(LK_METRIC_L2) : Int32(LK_METRIC_IP)
    }
}
