// IVFSegment: the live segment (LiveSegment.swift) of an IVF collection once its quantizer is
// trained: new items are appended to the trained inverted lists within milliseconds, so a
// query probes them as it probes a sealed segment, instead of scanning them all.
//
// Owns: `buffer`, a FlatSegment of every appended row; `index`, a copy of the collection's
// trained empty IVF index (the template), whose position p holds buffer position p; `indexed`;
// and `lock`, which orders list appends against searches.
// Invariants (besides LiveSegment's): FAISS's inverted lists are growable arrays that move
// when appended to, so a search of `index` holds `lock` shared and an append holds it
// exclusively. The expensive part of an add, choosing each item's list, reads only the
// trained quantizer and runs outside the lock: searches wait for memory copies only.
// Threads: `append` from the commit thread only; `indexPending` from the engine's indexer only
// (one at a time); searches from any thread.
import Glibc

public final class IVFSegment: LiveSegment, @unchecked Sendable {
    public let buffer: FlatSegment
    public let index: FaissIndex
    public let info: FaissInfo
    public let metric: FaissMetric
    public let progress = IndexProgress()
    private let lock: UnsafeMutablePointer<pthread_rwlock_t>

    /// A new empty segment for `capacity` vectors, adding to a copy of `template` (a trained,
    /// empty IVF index with no pre-transform: `supports`).
    public init(template: FaissIndex, dimension: Int, capacity: Int, metric: FaissMetric) throws {
        index = try template.clone()
        info = try index.info()
        self.metric = metric
        buffer = FlatSegment(dimension: dimension, capacity: capacity, metric: metric)
        lock = .allocate(capacity: 1)
        pthread_rwlock_init(lock, nil)
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    /// Whether a trained template can back a live IVF segment (an IVF index at the top, no
    /// pre-transform such as OPQ or PCA).
    public static func supports(_ template: FaissIndex) -> Bool {
        guard let info = try? template.info(), info.kind == .ivf, info.isTrained else { return false }
        var probe: Float = 0
        return (try? template.assignLists(&probe, count: 0)) != nil
    }

    /// `efConstruction` is a graph's: lists have no beam.
    public func addToIndex(from: Int, count: Int, threads: Int, efConstruction: Int?) throws {
        let rows = buffer.vectors + from * dimension
        let lists = try index.assignLists(rows, count: count)
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        try index.addAssigned(rows, count: count, lists: lists)
    }

    /// Under the lock, shared: the lists must not move while their sizes are read.
    public func indexMemory() -> FaissMemory {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return (try? index.memory()) ?? FaissMemory()
    }

    public func indexSearch(_ query: UnsafePointer<Float>, k: Int, effort: SearchEffort,
                            members: UnsafeRawBufferPointer?) throws -> (distances: [Float], positions: [Int64]) {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try index.search(query, queryCount: 1, k: k, effort: effort, selector: members)
    }
}
