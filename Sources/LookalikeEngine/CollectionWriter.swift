// CollectionWriter: the part of a collection only the commit thread may touch, in a value the
// commit thread owns (the rest of a collection is shared: Collection.swift).
//
// Owns: per collection, the next id to allocate, where the batch being built began allocating
// (to undo it when the batch's transaction fails), and whether that batch stages the
// collection's drop. `CommitWriters` holds the writers of every open collection.
// Invariants:
//   - One writer per open collection. Recovery (`Collection.open`) builds it from what is stored
//     and replayed; the engine hands it to the write queue (`WriteQueue.adopt`) before any write
//     of the collection can be queued: Engine.init before the commit thread starts,
//     createCollection before the collection is in the registry. A committed drop retires it.
//   - Ids are allocated here only, in commit order, and never reused: a failed transaction
//     rolls back to `batchStart`, past which no committed write holds an id.
// Threads: the commit thread only, and the compiler holds the code to it. A writer is not
// Sendable; it crosses to the commit thread once, as a `sending` argument (the giver cannot
// use it after), and the commit thread keeps the writers in a local of its loop
// (WriteQueue.run), passed down `inout`: no other thread has a path to them. Capturing one in a
// @Sendable closure, or using it after handing it over, does not compile; the only way around is
// an `@unchecked Sendable` holder, as the queue's hand-over list is (under its lock, drained by
// the commit thread). Other threads that want "ids so far" read the segments
// (Collection.idHighWaterMark).
// Why this design: a global actor makes each access an async hop (or a runtime check with
// `assumeIsolated`), and a lock would be taken per write; a value on the commit thread's
// stack costs one dictionary lookup per write, as the batch's bookkeeping did before.
// Rejected: keeping the fields in Collection behind a comment ("commit thread only"), which
// any thread could read and write.

struct CollectionWriter {
    let collection: Collection
    /// The next id to allocate.
    private(set) var nextId: UInt64
    /// `nextId` when the batch being built began: ids from here on are the batch's.
    private(set) var batchStart: UInt64
    /// The batch being built stages this collection's drop: later writes in it are refused
    /// (they would go into tables the drop emptied), and no id counter is stored.
    private(set) var droppedInBatch = false

    init(collection: Collection, nextId: UInt64) {
        self.collection = collection
        self.nextId = nextId
        batchStart = nextId
    }

    mutating func allocateId() -> UInt64 {
        defer { nextId += 1 }
        return nextId
    }

    mutating func noteDrop() { droppedInBatch = true }

    /// A batch begins: what a failed transaction rolls back to.
    mutating func beginBatch() {
        batchStart = nextId
        droppedInBatch = false
    }

    /// The batch's transaction failed: its ids are free again, its drop did not happen.
    mutating func rollBack() {
        nextId = batchStart
        droppedInBatch = false
    }
}

/// Not Sendable (inferred otherwise): a writer lives on the commit thread.
@available(*, unavailable)
extension CollectionWriter: Sendable {}

/// The writers of the open collections, on the commit thread (WriteQueue.run).
struct CommitWriters {
    private var byCollection: [ObjectIdentifier: CollectionWriter] = [:]

    mutating func adopt(_ writer: CollectionWriter) {
        byCollection[ObjectIdentifier(writer.collection)] = writer
    }

    /// Retires a dropped collection's writer. The writer holds its collection, so no other
    /// collection can have its identifier while the writer is here.
    mutating func retire(_ c: Collection) {
        byCollection[ObjectIdentifier(c)] = nil
    }

    /// Runs `body` on `c`'s writer, in place (one lookup); nil when `c` has none (dropped).
    @discardableResult
    mutating func with<T>(_ c: Collection, _ body: (inout CollectionWriter) throws -> T) rethrows -> T? {
        try Self.run(&byCollection[ObjectIdentifier(c)], body)
    }

    private static func run<T>(_ writer: inout CollectionWriter?, _ body: (inout CollectionWriter) throws -> T) rethrows -> T? {
        guard writer != nil else { return nil }
        return try body(&writer!)
    }
}

@available(*, unavailable)
extension CommitWriters: Sendable {}
