// WriteQueue: the group commit. Every write of every collection goes through here.
//
// Owns: the queue of pending writes and the one commit thread that drains it.
// Invariants:
//   - A write's completion runs only after the LMDB transaction holding it has committed
//     (synced per the durability setting) and its effect is applied to the in-memory segments:
//     an acknowledged write is durable and visible to the next query.
//   - Writes commit and apply in submission order; ids are allocated on the commit thread only,
//     by the collections' writers (CollectionWriter.swift), which live in `run`'s frame.
//   - A failed transaction is retried write by write, so one bad write (or a full disk at one
//     moment) fails only the writes it must.
//   - `failure` is set when a transaction fails on its own (a full disk, a full map, an I/O
//     error: not a bad write, which fails alone inside a committing transaction) and cleared
//     by the next commit: the server is read-only in effect meanwhile (/healthz, INFO).
//   - Every committed change becomes a replication stream entry in the same transaction, in
//     commit order (ReplicationLog): replicas and backups see exactly what was acknowledged.
// Threads: `submit` from any thread; staging, committing and applying run on the commit thread.
// The pending list, its lock and the stop handshake are ThreadInbox's (shared with
// BackgroundThread); the writers' hand-over list is this queue's, under the inbox's lock.
// Completions run on the commit thread and must not block (they resume async callers).
// Rejected alternative: a transaction per write. LMDB's fsync per commit caps that at a few
// hundred writes per second; grouping makes thousands of writes cost one fsync.
import Foundation
import LookalikeStorage
import Synchronization

/// What a write asks for. Vectors are validated and prepared before they get here.
public enum WriteRequest: Sendable {
    case upsert(key: String, vector: [Float], attributes: AttributeUpdate)
    case remove(key: String)
    case setAttributes(key: String, attributes: String?)
    /// Deletes the whole collection (Engine.dropCollection).
    case dropCollection
}

/// Why writes are failing: the first failure since the last commit (WriteQueue's `failure`).
public struct WriteFailure: Sendable, Equatable {
    public let since: Date
    public let error: String
}

public enum AttributeUpdate: Sendable, Equatable {
    /// Keep the item's attributes (none for a new item).
    case keep
    /// Replace them (nil removes them).
    case set(String?)
}

public enum WriteOutcome: Sendable, Equatable {
    /// A new key.
    case added
    /// An existing key got a new vector or attributes.
    case updated
    /// An upsert of what the key already holds (a load run again): nothing was written.
    case unchanged
    case removed
    /// remove or setAttributes of a key that does not exist.
    case notFound
}

/// A validated write: the request plus the vector as the index wants it (normalised for cosine).
struct PreparedWrite: @unchecked Sendable {
    let collection: Collection
    let request: WriteRequest
    let preparedVector: [Float]?
    /// On a replica: the primary's stream entry for this write, recorded as it came.
    var replicated: [UInt8]? = nil
    let completion: @Sendable (Result<WriteOutcome, EngineError>) -> Void
}

/// What a committed write changes in memory, applied in order after the commit.
enum MemoryEffect {
    case add(Collection, id: UInt64, key: String, vector: [Float])
    case tombstone(Collection, id: UInt64)
    /// Attribute values whose member lists changed (MemberCache).
    case membersChanged(Collection, IndexedValues)
    case drop(Collection)
}

final class WriteQueue: @unchecked Sendable {
    /// The pending writes; a write submitted once stop is asked fails `.closed` (ThreadInbox).
    private let inbox = ThreadInbox<PreparedWrite>(late: .refused)
    private let environment: Environment
    /// Where committed writes become stream entries (ReplicationLog).
    private let log: ReplicationLog
    private let maxBatch: Int
    /// The `commit` fault point (Faults.swift).
    private let faults: FaultInjection
    private var thread: Thread?
    /// Writers of new collections, on their way to the commit thread (under the inbox's lock).
    private var adopted: [CollectionWriter] = []
    /// Backpressure: called before each batch is taken, may wait (Indexing.swift). Set before
    /// `start`.
    var throttle: () -> Void = {}
    /// Set by a failed transaction, cleared by the next commit (the header's invariant).
    private let failureState = Mutex<WriteFailure?>(nil)
    var failure: WriteFailure? { failureState.withLock { $0 } }

    init(environment: Environment, log: ReplicationLog, maxBatch: Int, faults: FaultInjection) {
        self.environment = environment
        self.log = log
        self.maxBatch = max(1, maxBatch)
        self.faults = faults
    }

    func start() {
        let t = Thread { [self] in run() }
        t.name = "lookalike-commit"
        t.stackSize = 1 << 20
        thread = t
        t.start()
    }

    /// Hands a collection's writer to the commit thread, before any write of it is submitted
    /// (Engine: at open, and in createCollection before the collection is registered).
    func adopt(_ writer: sending CollectionWriter) {
        inbox.ifAccepting { adopted.append(writer) }
    }

    func submit(_ write: PreparedWrite) {
        if !inbox.post(write) { write.completion(.failure(.closed)) }
    }

    /// Commits what is queued, then stops the thread. Later submits fail with `.closed`.
    func stop() {
        inbox.stop { adopted = [] }  // writers hold their collections, which hold the engine: a cycle
        // The thread's closure holds this queue: dropping the thread breaks that cycle, so a
        // closed engine's LMDB environment is freed (DEBUG RELOAD opened a new one each time).
        thread = nil
    }

    private func run() {
        // The commit thread's own: no other thread has a path to them (CollectionWriter.swift).
        var writers = CommitWriters()
        while inbox.waitForItems() {
            // Waits outside the lock, so submitters are never blocked, only acknowledged later.
            throttle()
            // Adopted with the batch they precede: a collection's writer comes before its writes.
            let (batch, arrived) = inbox.take(max: maxBatch) {
                defer { adopted = [] }
                return adopted
            }
            for w in arrived { writers.adopt(w) }
            commit(batch, &writers)
        }
    }

    private func commit(_ batch: [PreparedWrite], _ writers: inout CommitWriters) {
        let started = DispatchTime.now().uptimeNanoseconds
        let collections = uniqueCollections(batch.map(\.collection))
        for c in collections { writers.with(c) { $0.beginBatch() } }
        var outcomes: [Result<WriteOutcome, EngineError>] = []
        var effects: [MemoryEffect] = []
        do {
            try log.transaction(environment) { txn, emit in
                for w in batch {
                    do {
                        // No writer: the collection was dropped by an earlier batch.
                        guard let outcome = try writers.with(w.collection, { try w.collection.stage(w, txn, &$0, &effects) })
                        else { throw EngineError.unknownCollection(w.collection.name) }
                        outcomes.append(.success(outcome))
                        if let entry = Self.streamEntry(w, outcome) { emit(entry) }
                    } catch let e as EngineError where e.isPerWrite {
                        outcomes.append(.failure(e))
                    }
                }
                for c in collections { try writers.with(c) { try c.persistNextId(txn, $0) } }
                try faults.check(.commit)
            }
        } catch {
            // The transaction is gone: undo id allocation, then retry one by one so only the
            // writes that cannot commit fail.
            for c in collections { writers.with(c) { $0.rollBack() } }
            if batch.count > 1 {
                for w in batch { commit([w], &writers) }
            } else {
                let wrapped = EngineError.wrap(error)
                failureState.withLock { if $0 == nil { $0 = WriteFailure(since: Date(), error: "\(wrapped)") } }
                batch[0].completion(.failure(wrapped))
            }
            return
        }
        failureState.withLock { $0 = nil }
        // Operators' view of the group commit (Statistics.swift): its size, and its time with
        // the fsync, for the batches that committed (a failed one is retried write by write).
        EngineMetrics.commitBatchSize.record(batch.count)
        EngineMetrics.commitDuration.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - started))
        for e in effects { apply(e, &writers) }
        for (w, outcome) in zip(batch, outcomes) { w.completion(outcome) }
    }

    /// The stream entry of a committed write: the primary's own bytes on a replica; else the
    /// write itself when it changed something (an unchanged upsert is not replicated).
    private static func streamEntry(_ w: PreparedWrite, _ outcome: WriteOutcome) -> [UInt8]? {
        if let replicated = w.replicated { return replicated }
        switch outcome {
        case .added, .updated, .removed: return StreamEntry.write(collection: w.collection.name, w.request).encoded()
        case .unchanged, .notFound: return nil
        }
    }

    private func uniqueCollections(_ list: [Collection]) -> [Collection] {
        var seen = Set<ObjectIdentifier>()
        return list.filter { seen.insert(ObjectIdentifier($0)).inserted }
    }

    private func apply(_ effect: MemoryEffect, _ writers: inout CommitWriters) {
        switch effect {
        case .add(let c, let id, let key, let vector): c.appendCommitted(id: id, key: key, vector: vector)
        case .tombstone(let c, let id): c.tombstoneCommitted(id: id)
        case .membersChanged(let c, let values): c.memberCache.invalidate(values)
        case .drop(let c):
            c.markDropped()
            c.engine.forget(c)
            writers.retire(c)
        }
    }
}

extension EngineError {
    /// Errors that fail one write without aborting its transaction.
    var isPerWrite: Bool {
        switch self {
        case .storage, .index, .closed: return false
        default: return true
        }
    }
}
