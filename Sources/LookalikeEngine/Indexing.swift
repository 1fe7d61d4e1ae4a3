// Indexing: links newly committed items into their collection's graph segment in the
// background, and slows writers down when it falls behind (backpressure).
//
// Owns: the indexer thread, and the condition that writers (backpressure) and seals (waiting
// for a frozen graph to be complete) wait on.
// Invariants:
//   - Items are linked in commit order, oldest segment first, a bounded batch at a time, so a
//     frozen segment's seal is never starved by the mutable one.
//   - Backpressure only delays: the commit thread waits while the unlinked bytes of every
//     collection exceed `maxUnindexedBytes`, and goes on regardless once the indexer makes no
//     progress for `stallSeconds` (a failed segment, a stop). No write is refused or lost: the
//     waiting writes are queued, and every item stays searchable through the exact tail.
// Threads: `wake` from the commit thread (after a commit applied), `throttle` from the commit
// thread only, `waitIndexed` from the sealer; the indexer thread runs at `buildNice`, so
// queries (at normal priority) take the cores first.
import Foundation
import LookalikeIndex

final class Indexer: @unchecked Sendable {
    private let condition = NSCondition()
    private var stopping = false
    private var woken = false
    private var thread: Thread?
    private let options: EngineOptions
    /// The collections to serve, read at each round (the engine's registry).
    private let collections: @Sendable () -> [Collection]
    /// Items linked per insertion call: small enough that a seal or a stop waits little, large
    /// enough to keep both build threads busy.
    static let batch = 512
    /// Backpressure gives up waiting when nothing was linked for this long.
    static let stallSeconds = 10.0

    // Counters for INFO (read under the condition's lock).
    private(set) var linkedTotal = 0
    private(set) var throttledSeconds = 0.0
    private(set) var throttledBatches = 0
    private var lastProgress = Date()

    init(options: EngineOptions, collections: @escaping @Sendable () -> [Collection]) {
        self.options = options
        self.collections = collections
    }

    func start() {
        let t = Thread { [self] in run() }
        t.name = "lookalike-indexer"
        thread = t
        t.start()
    }

    /// There may be new items to link.
    func wake() {
        condition.lock()
        woken = true
        condition.signal()
        condition.unlock()
    }

    /// Stops the thread after its current batch; waiters return.
    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
        thread = nil
    }

    private func run() {
        FaissIndex.setBuildNice(options.buildNice)
        while true {
            condition.lock()
            while !woken && !stopping { condition.wait() }
            woken = false
            let stop = stopping
            condition.unlock()
            if stop { return }
            while linkOneRound() {}
        }
    }

    /// One batch for every collection that has items waiting; false when there were none.
    private func linkOneRound() -> Bool {
        var linked = 0
        for c in collections() where !c.isDropped {
            for graph in c.graphsWithBacklog() {
                if isStopping { return false }
                do {
                    linked += try graph.indexPending(limit: Self.batch, threads: options.buildThreads)
                } catch {
                    // The items stay searchable through the exact tail; the seal rebuilds it.
                    c.engine.logger.error("linking new items into the graph failed; they stay searchable exactly and the seal rebuilds the segment",
                                          metadata: ["collection": "\(c.name)", "error": "\(error)"])
                }
                break  // oldest segment first; the next round takes the next batch
            }
        }
        condition.lock()
        if linked > 0 {
            linkedTotal += linked
            lastProgress = Date()
        }
        condition.broadcast()
        condition.unlock()
        return linked > 0
    }

    private var isStopping: Bool { condition.withLock { stopping } }

    /// Waits until every item of `graph` is linked; false when the engine stops or the
    /// collection is dropped first. A failed graph counts as done (its seal rebuilds it).
    func waitIndexed(_ graph: GraphSegment, of collection: Collection) -> Bool {
        wake()
        condition.lock()
        defer { condition.unlock() }
        while graph.backlog > 0 && graph.indexFailure == nil {
            if stopping || collection.isDropped { return false }
            _ = condition.wait(until: Date(timeIntervalSinceNow: 0.1))
        }
        return true
    }

    /// Backpressure, before the commit thread takes its next batch: waits while more than
    /// `maxUnindexedBytes` of items wait to be linked.
    func throttle() {
        guard over() else { return }
        let started = Date()
        condition.lock()
        defer { condition.unlock() }
        throttledBatches += 1
        while !stopping {
            condition.unlock()
            let still = over()
            condition.lock()
            if !still || Date().timeIntervalSince(max(lastProgress, started)) > Self.stallSeconds { break }
            _ = condition.wait(until: Date(timeIntervalSinceNow: 0.05))
        }
        throttledSeconds += Date().timeIntervalSince(started)
    }

    private func over() -> Bool {
        var bytes = 0
        for c in collections() where !c.isDropped { bytes += c.unindexed.bytes }
        return bytes > options.maxUnindexedBytes
    }

    /// For INFO: items linked since start, and how long writers were held back.
    var statistics: (linked: Int, throttledSeconds: Double, throttledBatches: Int) {
        condition.withLock { (linkedTotal, throttledSeconds, throttledBatches) }
    }
}
