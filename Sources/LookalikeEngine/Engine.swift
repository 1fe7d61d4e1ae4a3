// Engine: the collections of one data folder, and the machinery they share.
//
// Owns: the LMDB environment (one per data folder), the meta table, the write queue (group
// commit) and the sealer, and the registry of open collections.
//
// Data folder layout:
//   data.mdb, lock.mdb        LMDB: every item, vector, attribute index, definition, manifest
//   lookalike.lock            held (flock) by the one process that has the folder open
//   segments/c<N>/            FAISS segment files of collection number N
// Meta keys: collection:<name> -> {"number", "definition"}; manifest:<N> -> Manifest JSON;
// nextid:<N> -> next id; projection:<N> -> REDUCE's matrix (Projection.swift);
// category-model:<N> -> the category model and its blend (CategoryTraining.swift);
// next-collection-number -> counter.
//
// Invariants: a collection is in the registry iff its definition is in meta (after open);
// collection numbers are never reused, so a dropped collection's leftovers cannot be mistaken
// for a new one's.
// Threads: every public method may be called from any thread. `createCollection` and `close`
// serialise on `adminLock`; dropping goes through the write queue like any write.
import Dispatch
import Foundation
import Logging
import LookalikeIndex
import LookalikeStorage
import Synchronization

public final class Engine: @unchecked Sendable {
    public let directory: String
    public let options: EngineOptions
    public let logger: Logger
    let environment: Environment
    private let directoryLock: DirectoryLock
    let meta: MetaStore
    let writeQueue: WriteQueue
    /// Set while writes fail as a whole (a full disk or map, an I/O error), until one commits.
    public var writeFailure: WriteFailure? { writeQueue.failure }
    /// The stream of committed changes replicas follow, with its backlog (ReplicationLog).
    public let replication: ReplicationLog
    /// Points that fail on purpose while a test arms them (Faults.swift); never armed otherwise.
    public let faults = FaultInjection()
    /// Keeps segment files from being deleted while a snapshot copies them (Snapshot.swift).
    let segmentPins = SegmentPins()
    let sealer: Sealer
    /// Merges sealed segments in the background, and runs compactions (Merging.swift).
    let merger: Merger
    /// Links new items into graph segments in the background (Indexing.swift).
    private(set) var indexer: Indexer!
    /// Fits category models in the background, one at a time (CategoryTraining).
    let categoryTrainer = CategoryTrainer()
    /// Keyed by the name's UTF-8, not the String: String equality is Unicode-canonical, and
    /// names are byte strings ("é" and "e" + U+0301 are two collections).
    private let registry = Mutex<[[UInt8]: Collection]>([:])
    private let adminLock = NSLock()
    private var closed = false


    struct StoredDefinition: Codable {
        var number: UInt32
        var definition: CollectionDefinition
    }

    /// Opens (creating if needed) the data folder and every collection in it.
    public init(directory: String, options: EngineOptions = EngineOptions(),
                logger: Logger = Logger(label: "lookalike.engine")) throws {
        self.directory = directory
        self.options = options
        self.logger = logger
        Self.finishInterruptedInstall(directory, logger: logger)
        // The engine runs its own threads; BLAS threads inside each call would oversubscribe.
        VectorMath.setBLASThreads(1)
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            directoryLock = try DirectoryLock(directory: directory)
            environment = try Environment(path: directory, options: options.storage)
            meta = try MetaStore(environment: environment)
        } catch { throw EngineError.wrap(error) }
        do { replication = try ReplicationLog(meta: meta, environment: environment, limit: options.replicationBacklogBytes) }
        catch { throw EngineError.wrap(error) }
        writeQueue = WriteQueue(environment: environment, log: replication, maxBatch: options.maxBatch, faults: faults)
        merger = Merger(options: options)
        sealer = Sealer(options: options)
        indexer = Indexer(options: options, collections: { [weak self] in
            self?.registry.withLock { Array($0.values) } ?? []
        })
        indexer.start()
        do { try openCollections() } catch {
            indexer.stop()
            throw EngineError.wrap(error)
        }
        indexer.wake()
        writeQueue.throttle = { [indexer] in indexer!.throttle() }
        writeQueue.start()
    }

    private func openCollections() throws {
        let stored: [(StoredDefinition, Manifest, UInt64)] = try environment.read { txn in
            try meta.entries(prefix: MetaLayout.definitionPrefix, txn).map { _, bytes in
                let s = try JSONDecoder().decode(StoredDefinition.self, from: Data(bytes))
                let m = try meta.get(MetaLayout.manifest(s.number), txn)
                    .map { try JSONDecoder().decode(Manifest.self, from: Data($0)) } ?? Manifest()
                let n = try meta.getUInt64(MetaLayout.nextId(s.number), txn) ?? 0
                return (s, m, n)
            }
        }
        try removeOrphans(known: Set(stored.map(\.0.number)))
        removePartialExports()
        for (s, manifest, nextId) in stored {
            let started = DispatchTime.now()
            let c = try Collection(engine: self, definition: s.definition, number: s.number)
            writeQueue.adopt(try c.open(manifest: manifest, nextId: nextId))
            try c.noteInterruptedNewItemsJob()
            registry.withLock { $0[Array(s.definition.name.utf8)] = c }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
            logger.info("opened collection", metadata: [
                "collection": "\(s.definition.name)", "segments": "\(manifest.segments.count)",
                "seconds": "\(String(format: "%.3f", seconds))"])
        }
    }

    /// Tables and segment folders of collections that were dropped (or half created).
    private func removeOrphans(known: Set<UInt32>) throws {
        for name in try environment.tableNames() where name.hasPrefix("c") {
            guard let slash = name.firstIndex(of: "/"), let n = UInt32(name.dropFirst().prefix(upTo: slash)) else { continue }
            if !known.contains(n) { try environment.deleteTable(name) }
        }
        let segments = directory + "/segments"
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: segments)) ?? [] {
            if let n = UInt32(entry.dropFirst()), entry.hasPrefix("c"), !known.contains(n) {
                try? FileManager.default.removeItem(atPath: "\(segments)/\(entry)")
            }
        }
    }

    /// Exports of batch jobs that a stop cut short (no job runs before the engine is open).
    private func removePartialExports() {
        let folder = directory + "/exports"
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        where entry.hasSuffix(JSONLinesFile.partialSuffix) {
            try? FileManager.default.removeItem(atPath: "\(folder)/\(entry)")
        }
    }

    // MARK: - Collections

    public func collection(_ name: String) -> Collection? {
        registry.withLock { $0[Array(name.utf8)] }
    }

    public func collectionNames() -> [String] {
        registry.withLock { $0.values.map(\.name) }.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    /// Creates a collection; throws `.collectionExists` if the name is taken.
    @discardableResult
    public func createCollection(_ definition: CollectionDefinition) throws -> Collection {
        try createCollection(definition, replicated: nil)
    }

    /// `replicated`: on a replica, the primary's stream entry of this creation.
    @discardableResult
    func createCollection(_ definition: CollectionDefinition, replicated: [UInt8]?) throws -> Collection {
        try definition.validate(limits: options)
        _ = try Collection.probe(definition)
        adminLock.lock()
        defer { adminLock.unlock() }
        guard !closed else { throw EngineError.closed }
        if collection(definition.name) != nil { throw EngineError.collectionExists(definition.name) }
        let number: UInt32 = try wrap {
            try replication.transaction(environment) { txn, emit in
                emit(replicated ?? StreamEntry.create(definition).encoded())
                let n = UInt32(try meta.getUInt64(MetaLayout.collectionCounter, txn) ?? 0) + 1
                try meta.putUInt64(MetaLayout.collectionCounter, UInt64(n), txn)
                let stored = StoredDefinition(number: n, definition: definition)
                try meta.put(MetaLayout.definition(definition.name), Array(try JSONEncoder().encode(stored)), txn)
                try meta.put(MetaLayout.manifest(n), Array(try JSONEncoder().encode(Manifest())), txn)
                try meta.putUInt64(MetaLayout.nextId(n), 0, txn)
                try meta.put(MetaLayout.attributeKinds(n), Collection.emptyKindsRecord(), txn)
                try meta.put(MetaLayout.attributeIndex(n), Collection.attributeIndexVersion, txn)
                if let p = Projection.of(definition) { try meta.put(MetaLayout.projection(n), p.bytes, txn) }
                return n
            }
        }
        let c = try wrap { try Collection(engine: self, definition: definition, number: number) }
        let writer = try wrap { try c.open(manifest: Manifest(), nextId: 0) }
        writeQueue.adopt(writer)  // before the registry: no write of it can be queued sooner
        registry.withLock { $0[Array(definition.name.utf8)] = c }
        return c
    }

    /// Creates the collection unless one of that name exists; returns the one that exists.
    /// With `firstWrite`, that write is checked against the definition first: a write that
    /// would be refused creates nothing (a NaN in the first VADD must not fix a dimension).
    public func createCollectionIfMissing(_ definition: CollectionDefinition,
                                          firstWrite: WriteRequest? = nil) throws -> Collection {
        if let c = collection(definition.name) { return c }
        if let firstWrite {
            try definition.validate(limits: options)
            let write = try Collection.projected(firstWrite, Projection.of(definition), definition)
            _ = try Collection.prepare(write, definition: definition, options: options)
        }
        do { return try createCollection(definition) } catch EngineError.collectionExists {
            return collection(definition.name)!
        }
    }

    /// Deletes a collection and all its items; false if there was none.
    @discardableResult
    public func dropCollection(_ name: String) async throws -> Bool {
        guard let c = collection(name) else { return false }
        let items = (try? c.itemCount()) ?? 0  // for the log line: a table statistic, cheap
        do {
            let outcome: WriteOutcome = try await withCheckedThrowingContinuation { cont in
                writeQueue.submit(PreparedWrite(collection: c, request: .dropCollection, preparedVector: nil) {
                    cont.resume(with: $0.mapError { $0 as Error })
                })
            }
            if outcome == .removed { logger.notice("dropped collection", metadata: ["collection": "\(name)", "items": "\(items)"]) }
            return outcome == .removed
        } catch EngineError.unknownCollection {
            return false  // dropped meanwhile (another DEL, or its last element removed)
        }
    }

    /// Called on the commit thread after a drop committed.
    func forget(_ c: Collection) {
        registry.withLock { r in if r[Array(c.name.utf8)] === c { r[Array(c.name.utf8)] = nil } }
        segmentPins.removeFolder(c.segmentDirectory)
    }

    /// Records a manifest, unless the collection was dropped meanwhile. Any thread.
    /// Stores a collection's manifest (and forgets tombstones no segment needs any more, in the
    /// same transaction); false when the collection was dropped meanwhile.
    func commitManifest(_ manifest: Manifest, for c: Collection, clearingTombstones dropped: [UInt64] = []) throws -> Bool {
        try environment.write { txn in
            guard try isCurrent(c, txn) else { return false }
            try meta.put(MetaLayout.manifest(c.number), Array(try JSONEncoder().encode(manifest)), txn)
            try c.store.clearTombstones(dropped, txn)
            try faults.check(.manifestCommit)
            return true
        }
    }

    /// True while `c` is the collection its name stands for (not dropped, nor dropped and
    /// created again), as of `txn`: background jobs check it in the transaction they write in.
    func isCurrent(_ c: Collection, _ txn: Transaction) throws -> Bool {
        guard let bytes = try meta.get(MetaLayout.definition(c.name), txn),
              let s = try? JSONDecoder().decode(StoredDefinition.self, from: Data(bytes)) else { return false }
        return s.number == c.number
    }

    /// Bytes the LMDB file uses.
    public func storageBytes() -> Int { environment.usedBytes() }

    /// The indexing backlog and backpressure, for INFO (IndexingStatistics).
    public func indexingStatistics() -> IndexingStatistics {
        var s = indexer.statistics
        s.unindexed = registry.withLock { Array($0.values) }.reduce(0) { $0 + $1.unindexed.items }
        return s
    }

    // MARK: - Lifecycle

    /// Seals every collection's mutable segment (and retries seals that failed), and waits
    /// until all seals are done: after this, a restart replays nothing (SAVE), except the
    /// items of an index still too small to train, which stay exact. Throws when a seal
    /// failed: its items are safe in LMDB and searchable, and it is retried later.
    public func persist() throws {
        let all = collectionNames().compactMap { collection($0) }
        for c in all {
            c.retryFailedSeals()
            c.freezeMutable()
        }
        sealer.waitIdle()
        for c in all where !c.isDropped {
            if let f = c.sealFailure { throw EngineError.sealFailed(collection: c.name, reason: f.reason) }
        }
    }

    /// Flushes LMDB to disk, whatever the sync mode: the end of a load run without fsync.
    public func sync() throws {
        try wrap { try environment.sync() }
    }

    /// Waits for background seals already scheduled.
    public func waitForSealing() { sealer.waitIdle() }

    /// Waits until every item written so far is linked into its graph (benchmarks, tests).
    public func waitForIndexing() {
        for c in registry.withLock({ Array($0.values) }) {
            for g in c.liveSegmentsWithBacklog() { _ = indexer.waitIndexed(g, of: c) }
        }
    }

    /// Waits for the seals and then the merges scheduled so far (tests, benchmarks).
    public func waitForMerging() {
        sealer.waitIdle()
        merger.run {}
    }

    /// Commits queued writes, lets a running seal finish, and stops. Idempotent.
    public func close() {
        adminLock.lock()
        defer { adminLock.unlock() }
        guard !closed else { return }
        closed = true
        categoryTrainer.stop()  // a fit reads LMDB and searches: it ends before anything else stops
        writeQueue.stop()
        indexer.stop()
        merger.cancelAndWait()
        sealer.cancelPending()
        sealer.waitIdle()
        sealer.stop()
        registry.withLock { $0.removeAll() }
        directoryLock.release()
    }

    func wrap<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch { throw EngineError.wrap(error) }
    }
}
