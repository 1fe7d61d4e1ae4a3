// Collection: one named set of items: its LMDB tables, its segments, its writes and searches.
//
// Owns: the segment list (sealed segments, frozen flat segments being sealed, one mutable flat
// segment), the manifest that names the sealed segments, and the id counter.
// Invariants:
//   - Segments hold ascending, disjoint id ranges, in list order; the mutable one is last.
//   - Every id below `manifest.sealedThrough` that was live when sealed is in a sealed segment
//     named by the manifest; every live id at or above it is in a flat segment (replayed from
//     LMDB at open).
//   - An id removed or replaced has its live bit cleared in whichever segment holds it before
//     the write is acknowledged.
// Threads:
//   - `nextId`, `stage`, `appendCommitted`, `tombstoneCommitted`, `markDropped`: the commit
//     thread only (WriteQueue).
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

    /// Cached rankings by a numeric attribute, for cascades' TOP stages (Recommendations).
    let rankings = Mutex<[String: Ranking]>([:])
    /// Whether the current template can back a live IVF segment, keyed by the template (asked
    /// on the commit thread at every append until the mutable segment is live).
    private let liveIVFSupport = Mutex<(template: ObjectIdentifier, supported: Bool)?>(nil)
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

    /// Next id to allocate. Commit thread only (and `open`, before the commit thread sees us).
    var nextId: UInt64 = 0
    /// A drop of this collection is staged in the transaction being built. Commit thread only;
    /// cleared when that transaction fails (its writes are retried one by one).
    var droppedInBatch = false

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
        let probe = try Collection.probe(definition)
        specKind = probe.kind
        specStorage = probe.storage
        trainHint = probe.isTrained ? 0 : max(1, probe.trainHint)
        usesGraph = probe.kind == .hnsw && probe.fastDistances && probe.storage == .flat && probe.isTrained
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

    // MARK: - Validation (any thread, before a write is queued)

    func prepare(_ request: WriteRequest) throws -> [Float]? {
        try Self.prepare(request, definition: definition, options: engine.options)
    }

    /// Checks a write against a definition, with no collection needed: a VADD that creates its
    /// collection is checked before the collection exists, so a refused write creates nothing.
    /// Returns the vector as the index stores it, for upserts.
    public static func prepare(_ request: WriteRequest, definition: CollectionDefinition,
                               options: EngineOptions) throws -> [Float]? {
        switch request {
        case .upsert(let key, let vector, let attributes):
            try validateKey(key, options)
            if case .set(let a) = attributes { try validateAttributes(a, options) }
            return try preparedVector(vector, definition)
        case .remove(let key):
            try validateKey(key, options)
            return nil
        case .setAttributes(let key, let attributes):
            try validateKey(key, options)
            try validateAttributes(attributes, options)
            return nil
        case .dropCollection:
            return nil
        }
    }

    static func validateKey(_ key: String, _ options: EngineOptions) throws {
        guard !key.isEmpty else { throw EngineError.emptyKey }
        guard key.utf8.count <= min(options.maxKeyBytes, 511) else {
            throw EngineError.keyTooLong(max: min(options.maxKeyBytes, 511))
        }
    }

    /// Attributes are stored byte for byte as given, as Redis does: a string that is not a JSON
    /// object is kept (and returned by VGETATTR), but no FILTER matches it and no attribute
    /// index lists it.
    static func validateAttributes(_ json: String?, _ options: EngineOptions) throws {
        guard let json, !json.isEmpty else { return }
        guard json.utf8.count <= options.maxAttributeBytes else {
            throw EngineError.attributesTooLarge(max: options.maxAttributeBytes)
        }
    }

    /// Checks a vector and returns it as the index stores it (unit length for cosine).
    /// A zero vector is accepted, as Redis does (it has no direction: its cosine with anything
    /// is 0); `allowZero: false` refuses it where it means a mistake (a history that cancels out).
    func preparedVector(_ vector: [Float], allowZero: Bool = true) throws -> [Float] {
        try Self.preparedVector(vector, definition, allowZero: allowZero)
    }

    static func preparedVector(_ vector: [Float], _ definition: CollectionDefinition, allowZero: Bool = true) throws -> [Float] {
        guard vector.count == definition.dimension else {
            throw EngineError.wrongDimension(expected: definition.dimension, got: vector.count)
        }
        guard vector.withUnsafeBufferPointer(VectorMath.allFinite) else { throw EngineError.notFinite }
        guard definition.metric == .cosine else { return vector }
        guard let unit = VectorMath.normalized(vector) else {
            if allowZero { return vector }
            throw EngineError.zeroVector
        }
        return unit
    }

    // MARK: - Commit thread

    /// Writes one request into the open transaction. Throws a per-write error only before it
    /// has changed anything, so the rest of the batch can commit.
    func stage(_ write: PreparedWrite, _ txn: Transaction, _ effects: inout [MemoryEffect]) throws
        -> WriteOutcome
    {
        // A drop staged earlier in this batch counts: a write after it would go into tables
        // the drop emptied, be acknowledged, and vanish with the collection.
        guard !droppedInBatch, !state.withLock({ $0.dropped }) else { throw EngineError.unknownCollection(name) }
        switch write.request {
        case .upsert(let key, let vector, let attributes):
            // A view mirrors its item's attributes (Views.swift); checked before any change.
            let item = try itemOfView(key, attributes, txn)
            let oldId = try store.id(forKey: key, txn)
            let old = try oldId.flatMap { try store.item($0, txn) }
            var newAttributes = old?.attributes
            if case .set(let a) = attributes { newAttributes = (a?.isEmpty ?? true) ? nil : a }
            if let item { newAttributes = item.attributes }
            if item == nil, newAttributes != old?.attributes { try setViewAttributes(of: key, newAttributes, txn, &effects) }
            if let oldId, let old, try sameVector(oldId, vector, txn) {
                // Same vector: only attributes may change, and the id stays (no tombstone churn
                // when a load is run again).
                guard newAttributes != old.attributes else { return .unchanged }
                membersChanged(try store.setAttributes(id: oldId, old: old, attributes: newAttributes, txn), &effects)
                return .updated
            }
            let id = nextId
            nextId += 1
            var touched: IndexedValues = []
            if let oldId, let old {
                touched = try store.removeItem(id: oldId, record: old, txn)
                effects.append(.tombstone(self, id: oldId))
            }
            try vector.withUnsafeBufferPointer {
                touched.formUnion(try store.insert(id: id, record: ItemRecord(key: key, attributes: newAttributes),
                                                   vector: $0, txn))
            }
            effects.append(.add(self, id: id, key: key, vector: write.preparedVector!))
            membersChanged(touched, &effects)
            return old == nil ? .added : .updated
        case .remove(let key):
            guard try store.id(forKey: key, txn) != nil else { return .notFound }
            // An item goes with its views; a view goes alone.
            let members = Views.split(key).view == nil ? [key] + (try store.viewKeys(of: key, txn)) : [key]
            for member in members {
                guard let id = try store.id(forKey: member, txn), let record = try store.item(id, txn) else { continue }
                let touched = try store.removeItem(id: id, record: record, txn)
                try store.deleteKey(member, txn)
                effects.append(.tombstone(self, id: id))
                membersChanged(touched, &effects)
            }
            // As in Redis, a set whose last element goes is deleted with it.
            if try store.vectorCount(txn) == 0 { try stageDrop(txn, &effects) }
            return .removed
        case .setAttributes(let key, let attributes):
            guard Views.split(key).view == nil else { throw Self.viewAttributesRefused(key) }
            guard let id = try store.id(forKey: key, txn), let old = try store.item(id, txn) else {
                return .notFound
            }
            let a = (attributes?.isEmpty ?? true) ? nil : attributes
            if a != old.attributes {
                membersChanged(try store.setAttributes(id: id, old: old, attributes: a, txn), &effects)
                try setViewAttributes(of: key, a, txn, &effects)
            }
            return .updated
        case .dropCollection:
            try stageDrop(txn, &effects)
            return .removed
        }
    }

    /// Deletes the collection's tables and meta keys in the open transaction.
    private func stageDrop(_ txn: Transaction, _ effects: inout [MemoryEffect]) throws {
        try store.emptyAll(txn)
        for key in [Engine.definitionKey(name), Engine.manifestKey(number), Engine.nextIdKey(number),
                    Self.lastRunKey(number), Self.runningKey(number), Self.abortedKey(number),
                    Projection.metaKey(number), StoredCategoryModel.metaKey(number)] {
            try engine.meta.delete(key, txn)
        }
        droppedInBatch = true
        effects.append(.drop(self))
    }

    /// For a view (Views.swift): its item's record, whose attributes the view mirrors; nil for an
    /// item. Throws before any change when the item is missing or attributes are set on a view.
    private func itemOfView(_ key: String, _ update: AttributeUpdate, _ txn: Transaction) throws -> ItemRecord? {
        let (item, view) = Views.split(key)
        guard view != nil else { return nil }
        if case .set = update { throw Self.viewAttributesRefused(key) }
        guard let id = try store.id(forKey: item, txn), let record = try store.item(id, txn) else {
            throw EngineError.invalidArgument("no element named '\(item)': add the item itself before its views")
        }
        return record
    }

    static func viewAttributesRefused(_ key: String) -> EngineError {
        .invalidArgument("attributes belong to the item: set them on '\(Views.split(key).item)', not on one of its views")
    }

    /// Copies an item's new attributes to its views, so filters see every view as the item.
    private func setViewAttributes(of key: String, _ attributes: String?, _ txn: Transaction,
                                   _ effects: inout [MemoryEffect]) throws {
        for member in try store.viewKeys(of: key, txn) {
            guard let id = try store.id(forKey: member, txn), let record = try store.item(id, txn),
                  record.attributes != attributes else { continue }
            membersChanged(try store.setAttributes(id: id, old: record, attributes: attributes, txn), &effects)
        }
    }

    /// Filters over these values must be resolved again once this write is applied: after
    /// the segment effects of the same write, so a resolution never misses an applied item.
    private func membersChanged(_ values: IndexedValues, _ effects: inout [MemoryEffect]) {
        if !values.isEmpty { effects.append(.membersChanged(self, values)) }
    }

    private func sameVector(_ id: UInt64, _ vector: [Float], _ txn: Transaction) throws -> Bool {
        guard let stored = try store.vectorBytes(id, txn), stored.count == vector.count * 4 else {
            return false
        }
        return vector.withUnsafeBytes { $0.elementsEqual(stored) }
    }

    /// Stores the id counter, and notes in the clock table when this batch's new ids (from
    /// `batchStart`) were allocated, so "added since a time" resolves to an id.
    func persistNextId(_ txn: Transaction, batchStart: UInt64) throws {
        guard !droppedInBatch else { return }  // its meta keys are gone with it
        try engine.meta.putUInt64(Engine.nextIdKey(number), nextId, txn)
        if nextId > batchStart {
            try store.noteClock(second: UInt64(max(0, Date().timeIntervalSince1970)), firstId: batchStart, txn)
        }
    }

    func appendCommitted(id: UInt64, key: String, vector: [Float]) {
        startLiveSegmentIfTrained()
        // The mutable segment is frozen as soon as it fills, so it always has room here. The
        // append is under the lock because SAVE freezes the mutable segment from another
        // thread: an item lands wholly before the freeze (and is sealed) or after it.
        let target = state.withLock { s in
            vector.withUnsafeBufferPointer { s.mutable.append(id: id, key: key, vector: $0.baseAddress!) }
            return s.mutable
        }
        if target is any LiveSegment { engine.indexer.wake() }
        if target.isFull { freezeMutable() }
    }

    /// Items an index that needs training waits for before its first seal: FAISS's k-means
    /// wants 39 points per centroid (or codebook entry). Until then the items are served by
    /// an exact scan, which is also the right answer for so few items. 0 when none are needed.
    /// Public: the ingest tool says so when a load ends below it.
    public var itemsToTrain: Int {
        state.withLock { s in s.template == nil && s.sealed.isEmpty ? trainHint : 0 }
    }

    /// Moves the mutable segment to the frozen list and schedules its sealing; an index that
    /// cannot be trained yet (too few items) keeps it mutable and exact instead.
    func freezeMutable() {
        let fresh = newGrowingSegment()
        let needed = itemsToTrain
        let full: (any GrowingSegment)? = state.withLock { s in
            // A full segment always has enough: flatCapacity waits for training's count.
            guard s.mutable.count > 0, s.mutable.count >= needed else { return nil }
            let f = s.mutable
            s.frozen.append(f)
            s.mutable = fresh
            return f
        }
        if let full { engine.sealer.schedule(self, full) }
    }

    /// Commit thread. The first seal of an IVF collection trains its quantizer while the next
    /// (flat, exact) segment already fills; from then on new items belong in the trained lists.
    /// So the flat segment gives way to a live IVF one at once: frozen and sealed early if it
    /// holds items, rather than scanned by every query until it is full.
    private func startLiveSegmentIfTrained() {
        guard !usesGraph else { return }
        let (template, isLive) = state.withLock { ($0.template, $0.mutable is any LiveSegment) }
        guard let template, !isLive, supportsLiveIVF(template) else { return }
        let fresh = newGrowingSegment()
        guard fresh is any LiveSegment else { return }
        let early: (any GrowingSegment)? = state.withLock { s in
            let old = s.mutable
            s.mutable = fresh
            guard old.count > 0 else { return nil }
            s.frozen.append(old)
            return old
        }
        if let early { engine.sealer.schedule(self, early) }
    }

    private func supportsLiveIVF(_ template: FaissIndex) -> Bool {
        let key = ObjectIdentifier(template)
        if let known = liveIVFSupport.withLock({ $0 }), known.template == key { return known.supported }
        let supported = IVFSegment.supports(template)
        liveIVFSupport.withLock { $0 = (key, supported) }
        return supported
    }

    func tombstoneCommitted(id: UInt64) {
        state.withLock { s in
            for seg in s.all.reversed() {
                if let first = seg.firstId, first <= id, let last = seg.lastId, id <= last {
                    seg.markDeleted(id: id)
                    return
                }
            }
        }
    }

    /// False when a compaction of this collection is already running.
    func beginCompaction() -> Bool {
        state.withLock { s in
            guard !s.compacting else { return false }
            s.compacting = true
            return true
        }
    }

    func endCompaction() { state.withLock { $0.compacting = false } }

    func markDropped() {
        state.withLock { $0.dropped = true }
    }

    public var isDropped: Bool { state.withLock { $0.dropped } }

    // MARK: - Writes (any thread)

    /// Queues a write; `completion` runs once it is durable and visible, or failed.
    public func submit(_ given: WriteRequest,
                       completion: @escaping @Sendable (Result<WriteOutcome, EngineError>) -> Void) {
        submit(given, replicated: nil, completion: completion)
    }

    /// `replicated`: on a replica, the primary's stream entry of this write (ReplicaApply).
    func submit(_ given: WriteRequest, replicated: [UInt8]?,
                completion: @escaping @Sendable (Result<WriteOutcome, EngineError>) -> Void) {
        let request: WriteRequest
        let prepared: [Float]?
        do {
            request = try projected(given)
            prepared = try prepare(request)
        } catch {
            completion(.failure(EngineError.wrap(error)))
            return
        }
        engine.writeQueue.submit(PreparedWrite(collection: self, request: request, preparedVector: prepared,
                                               replicated: replicated, completion: completion))
    }

    public func write(_ request: WriteRequest) async throws -> WriteOutcome {
        try await withCheckedThrowingContinuation { cont in
            submit(request) { cont.resume(with: $0.mapError { $0 as Error }) }
        }
    }

    /// Adds or replaces an item. Returns `.added` for a new key, `.updated` otherwise.
    @discardableResult
    public func upsert(key: String, vector: [Float], attributes: AttributeUpdate = .keep)
        async throws -> WriteOutcome
    {
        try await write(.upsert(key: key, vector: vector, attributes: attributes))
    }

    /// Removes an item; false if there was none.
    @discardableResult
    public func remove(key: String) async throws -> Bool {
        try await write(.remove(key: key)) == .removed
    }

    /// Replaces an item's attributes (nil or "" removes them); false if the key does not exist.
    @discardableResult
    public func setAttributes(key: String, _ json: String?) async throws -> Bool {
        try await write(.setAttributes(key: key, attributes: json)) != .notFound
    }

    /// Many writes at once (bulk loads); results in request order.
    public func write(batch: [WriteRequest]) async -> [Result<WriteOutcome, EngineError>] {
        guard !batch.isEmpty else { return [] }
        // One continuation per write would be costly for millions; a shared collector is not.
        let collector = BatchCollector(count: batch.count)
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            collector.onComplete = { done.resume() }
            for (i, r) in batch.enumerated() { submit(r) { collector.set(i, $0) } }
        }
        return collector.results
    }

    // MARK: - Reads (any thread)

    /// Items, as VCARD counts them (an item's views are not counted: Views.swift).
    public func itemCount() throws -> Int {
        try wrapped { try engine.environment.read { try store.vectorCount($0) - store.viewCount($0) } }
    }

    /// Stored vectors: items and their views.
    public func vectorCount() throws -> Int {
        try wrapped { try engine.environment.read { try store.vectorCount($0) } }
    }

    public func contains(key: String) throws -> Bool {
        try wrapped { try engine.environment.read { try store.id(forKey: key, $0) != nil } }
    }

    /// The vector as it was given.
    public func vector(key: String) throws -> [Float]? {
        try wrapped {
            try engine.environment.read { txn in
                guard let id = try store.id(forKey: key, txn) else { return nil }
                return try store.vector(id, txn)
            }
        }
    }

    public func item(key: String) throws -> ItemRecord? {
        try wrapped {
            try engine.environment.read { txn in
                guard let id = try store.id(forKey: key, txn) else { return nil }
                return try store.item(id, txn)
            }
        }
    }

    /// Up to `count` random keys, without repeats unless `allowRepeats`.
    public func randomKeys(_ count: Int, allowRepeats: Bool = false) throws -> [String] {
        try wrapped {
            try engine.environment.read { txn in
                let total = try store.vectorCount(txn) - store.viewCount(txn)
                guard total > 0, count > 0 else { return [] }
                let upper = max(nextIdSnapshot, 1)
                let want = allowRepeats ? count : min(count, total)
                var out: [String] = []
                var seen = Set<String>()
                var attempts = 0
                while out.count < want {
                    attempts += 1
                    let probe = UInt64.random(in: 0..<upper)
                    guard let (_, r) = try store.itemAtOrAfter(probe, txn) else { break }
                    if Views.split(r.key).view != nil { continue }  // items, not their views
                    if allowRepeats { out.append(r.key); continue }
                    if seen.insert(r.key).inserted { out.append(r.key) }
                    if attempts > want * 20 { return try allKeys(txn, limit: want, except: seen, into: out) }
                }
                return out
            }
        }
    }

    private func allKeys(_ txn: Transaction, limit: Int, except: Set<String>, into start: [String])
        throws -> [String]
    {
        var out = start
        var probe: UInt64 = 0
        while out.count < limit, let (id, r) = try store.itemAtOrAfter(probe, txn), id >= probe {
            if !except.contains(r.key), Views.split(r.key).view == nil { out.append(r.key) }
            probe = id + 1
        }
        return out
    }

    /// The collection's internal number (its tables are c<N>/...).
    public var numberForInfo: UInt32 { number }
    /// One past the highest id allocated so far.
    public var idHighWaterMark: UInt64 { nextIdSnapshot }

    /// Readable from any thread (`nextId` belongs to the commit thread): one past the last id
    /// any segment holds. Frozen segments count too, while the new mutable one is still empty.
    private var nextIdSnapshot: UInt64 {
        state.withLock { s in s.all.compactMap(\.lastId).max().map { $0 + 1 } ?? s.manifest.sealedThrough }
    }

    /// Live items whose indexed attribute has this value.
    public func count(attribute: String, value: String) throws -> Int {
        try wrapped { try engine.environment.read { try store.count(attribute: attribute, value: value, $0) } }
    }

    /// A description of the segments, for VINFO and tests.
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

/// Collects the results of a batch of writes completed on the commit thread.
final class BatchCollector: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var results: [Result<WriteOutcome, EngineError>]
    private var remaining: Int
    var onComplete: (() -> Void)?

    init(count: Int) {
        results = Array(repeating: .failure(.closed), count: count)
        remaining = count
    }

    func set(_ i: Int, _ r: Result<WriteOutcome, EngineError>) {
        lock.lock()
        results[i] = r
        remaining -= 1
        let done = remaining == 0
        lock.unlock()
        if done { onComplete?() }
    }
}
