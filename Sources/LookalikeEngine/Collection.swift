// Collection: one named set of items: its LMDB tables, its segments, its writes and searches.
// This file holds its state and opening; writes enter through CollectionWrites.swift, are
// staged and applied by CollectionCommit.swift (the commit thread), read by
// CollectionReads.swift, and searched by QueryPlan.swift.
//
// Owns: the segment list (sealed segments, frozen flat segments being sealed, one mutable flat
// segment), the manifest that names the sealed segments. The id counter and the other state
// only the commit thread touches are the collection's writer's (CollectionWriter.swift).
// Invariants:
//   - Segments hold ascending, disjoint id ranges, in list order; the mutable one is last.
//   - Every id below `manifest.sealedThrough` that was live when sealed is in a sealed segment
//     named by the manifest; every live id at or above it is in a flat segment (replayed from
//     LMDB at open).
//   - An id removed or replaced has its live bit cleared in whichever segment holds it before
//     the write is acknowledged.
// Threads:
//   - `stage` (which needs the writer), `appendCommitted`, `tombstoneCommitted`, `markDropped`:
//     the commit thread only (WriteQueue).
//   - `seal`: the sealer's thread only, one seal at a time per engine.
//   - reads and searches: any thread, concurrently with all of the above. They take a snapshot
//     of the segment list under `state`'s lock (a few pointer copies) and search outside it.
//   - `state` is a short lock: no I/O and no search is done while holding it.
import Foundation
import Logging
import LookalikeIndex
import LookalikeStorage
import Synchronization

/// The sealed-segment manifest, stored as JSON in the meta table.
struct Manifest: Codable, Equatable {
    struct Entry: Codable, Equatable {
        var name: String
        var firstId: UInt64
        var lastId: UInt64
        var count: Int
    }
    var segments: [Entry] = []
    var sealedThrough: UInt64 = 0
    var nextSegment: Int = 1
    /// A trained, empty index new segments are cloned from (IVF/PQ/SQ), once trained.
    var template: String?
}

public final class Collection: @unchecked Sendable {
    public let definition: CollectionDefinition
    public var name: String { definition.name }
    let number: UInt32
    let store: CollectionStore
    /// Resolved filters for the next query with the same filter (FilteredSearch).
    let memberCache: MemberCache
    /// The kinds of value each indexed attribute has held; nil for a collection from before
    /// they were recorded (AttributeKinds.swift).
    let attributeKinds: Mutex<[String: AttributeKinds]?>
    let engine: Engine
    let segmentDirectory: String
    /// What the index spec builds, from an empty probe index: its kind, and how many vectors
    /// training wants (0 when it needs none).
    let specKind: FaissInfo.Kind
    /// How an HNSW spec stores vectors (flat rows, 8-bit or fp16 codes); .other otherwise.
    let specStorage: FaissInfo.Storage
    let trainHint: Int
    /// REDUCE's matrix, when the collection reduces dimensions (Projection.swift).
    let projection: Projection?
    /// New items are linked into a mutable HNSW graph as they arrive (GraphSegment), instead of
    /// waiting in an exact segment for a seal: HNSW specs with flat storage.
    let usesGraph: Bool
    /// Whether a seal builds the index from the frozen rows at once (`SegmentBuilder.buildRows`):
    /// an HNSW on flat, 8-bit or fp16 storage without a live graph (compressed specs, mostly).
    let buildsFromRows: Bool

    /// Cached rankings by a numeric attribute, for cascades' TOP stages (Recommendations).
    let rankings = Mutex<[String: Ranking]>([:])
    /// Whether the current template can back a live IVF segment, keyed by the template (asked
    /// on the commit thread at every append until the mutable segment is live).
    let liveIVFSupport = Mutex<(template: ObjectIdentifier, supported: Bool)?>(nil)
    /// The category model VPREDICT and CATEGORY AUTO blend with the vote (CategoryTraining).
    let categoryModel = Mutex(CategoryModelState())
    /// The new-items batch job's progress (NewItems).
    public let newItemsProgress = NewItemsProgress()
    /// The running compaction's progress, and the last one's report (Compaction.swift).
    public let compactionProgress = JobProgress()
    public let lastCompaction = Mutex<CompactionReport?>(nil)

    /// Held from reading the manifest to committing and swapping in its successor (seals,
    /// merges and compactions edit it from different queues: Merging.swift).
    let manifestLock = NSLock()

    struct State {
        var sealed: [SealedSegment] = []
        /// Full (or SAVEd) growing segments waiting for their seal, oldest first.
        var frozen: [any GrowingSegment] = []
        var mutable: any GrowingSegment
        var manifest = Manifest()
        var template: FaissIndex?
        var dropped = false
        var compacting = false
        /// Frozen segments whose last seal failed (Sealing.swift).
        var sealFailures: [ObjectIdentifier: SealFailure] = [:]

        var all: [any Segment] { sealed + frozen + [mutable] }
    }
    let state: Mutex<State>

    init(engine: Engine, definition: CollectionDefinition, number: UInt32) throws {
        self.engine = engine
        self.definition = definition
        self.number = number
        store = try CollectionStore(environment: engine.environment, number: number,
                                    indexedAttributes: definition.attributes)
        segmentDirectory = "\(engine.directory)/segments/c\(number)"
        memberCache = MemberCache(budget: engine.options.filterCacheBytes)
        attributeKinds = Mutex(try Self.loadKinds(engine, number: number))
        let probe = try Collection.probe(definition)
        specKind = probe.kind
        specStorage = probe.storage
        trainHint = probe.isTrained ? 0 : max(1, probe.trainHint)
        usesGraph = probe.kind == .hnsw && probe.fastDistances && probe.storage == .flat && probe.isTrained
        buildsFromRows = probe.kind == .hnsw && probe.storage != .other && !probe.preTransform && !usesGraph
        projection = try Self.loadProjection(definition, number: number, engine: engine)
        state = Mutex(State(mutable: FlatSegment(dimension: definition.dimension,
                                                 capacity: 1, metric: definition.metric.faiss)))
    }

    /// Builds an empty index from the spec: FAISS's verdict on it, and what it will be.
    static func probe(_ definition: CollectionDefinition) throws -> FaissInfo {
        try checkSpecNumbers(definition.index)
        let info: FaissInfo
        do {
            info = try FaissIndex(spec: definition.index, dimension: definition.dimension,
                                  metric: definition.metric.faiss).info()
        } catch let IndexError.faiss(reason) {
            throw EngineError.indexSpecRejected(spec: definition.index, reason: reason)
        }
        // FAISS builds these, then aborts the process (an assert, not an exception) when
        // training or adding: refused here, before anything is stored (found by fuzzing).
        if info.kind == .ivf && info.nlist < 1 {
            throw EngineError.indexSpecRejected(spec: definition.index, reason: "an IVF index needs at least 1 list (IVF1024, …)")
        }
        if info.kind == .hnsw && info.hnswM < 2 {
            throw EngineError.indexSpecRejected(spec: definition.index, reason: "an HNSW index needs M of at least 2 (HNSW32, …)")
        }
        return info
    }

    /// FAISS's factory divides by some of a spec's numbers and asserts on others (PQ0 ended the
    /// process with SIGFPE, PQ2x40 with an abort): every count after a component name must be
    /// from 1 to a bound (bits per code at most 16, IVF lists at most 2^22, HNSW M at most 256),
    /// checked before FAISS sees the spec.
    static func checkSpecNumbers(_ spec: String) throws {
        let u = Array(spec.uppercased().unicodeScalars)
        var i = 0
        while i < u.count {
            guard CharacterSet.uppercaseLetters.contains(u[i]) else { i += 1; continue }
            var j = i
            while j < u.count, CharacterSet.uppercaseLetters.contains(u[j]) { j += 1 }
            var k = j
            while k < u.count, CharacterSet.decimalDigits.contains(u[k]) { k += 1 }
            if k > j {
                let name = String(String.UnicodeScalarView(u[i..<j]))
                let n = Int(String(String.UnicodeScalarView(u[j..<k]))) ?? .max
                let most = name.hasSuffix("X") ? 16 : name.hasSuffix("IVF") ? 1 << 22 : name.hasSuffix("HNSW") ? 256 : 1 << 20
                guard n >= 1, n <= most else {
                    throw EngineError.indexSpecRejected(spec: spec, reason: "\(name)\(String(String.UnicodeScalarView(u[j..<k]))): this count must be from 1 to \(most)\(name.hasSuffix("X") ? " (bits per code)" : "")")
                }
            }
            i = max(k, j)
        }
    }

    // MARK: - Sizes

    /// Rows in a growing segment before it is frozen and sealed. An index that needs training
    /// waits until there are enough vectors to train it well. A live graph reserves room for
    /// all of them up front (address space, touched as used), so it is also kept under
    /// `maxGraphBytes` of vectors.
    var flatCapacity: Int {
        let threshold = definition.sealThreshold ?? engine.options.sealThreshold
        if usesGraph { return max(1, min(threshold, Self.maxGraphBytes / (definition.dimension * 4))) }
        let needsTraining = state.withLock { $0.template == nil } && trainHint > 0
        return needsTraining ? max(threshold, trainHint) : threshold
    }

    /// The most vector bytes one live graph segment holds (1M items at 512-d).
    static let maxGraphBytes = 2 << 30


    /// HNSW build effort: the collection's own (VADD … EF), else the engine's default.
    var efConstruction: Int { definition.efConstruction ?? engine.options.efConstruction }
    /// VINFO's ef-construction: 0 for an index that is not HNSW.
    public var efConstructionForInfo: Int { specKind == .hnsw ? efConstruction : 0 }

    /// A new segment for new items: a live one when the index type allows (a graph,
    /// GraphSegment; or, once trained, IVF lists, IVFSegment), else an exact flat segment that
    /// is sealed when full.
    func newGrowingSegment() -> any GrowingSegment {
        if !usesGraph, let template = state.withLock({ $0.template }), supportsLiveIVF(template) {
            do {
                return try IVFSegment(template: template, dimension: definition.dimension, capacity: flatCapacity,
                                      metric: definition.metric.faiss)
            } catch {
                engine.logger.error("could not start a live IVF segment; new items are served exactly until the next seal",
                                    metadata: ["collection": "\(name)", "error": "\(error)"])
            }
        }
        if usesGraph {
            do {
                return try GraphSegment(spec: definition.index, dimension: definition.dimension,
                                        capacity: flatCapacity, metric: definition.metric.faiss,
                                        efConstruction: efConstruction, maxEfSearch: engine.options.maxEfSearch)
            } catch {
                // Never expected (the spec was probed); an exact segment is still correct.
                engine.logger.error("could not start a graph segment; new items are served exactly until the next seal",
                                    metadata: ["collection": "\(name)", "error": "\(error)"])
            }
        }
        return FlatSegment(dimension: definition.dimension, capacity: flatCapacity,
                           metric: definition.metric.faiss)
    }

    public func segmentSummary() -> (sealed: Int, frozen: Int, mutableCount: Int, sealedItems: Int) {
        state.withLock { s in
            (s.sealed.count, s.frozen.count, s.mutable.count, s.sealed.reduce(0) { $0 + $1.count })
        }
    }

    /// Graph segments (mutable, then frozen ones) with items not yet linked, oldest first.
    func liveSegmentsWithBacklog() -> [any LiveSegment] {
        state.withLock { s in
            (s.frozen + [s.mutable]).compactMap { $0 as? any LiveSegment }.filter { $0.backlog > 0 && $0.indexFailure == nil }
        }
    }

    /// Items written but not yet in any index (the exact tails of graph segments), and the bytes
    /// of their vectors: what backpressure bounds (Indexing.swift).
    public var unindexed: (items: Int, bytes: Int) {
        let items = liveSegmentsWithBacklog().reduce(0) { $0 + $1.backlog }
        return (items, items * definition.dimension * 4)
    }

    func segmentsSnapshot() -> [any Segment] { state.withLock { $0.all } }

    func wrapped<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch { throw EngineError.wrap(error) }
    }
}
