// Merging: keeps the number of sealed segments a query visits small, logarithmic in the
// collection's size, in the background; and the one place sealed segments are replaced by a
// merged one (the tiered policy below, and VCOMPACT: Compaction.swift).
//
// Policy (`mergeCandidate`, graph collections: Collection.usesGraph): a segment's tier is
// floor(log_F(items / floor)), F = EngineOptions.mergeFactor, floor = `mergeFloor`. When F
// adjacent segments share a tier, they are merged into one of the next tier. A query then
// visits at most F-1 segments per tier: O(F · log_F(n)).
// A merge inserts the other segments' live items into a copy of the first (oldest, normally
// largest) segment's graph, as Lucene merges HNSW graphs: what is already linked is not linked
// again. When the first segment has many dead items, the run is built anew from its live rows
// instead (dead nodes would stay in the copy for good).
//
// Order (each step crash-safe on its own, as for a seal):
//   1. build the merged index (from rows the sealed segments hold in memory) and write its
//      files (SegmentFiles);
//   2. under the manifest lock, one LMDB transaction names it in the manifest instead of the
//      run and forgets the tombstones of the items left out: the atomic point;
//   3. under the collection's lock, copy deletes that happened during the build and swap it
//      in; then remove the run's files.
// Killed before 2, the collection is as before (the new files are leftovers the next start
// removes); after 2, as after (the run's files are the leftovers). Failing before 2 (a full
// disk, the `mergePublish` fault point) removes the new files at once (publishingNewFiles).
// Threads: merges and compactions run one at a time per engine on the merger's own thread
// (BackgroundThread), at `buildNice`; seals run on the sealer's queue meanwhile. Manifest edits of both take the
// collection's `manifestLock`, so each starts from the manifest the other committed.
import Dispatch
import Foundation
import Logging
import LookalikeIndex

final class Merger: @unchecked Sendable {
    private let thread: BackgroundThread
    private let lock = NSLock()
    private var cancelled = false
    private var scheduled = Set<ObjectIdentifier>()

    init(options: EngineOptions) { thread = BackgroundThread(name: "lookalike-merger", options: options) }

    /// Merges what the policy asks for in `collection`, in the background (once per request in
    /// flight: a collection already scheduled is not queued twice).
    func schedule(_ collection: Collection) {
        guard lock.withLock({ !cancelled && scheduled.insert(ObjectIdentifier(collection)).inserted }) else { return }
        thread.async { [self] in
            lock.withLock { _ = scheduled.remove(ObjectIdentifier(collection)) }
            while !isCancelled, !collection.isDropped, let run = collection.mergeCandidate() {
                do {
                    try collection.merge(run, isCancelled: { [self] in isCancelled })
                } catch {
                    if !isCancelled {
                        collection.engine.logger.error("merging segments failed; they stay as they are", metadata: [
                            "collection": "\(collection.name)", "error": "\(EngineError.wrap(error))"])
                    }
                    return
                }
            }
        }
    }

    /// Runs `body` on the merger's queue after what is queued, and waits for it (VCOMPACT).
    func run(_ body: () -> Void) { thread.sync(body) }

    var isCancelled: Bool { lock.withLock { cancelled } }

    /// Stops merges: a running one gives up at its next step (its files are leftovers the next
    /// start removes), queued ones do nothing. Then waits for the queue.
    func cancelAndWait() {
        lock.withLock { cancelled = true }
        thread.stop()
    }
}

extension Collection {
    /// Segments below this many items share the lowest tier.
    static let mergeFloor = 1_000
    /// Above this fraction of dead items in the first segment, a merge rebuilds the run.
    static let mergeRebuildDeadFraction = 0.25

    /// The first run of `mergeFactor` adjacent sealed segments of one tier, if any.
    func mergeCandidate() -> [SealedSegment]? {
        let factor = engine.options.mergeFactor
        guard usesGraph, factor >= 2 else { return nil }
        let sealed = state.withLock { $0.sealed }
        let tiers = sealed.map { Self.tier(of: $0.liveCount, factor: factor) }
        var start = 0
        for i in sealed.indices {
            if tiers[i] != tiers[start] { start = i }
            if i - start + 1 == factor { return Array(sealed[start...i]) }
        }
        return nil
    }

    static func tier(of items: Int, factor: Int) -> Int {
        var t = 0
        var bound = mergeFloor * factor
        while items >= bound, t < 30 {
            t += 1
            bound *= factor
        }
        return t
    }

    /// Merges a run of adjacent sealed segments into one (see the file's header).
    func merge(_ run: [SealedSegment], isCancelled: () -> Bool) throws {
        let started = DispatchTime.now()
        let base = run[0]
        let copyBase = base.info.kind == .hnsw && base.rows != nil
            && Double(base.live.deadCount) <= Self.mergeRebuildDeadFraction * Double(max(1, base.count))
        let total = run.reduce(0) { $0 + $1.count }
        let index: FaissIndex
        var ids: [UInt64] = []
        var dropped: [UInt64] = []
        if copyBase {
            // The copy is read from the base's own file: FAISS 1.7.3's clone_index turns an
            // IndexHNSWFlat into a plain IndexHNSW, which write_index then refuses.
            index = try SegmentFiles.readIndex(name: base.name, directory: segmentDirectory, mmap: false)
            ids = base.idList
            try index.setHNSW(efConstruction: efConstruction, efSearch: engine.options.maxEfSearch)
            try index.reserveGraph(capacity: total)
        } else {
            index = try emptyIndex(template: nil, capacity: total)
        }
        for seg in copyBase ? Array(run.dropFirst()) : run {
            guard let rows = seg.rows else { throw EngineError.invalidArgument("segment \(seg.name) keeps no rows to merge") }
            var chunk: [Float] = []
            var chunkIds: [UInt64] = []
            func flush() throws {
                guard !chunkIds.isEmpty else { return }
                if isCancelled() { throw EngineError.closed }
                try chunk.withUnsafeBufferPointer { try addRows($0.baseAddress!, count: chunkIds.count, to: index) }
                ids += chunkIds
                chunk.removeAll(keepingCapacity: true)
                chunkIds.removeAll(keepingCapacity: true)
            }
            let d = definition.dimension
            for p in 0..<seg.count {
                guard seg.live.isLive(p) else { dropped.append(seg.id(at: p)); continue }
                chunk.append(contentsOf: UnsafeBufferPointer(start: rows + p * d, count: d))
                chunkIds.append(seg.id(at: p))
                if chunkIds.count == Self.mergeChunk { try flush() }
            }
            try flush()
        }
        if isCancelled() { throw EngineError.closed }
        let report = try publishMerged(replacing: run, index: ids.isEmpty ? nil : index, ids: ids, dropped: dropped)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
        EngineMetrics.mergeDuration.recordSeconds(seconds)
        engine.logger.info("merged segments", metadata: [
            "collection": "\(name)", "segments": "\(run.map(\.name).joined(separator: "+"))->\(report?.name ?? "none")",
            "items": "\(ids.count)", "dropped": "\(dropped.count)", "copied-first": "\(copyBase)",
            "seconds": "\(String(format: "%.2f", seconds))"])
    }

    /// Items inserted per call while merging (a cancel waits for at most one chunk).
    static let mergeChunk = 8_192

    /// Writes a merged segment's files, names it in the manifest in place of `old` (and forgets
    /// the tombstones of `dropped`, the items it left out), swaps it in with the deletes made
    /// meanwhile, and removes the old files. `index` nil: every item was dropped. `newTemplate`:
    /// a retrained empty index for later seals. Returns the new segment.
    @discardableResult
    func publishMerged(replacing old: [SealedSegment], index: FaissIndex?, ids: [UInt64], dropped: [UInt64],
                       newTemplate: FaissIndex? = nil, progress: JobProgress? = nil) throws -> SealedSegment? {
        progress?.enter("writing", counting: false)
        manifestLock.lock()
        defer { manifestLock.unlock() }
        var manifest = state.withLock { $0.manifest }
        let oldTemplateName = manifest.template
        var built: SealedSegment?
        let published: Void? = try publishingNewFiles(&manifest) { manifest in
            var entry: Manifest.Entry?
            if let index, !ids.isEmpty {
                (built, entry) = try writeSegment(index, ids: ids, keys: try keyTable(for: ids, from: old), manifest: &manifest)
            }
            if let newTemplate { try writeTemplate(newTemplate, manifest: &manifest) }
            try engine.faults.check(.mergePublish)
            progress?.enter("publishing", counting: false)
            // In place of the run: segments sealed meanwhile stay after it, in order.
            let oldNames = Set(old.map(\.name))
            let at = manifest.segments.firstIndex { oldNames.contains($0.name) } ?? 0
            manifest.segments.removeAll { oldNames.contains($0.name) }
            if let entry { manifest.segments.insert(entry, at: min(at, manifest.segments.count)) }
            return try engine.commitManifest(manifest, for: self, clearingTombstones: dropped) ? () : nil
        }
        guard published != nil else { throw EngineError.unknownCollection(name) }
        state.withLock { s in
            if let built {
                // Deletes committed during the build marked the old segments: carry them over.
                for seg in old where seg.live.deadCount > 0 {
                    for p in 0..<seg.count where !seg.live.isLive(p) { built.markDeleted(id: seg.id(at: p)) }
                }
            }
            let first = s.sealed.firstIndex { seg in old.contains { $0 === seg } } ?? 0
            s.sealed.removeAll { seg in old.contains { $0 === seg } }
            if let built { s.sealed.insert(built, at: min(first, s.sealed.count)) }
            s.manifest = manifest
            if let newTemplate { s.template = newTemplate }
        }
        for seg in old { engine.segmentPins.remove(name: seg.name, directory: segmentDirectory) }
        if newTemplate != nil, let oldTemplateName { engine.segmentPins.remove(name: oldTemplateName, directory: segmentDirectory) }
        return built
    }

    /// The keys of `ids` (a merge's or compaction's new segment), from the key tables of the
    /// segments they come from; LMDB for any those lack.
    func keyTable(for ids: [UInt64], from segments: [SealedSegment]) throws -> KeyTable {
        var missing = false
        var keys = ids.map { id -> String in
            for seg in segments where seg.firstId! <= id && id <= seg.lastId! {
                if let p = seg.position(of: id), let table = seg.keys { return table.key(at: p) }
            }
            missing = true
            return ""
        }
        if missing {
            try engine.environment.read { txn in
                for (i, id) in ids.enumerated() where keys[i].isEmpty { keys[i] = try store.key(id, txn) ?? "" }
            }
        }
        return KeyTable(keys: keys)
    }
}
