// Indexing: adds newly committed items to their collection's live segment in the background
// (LiveSegment.swift: links them into an HNSW graph, or appends them to trained IVF lists), and
// slows writers down when it falls behind (backpressure).
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
//   - One batch links at a time (`linking`): a graph has a single writer.
// Threads: `wake` from the commit thread (after a commit applied), `throttle` from the commit
// thread only, `waitIndexed` from the sealer. Two linking threads take turns:
//   - the indexer, at `buildNice`, links while writes stream in, so queries (at normal
//     priority) take the cores first;
//   - the drainer, at normal priority, links what is left once writes pause for
//     `quietSeconds`. An unlinked item costs every query an exact distance, so a tail left
//     behind by a niced indexer under query load would cost queries more than linking it
//     (measured: 2× slower queries for 10 s after a load). A thread cannot raise its own
//     priority back without privileges, hence a second thread rather than a renice.
//   - Catching up: while writers wait in backpressure and searches are being served, the
//     indexer links with a cheaper beam (`catchUpEfConstruction`), so that writes keep their
//     rate without taking the cores from searches; with no searches it links at full quality
//     and writers wait. Items linked so are linked again at full efConstruction when their
//     segment is merged into a larger one (Merging.swift).
// `noteSearch` from any search thread (one relaxed store).
import Foundation
import LookalikeIndex
import Synchronization

final class Indexer: @unchecked Sendable {
    private let condition = NSCondition()
    private var stopping = false
    private var woken = false
    /// When the commit thread last reported new items (under `condition`).
    private var lastWrite = Date.distantPast
    /// The commit thread is held back with writes queued (under `condition`): writes have not
    /// paused, although none commits, so the drainer must not take over from the indexer.
    private var throttling = false
    /// When the commit thread was last held back (under `condition`).
    private var lastThrottled = Date.distantPast
    /// Linking threads still running (under `condition`): `stop` waits for none.
    private var running = 0
    /// Wakes so far (under `condition`): the drainer's way not to miss one while it looks.
    private var wakes = 0
    /// Held around each batch: one linker at a time.
    private let linking = NSLock()
    private let options: EngineOptions
    /// The collections to serve, read at each round (the engine's registry).
    private let collections: @Sendable () -> [Collection]
    /// Items linked per insertion call: small enough that a seal or a stop waits little, large
    /// enough to keep both build threads busy.
    static let batch = 512
    /// Backpressure gives up waiting when nothing was linked for this long.
    static let stallSeconds = 10.0
    /// Writes count as paused after this long without one; the drainer then links the rest.
    static let quietSeconds = 0.05

    // Counters for INFO (read under the condition's lock).
    private(set) var linkedTotal = 0
    /// Of those, linked by the drainer at normal priority (writes had paused).
    private(set) var drainedTotal = 0
    /// Of those, linked with the catch-up beam.
    private(set) var caughtUpTotal = 0
    /// When the last search began (DispatchTime nanoseconds; any thread).
    private let lastSearch = Atomic<UInt64>(0)
    /// Searches this recent count as "being served" for the catch-up beam.
    static let searchingSeconds = 1.0
    /// Writers held back this recently still count as waiting: between two batches the
    /// backlog dips under the bound, and the writers' next commit is only about to come.
    static let heldSeconds = 1.0
    private(set) var throttledSeconds = 0.0
    private(set) var throttledBatches = 0
    private var lastProgress = Date()

    init(options: EngineOptions, collections: @escaping @Sendable () -> [Collection]) {
        self.options = options
        self.collections = collections
    }

    func start() {
        for (name, body) in [("lookalike-indexer", runIndexer), ("lookalike-drainer", runDrainer)] {
            condition.withLock { running += 1 }
            let t = Thread { [self] in
                body()
                condition.withLock { running -= 1; condition.broadcast() }
            }
            t.name = name
            t.start()
        }
    }

    /// There may be new items to link (the commit thread just appended some).
    func wake() {
        condition.lock()
        woken = true
        wakes += 1
        lastWrite = Date()
        condition.broadcast()
        condition.unlock()
    }

    /// Stops both threads after their current batch, and waits for them; waiters return.
    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while running > 0 { condition.wait() }
        condition.unlock()
    }

    private func runIndexer() {
        FaissIndex.setBuildPriority(nice: options.buildNice, idle: options.buildIdle)
        while true {
            condition.lock()
            while !woken && !stopping { condition.wait() }
            woken = false
            let stop = stopping
            condition.unlock()
            if stop { return }
            while linkOneRound(onlyIfQuiet: false) {}
        }
    }

    /// Sleeps until writes have paused with items still unlinked, then links them at normal
    /// priority until none are left or writes resume. The backlog is read with no lock held
    /// (the registry and collection locks are never taken under `condition`).
    private func runDrainer() {
        while true {
            let seen = condition.withLock { wakes }
            let backlog = hasBacklog()
            condition.lock()
            if stopping { condition.unlock(); return }
            let quiet = quietFor()
            if !backlog {
                if wakes == seen { condition.wait() }  // until the next write
                condition.unlock()
                continue
            }
            if quiet < Self.quietSeconds {
                _ = condition.wait(until: Date(timeIntervalSinceNow: Self.quietSeconds - quiet))
                condition.unlock()
                continue
            }
            condition.unlock()
            while linkOneRound(onlyIfQuiet: true) {}
        }
    }

    /// Seconds since the last write; none while writes wait in backpressure. Caller holds
    /// `condition`.
    private func quietFor() -> Double { throttling ? 0 : Date().timeIntervalSince(lastWrite) }

    /// A search began (the catch-up beam's signal that searches want the cores).
    func noteSearch() { lastSearch.store(DispatchTime.now().uptimeNanoseconds, ordering: .relaxed) }

    /// The beam to link `collection`'s next batch with: nil for its own efConstruction, or the
    /// cheaper catch-up beam while writers wait (or waited within `heldSeconds`) and searches
    /// are being served (one began within `searchingSeconds`).
    private func catchUpBeam(_ collection: Collection) -> Int? {
        let ef = options.catchUpEfConstruction
        guard ef > 0, collection.usesGraph, ef < collection.efConstruction else { return nil }
        let since = DispatchTime.now().uptimeNanoseconds &- lastSearch.load(ordering: .relaxed)
        guard Double(since) < Self.searchingSeconds * 1e9 else { return nil }
        let held = condition.withLock { throttling || Date().timeIntervalSince(lastThrottled) < Self.heldSeconds }
        return held ? ef : nil
    }

    private func hasBacklog() -> Bool {
        collections().contains { !$0.isDropped && !$0.liveSegmentsWithBacklog().isEmpty }
    }

    /// One batch for every collection that has items waiting; false when there were none (or,
    /// for the drainer, when writes resumed: the niced indexer takes over).
    private func linkOneRound(onlyIfQuiet: Bool) -> Bool {
        var linked = 0, caughtUp = 0
        for c in collections() where !c.isDropped {
            for graph in c.liveSegmentsWithBacklog() {
                if isStopping || (onlyIfQuiet && condition.withLock({ quietFor() }) < Self.quietSeconds) { return false }
                linking.lock()
                do {
                    let beam = onlyIfQuiet ? nil : catchUpBeam(c)
                    let n = try graph.indexPending(limit: Self.batch, threads: options.buildThreads, efConstruction: beam)
                    linked += n
                    if beam != nil { caughtUp += n }
                } catch {
                    // The items stay searchable through the exact tail; the seal rebuilds it.
                    c.engine.logger.error("linking new items into the graph failed; they stay searchable exactly and the seal rebuilds the segment",
                                          metadata: ["collection": "\(c.name)", "error": "\(error)"])
                }
                linking.unlock()
                break  // oldest segment first; the next round takes the next batch
            }
        }
        condition.lock()
        if linked > 0 {
            linkedTotal += linked
            if onlyIfQuiet { drainedTotal += linked }
            caughtUpTotal += caughtUp
            lastProgress = Date()
        }
        condition.broadcast()
        condition.unlock()
        return linked > 0
    }

    private var isStopping: Bool { condition.withLock { stopping } }

    /// Waits until every item of `graph` is linked; false when the engine stops or the
    /// collection is dropped first. A failed graph counts as done (its seal rebuilds it).
    func waitIndexed(_ graph: any LiveSegment, of collection: Collection) -> Bool {
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
        throttling = true
        defer {
            throttling = false
            lastThrottled = Date()
            lastWrite = Date()  // writes were queued until now
            condition.unlock()
        }
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

    /// For INFO: items linked since start (and of those by the drainer, and with the catch-up
    /// beam), and how long writers were held back.
    var statistics: IndexingStatistics {
        condition.withLock {
            IndexingStatistics(unindexed: 0, linked: linkedTotal, drained: drainedTotal, caughtUp: caughtUpTotal,
                               throttledSeconds: throttledSeconds, throttledBatches: throttledBatches)
        }
    }
}

/// The indexing backlog and backpressure (Engine.indexingStatistics, for INFO and metrics).
public struct IndexingStatistics: Sendable {
    /// Items written but not yet linked into a graph.
    public var unindexed: Int
    /// Items linked since start; of those, by the drainer (writes had paused) and with the
    /// catch-up beam (writers waited while searches ran).
    public var linked: Int, drained: Int, caughtUp: Int
    /// How long, and how many times, the commit thread waited for the indexer.
    public var throttledSeconds: Double, throttledBatches: Int
}
