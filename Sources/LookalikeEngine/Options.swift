// EngineOptions: every knob of the engine, with its default. Docs/engine.md lists them; the
// server and tools expose each as a flag.
import LookalikeStorage

public struct EngineOptions: Sendable {
    /// LMDB map size, sync mode and reader slots.
    public var storage = StorageOptions()
    /// Items in a collection's mutable exact segment before it is sealed (per-collection
    /// `sealThreshold` overrides it). Larger: fewer segments, longer replay after a crash.
    public var sealThreshold = 100_000
    /// Most writes one LMDB transaction commits (group commit).
    public var maxBatch = 8192
    /// Element names: LMDB keys are at most 511 bytes.
    public var maxKeyBytes = 511
    public var maxAttributeBytes = 65_536
    public var maxDimension = 65_536
    /// Most results one query may ask for.
    public var maxK = 10_000
    /// The HNSW candidate heap bound (see Docs/engine.md: FAISS 1.7.3 sizes it from the index's
    /// own efSearch). Per-query efSearch is capped here.
    public var maxEfSearch = 4096
    /// Memory-map sealed IVF segments instead of reading them into memory.
    public var mmapIVF = true
    /// A segment holding at most this many of a filter's members scans them exactly; above
    /// it, a cost model picks exact or a selector-restricted ANN search (FilteredSearch).
    public var exactFilterLimit = 1_000
    /// A post-filter's unfiltered search runs at efSearch this many times the candidates it
    /// must get right (FilteredSearch.postFilterEffort): recall of large filters against rate.
    public var postFilterDepth = 6
    /// Candidates re-ranked with the exact vectors, as a multiple of COUNT, by collections with
    /// compressed HNSW storage whose definition sets no `rescore` (Rescoring.swift); 0 = off.
    public var rescoreOversampling = 4
    /// Bytes of resolved filters (member positions, FAISS selectors) kept per collection for
    /// the next query with the same filter (MemberCache).
    public var filterCacheBytes = 64 << 20
    /// HNSW build effort (candidates examined per insertion) when a collection sets none
    /// (VADD … EF). FAISS's default is 40; Redis and hnswlib build at 200, a markedly better
    /// graph (recall 0.75 → 0.95 at EF 64 on 1M × 128).
    public var efConstruction = 200
    /// Bytes of written items' vectors not yet linked into a graph (the exact tails every query
    /// scans) above which the commit thread waits for the indexer: writes are acknowledged
    /// later, never refused (Indexing.swift).
    public var maxUnindexedBytes = 1 << 20
    /// Sealed segments of one size tier merged into one (Merging.swift): a query visits at most
    /// this many minus one per tier. Larger: less merge work, more segments. 0 turns merging off.
    public var mergeFactor = 8
    /// Nice value of the indexer, sealer and merger threads (index building yields to
    /// searches); 0 = as searches.
    public var buildNice = 10
    /// Also run those threads under SCHED_IDLE: a search that wakes takes the core from a
    /// builder at once, where a niced builder may finish its time slice first. Off by default:
    /// under SCHED_IDLE a machine never idle (sustained searches, other processes) starves
    /// seals and merges altogether (Docs/benchmarks.md, "Latency under ingest").
    public var buildIdle = false
    /// HNSW efConstruction the indexer links with while writers wait in backpressure and
    /// searches are being served (Indexing.swift): cheaper links, so writes keep their rate
    /// without taking the cores from searches. 0 = always the collection's own.
    public var catchUpEfConstruction = 64
    /// OpenMP threads for sealing (building indexes); 0 = all cores.
    public var buildThreads = 0
    /// Threads for the new-items batch job (NewItems); 0 = all cores.
    public var batchJobThreads = 0
    /// Bytes of new items' vectors the batch job holds at once; more new items than fit take
    /// several passes over the existing ones.
    public var batchJobMemory = 1 << 30
    /// A recommendation cascade's TOP stage ranks items from a cached ranking rebuilt when
    /// older than this (a scan of every item's attributes).
    public var rankingRefreshSeconds = 60.0
    /// Train a per-collection category model for VPREDICT and CATEGORY AUTO (CategoryTraining);
    /// off: they use the neighbour vote alone.
    public var categoryModel = true
    /// Items with a category a collection needs before a model is trained (fewer: the vote).
    public var categoryModelMinItems = 200
    /// The model is trained again once the collection has grown by this fraction of the items
    /// it was trained on.
    public var categoryModelRetrainFraction = 0.1
    /// Most items a fit reads (a seeded sample above it): bounds training time and memory.
    public var categoryModelMaxItems = 200_000
    /// Bytes of the latest replication stream kept in memory, so a replica that lost its link
    /// briefly resumes from there (PSYNC) instead of a full sync (ReplicationLog).
    public var replicationBacklogBytes = 64 << 20

    public init() {}
}

/// Re-exported so that engine users need not import the storage layer.
public typealias SyncMode = LookalikeStorage.SyncMode
public typealias StorageOptions = LookalikeStorage.StorageOptions
