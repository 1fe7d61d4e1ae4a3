// Sealing: turning a full (or SAVEd) growing segment into a sealed segment of the collection's
// index type, in the background, and publishing it atomically.
//
// Order of a seal (each step crash-safe on its own):
//   1. the index: a graph segment's own, once the indexer has linked every item (no rebuild);
//      for a flat segment, built from its rows (trained first if needed, keeping the trained
//      empty index as the template for later segments; a compressed HNSW's graph linked on the
//      float rows, then encoded: SegmentBuilder.buildRows);
//   2. write its files under temporary names, fsync, rename (SegmentFiles);
//   3. name it in the manifest (one LMDB transaction): from here a restart loads it;
//   4. under the collection's lock, copy the frozen segment's tombstones and swap it in.
// A crash before 3 leaves unnamed files that the next start removes; the items are replayed
// from LMDB. Frozen segments seal oldest first, one after the other: the manifest names
// segments in id order and `sealedThrough` is the end of the last one, so a newer segment
// sealed before an older one would hide the older one's items from the next start's replay.
// A failed seal (a full disk, FAISS refusing the data) leaves the frozen segment (and the
// newer ones behind it) in place, still exact and searchable, removes the files it wrote, and
// is retried later with a doubling delay (5 s up to 10 min), or at once by SAVE, which then
// reports the failure: a failing seal never spins, and never eats the space a user frees.
// Threads: one sealer thread for the whole engine (building is CPU-heavy; 2 cores), at
// `buildNice` like the indexer and the merger, so that a build (training an IVF quantizer,
// building a compressed HNSW from its rows) yields the cores to searches.
import Dispatch
import Foundation
import Logging
import LookalikeIndex

final class Sealer: @unchecked Sendable {
    private let thread: BackgroundThread
    private let group = DispatchGroup()
    private let lock = NSLock()
    private var cancelled = false

    init(options: EngineOptions) {
        thread = BackgroundThread(name: "lookalike-sealer", options: options)
    }

    func schedule(_ collection: Collection, _ segment: any GrowingSegment) {
        group.enter()
        thread.async { [self] in
            defer { group.leave() }
            lock.lock()
            let skip = cancelled
            lock.unlock()
            if !skip { collection.seal(segment) }
        }
    }

    /// Schedules a seal that failed again after a delay. Not counted by `waitIdle` until it
    /// starts, so SAVE and shutdown never wait for a backoff.
    func retry(_ collection: Collection, _ segment: any GrowingSegment, after seconds: Double) {
        DispatchQueue.global(qos: .utility).asyncAfter(deadline: .now() + seconds) { [self] in
            thread.async { [self] in
                lock.lock()
                let skip = cancelled
                lock.unlock()
                if !skip { collection.seal(segment) }
            }
        }
    }

    /// Waits until every scheduled seal has run.
    func waitIdle() { group.wait() }

    /// Ends the thread (after `cancelPending` and `waitIdle`: nothing is left to run).
    func stop() { thread.stop() }

    /// Skips seals not yet started (shutdown: their items are safe in LMDB and replay at start).
    func cancelPending() {
        lock.lock()
        cancelled = true
        lock.unlock()
    }
}

extension Collection {
    func seal(_ frozen: any GrowingSegment) {
        // A retry may find its segment sealed already (SAVE retried it first); a newer segment
        // waits for the older ones (the header), and is scheduled again when they are sealed.
        guard !isDropped, frozen.count > 0,
              state.withLock({ s in s.frozen.first === frozen }) else { return }
        let started = DispatchTime.now()
        do {
            let (index, newTemplate) = try sealedIndex(of: frozen)
            manifestLock.lock()
            defer { manifestLock.unlock() }
            var manifest = state.withLock { $0.manifest }
            let ids = frozen.idList
            let published = try publishingNewFiles(&manifest) { manifest -> (SealedSegment, String)? in
                let (segment, entry) = try writeSegment(index, ids: ids, keys: KeyTable(keys: frozen.keyList), manifest: &manifest)
                if let newTemplate { try writeTemplate(newTemplate, manifest: &manifest) }
                manifest.segments.append(entry)
                manifest.sealedThrough = ids.last! + 1
                return try engine.commitManifest(manifest, for: self) ? (segment, entry.name) : nil
            }
            guard let (sealed, segmentName) = published else { return }
            let next = state.withLock { s in
                for p in 0..<frozen.count where !frozen.live.isLive(p) { sealed.live.clear(p) }
                s.frozen.removeAll { $0 === frozen }
                s.sealFailures[ObjectIdentifier(frozen)] = nil
                s.sealed.append(sealed)
                s.manifest = manifest
                if let newTemplate { s.template = newTemplate }
                return s.frozen.first
            }
            // The next one waited for this one if this one's first seal failed.
            if let next { engine.sealer.schedule(self, next) }
            engine.merger.schedule(self)
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
            EngineMetrics.sealDuration.recordSeconds(seconds)
            engine.logger.info("sealed segment", metadata: [
                "collection": "\(name)", "segment": "\(segmentName)", "items": "\(ids.count)",
                "seconds": "\(String(format: "%.2f", seconds))"])
        } catch EngineError.closed {
            return  // stopping: the items are in LMDB and replay at the next start
        } catch {
            let failure = state.withLock { s -> SealFailure in
                var f = s.sealFailures[ObjectIdentifier(frozen)] ?? SealFailure(reason: "", attempts: 0)
                f.reason = "\(EngineError.wrap(error))"
                f.attempts += 1
                s.sealFailures[ObjectIdentifier(frozen)] = f
                return f
            }
            let delay = min(600, 5 * pow(2, Double(min(failure.attempts - 1, 10))))
            engine.logger.error("sealing failed; its items stay searchable in an exact segment", metadata: [
                "collection": "\(self.name)", "error": "\(failure.reason)", "attempt": "\(failure.attempts)",
                "retry-in-seconds": "\(Int(delay))"])
            engine.sealer.retry(self, frozen, after: delay)
        }
    }

    /// Seals again, now, every frozen segment whose last seal failed (SAVE).
    func retryFailedSeals() {
        let failed = state.withLock { s in s.frozen.filter { s.sealFailures[ObjectIdentifier($0)] != nil } }
        for f in failed { engine.sealer.schedule(self, f) }
    }

    /// What VINFO says of the indexing: "indexed" when nothing waits for a seal that cannot
    /// happen yet; otherwise why the newest items are served exactly.
    public var indexState: String {
        if let f = sealFailure {
            return "seal failed \(f.attempts) time(s), items served exactly, retrying: \(f.reason)"
        }
        let needed = itemsToTrain
        let waiting = state.withLock { $0.mutable.count }
        if needed > 0, waiting > 0 {
            return "exact until \(needed) items can train \(definition.index) (has \(waiting))"
        }
        return "indexed"
    }

    /// Why the oldest frozen segment could not be sealed, if one could not.
    var sealFailure: SealFailure? {
        state.withLock { s in
            let failures = s.sealFailures
            return s.frozen.compactMap { failures[ObjectIdentifier($0)] }.first
        }
    }

    /// The index a frozen segment is sealed as: a live segment's own (graph or IVF lists) once
    /// every item is in it (waiting for the indexer), or one built from the rows.
    private func sealedIndex(of frozen: any GrowingSegment) throws -> (FaissIndex, FaissIndex?) {
        guard let graph = frozen as? any LiveSegment else { return try buildIndex(from: frozen as! FlatSegment) }
        guard engine.indexer.waitIndexed(graph, of: self) else { throw EngineError.closed }
        // Linking failed part way: the rows are all here, so build the index anew from them.
        if let reason = graph.indexFailure {
            engine.logger.error("linking new items failed; building the segment from its rows", metadata: [
                "collection": "\(name)", "error": "\(reason)"])
            return try buildIndex(from: graph.buffer)
        }
        return (graph.index, nil)
    }

    /// A new index of the collection's type holding the frozen rows; and, when this seal had to
    /// train, the trained empty index to clone from next time.
    private func buildIndex(from frozen: FlatSegment) throws -> (FaissIndex, FaissIndex?) {
        if engine.options.buildThreads > 0 { FaissIndex.setThreads(engine.options.buildThreads) }
        var newTemplate: FaissIndex?
        let index = try emptyIndex(template: state.withLock { $0.template }, capacity: frozen.count)
        if try !index.info().isTrained {
            try index.train(frozen.vectors, count: frozen.count)
            newTemplate = try index.clone()
        }
        try buildRows(frozen.vectors, count: frozen.count, into: index)
        return (index, newTemplate)
    }
}

/// A seal that failed: why, and how many times in a row.
public struct SealFailure: Sendable, Equatable {
    public var reason: String
    public var attempts: Int
}
