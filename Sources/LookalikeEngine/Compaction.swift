// Compaction: rebuilds a collection's sealed segments into one, without deleted and replaced
// items, optionally retraining IVF/PQ/SQ first; queries and writes go on meanwhile.
//
// Order (each step crash-safe on its own, as for a seal):
//   1. take the sealed segments S of this moment; read their live items' vectors from LMDB
//      (the source of truth), in id order, in chunks;
//   2. retrain (when asked, or when the IVF lists became uneven: `retrainImbalance`), then
//      build one index of the collection's type and write its files (SegmentFiles);
//   3. one LMDB transaction names it in the manifest instead of S (segments sealed since are
//      kept after it) and forgets the tombstones of the dropped ids: the atomic point;
//   4. under the collection's lock, copy deletes that happened during the build and swap it
//      in; then remove S's files.
// Killed before 3, the collection is as before (the new files are leftovers the next start
// removes); after 3, as after (S's files are the leftovers).
// Threads: runs on the sealer's serial queue, so seals and compactions never interleave
// their manifest edits; callers wait for it. One compaction per collection at a time.
import Dispatch
import Foundation
import Logging
import LookalikeIndex
import LookalikeStorage

public struct CompactionReport: Sendable, Equatable {
    public var itemsKept = 0
    public var itemsDropped = 0
    public var segmentsBefore = 0
    public var segmentsAfter = 0
    public var bytesBefore = 0
    public var bytesAfter = 0
    public var retrained = false
    public var seconds = 0.0
}

extension Engine {
    /// Compacts a collection (see Compaction.swift). Throws `.invalidArgument` when another
    /// compaction of it is running.
    public func compact(_ collection: Collection, retrain: Bool = false) throws -> CompactionReport {
        guard collection.beginCompaction() else {
            throw EngineError.invalidArgument("a compaction of '\(collection.name)' is already running")
        }
        defer { collection.endCompaction() }
        var result: Result<CompactionReport, Error> = .failure(EngineError.closed)
        sealer.run { result = Result { try collection.compact(retrain: retrain) } }
        return try result.get()
    }
}

extension Collection {
    /// Lists this uneven (FAISS imbalance factor) mean the centroids no longer fit the data.
    static let retrainImbalance = 3.0

    func compact(retrain: Bool) throws -> CompactionReport {
        let started = DispatchTime.now()
        guard !isDropped else { throw EngineError.unknownCollection(name) }
        let old = state.withLock { $0.sealed }
        var report = CompactionReport()
        report.segmentsBefore = old.count
        report.bytesBefore = old.reduce(0) { $0 + SegmentFiles.bytes(name: $1.name, directory: segmentDirectory) }
        guard !old.isEmpty, old.count > 1 || old[0].live.deadCount > 0 || retrain else {
            report.segmentsAfter = old.count
            report.bytesAfter = report.bytesBefore
            report.itemsKept = old.reduce(0) { $0 + $1.liveCount }
            return report
        }
        // Ids dead now are dropped; ids that die during the build keep their tombstones,
        // which the swap (and a restart) applies to the new segment.
        var ids = old.flatMap { seg in (0..<seg.count).filter { seg.live.isLive($0) }.map { seg.id(at: $0) } }
        let dropped = old.flatMap { seg in (0..<seg.count).filter { !seg.live.isLive($0) }.map { seg.id(at: $0) } }
        report.itemsDropped = dropped.count

        var manifest = state.withLock { $0.manifest }
        let oldTemplateName = manifest.template
        var template = state.withLock { $0.template }
        let drifted = old.contains { $0.info.ivfImbalance > Self.retrainImbalance }
        var newTemplate: FaissIndex?
        if retrain || drifted, !ids.isEmpty {
            let fresh = try FaissIndex(spec: definition.index, dimension: definition.dimension, metric: definition.metric.faiss)
            if try !fresh.info().isTrained {
                let sample = try vectors(of: trainingSample(ids)).rows
                try sample.withUnsafeBufferPointer { try fresh.train($0.baseAddress!, count: sample.count / definition.dimension) }
                newTemplate = try fresh.clone()
                template = newTemplate
                report.retrained = true
            }
        }
        var built: SealedSegment?
        var entry: Manifest.Entry?
        if !ids.isEmpty {
            let index = try template?.clone()
                ?? FaissIndex(spec: definition.index, dimension: definition.dimension, metric: definition.metric.faiss)
            if try index.info().kind == .hnsw {
                try index.setHNSW(efConstruction: efConstruction, efSearch: engine.options.maxEfSearch)
            }
            if engine.options.buildThreads > 0 { FaissIndex.setThreads(engine.options.buildThreads) }
            // In chunks: the vectors of a large collection need not fit in memory twice.
            var added: [UInt64] = []
            for start in stride(from: 0, to: ids.count, by: Self.compactionChunk) {
                let chunk = try vectors(of: Array(ids[start..<min(ids.count, start + Self.compactionChunk)]))
                guard !chunk.ids.isEmpty else { continue }
                try chunk.rows.withUnsafeBufferPointer { try index.add($0.baseAddress!, count: chunk.ids.count) }
                added += chunk.ids
            }
            ids = added
            report.itemsKept = ids.count
            if let first = ids.first, let last = ids.last {
                let segmentName = String(format: "seg-%06d", manifest.nextSegment)
                manifest.nextSegment += 1
                try SegmentFiles.write(index: index, ids: ids, name: segmentName, directory: segmentDirectory)
                built = try SealedSegment(name: segmentName, index: index, ids: ids, metric: definition.metric.faiss)
                entry = .init(name: segmentName, firstId: first, lastId: last, count: ids.count)
            }
        }
        if let newTemplate {
            let templateName = String(format: "trained-%06d", manifest.nextSegment)
            manifest.nextSegment += 1
            try SegmentFiles.write(index: newTemplate, ids: [], name: templateName, directory: segmentDirectory)
            manifest.template = templateName
        }
        let oldNames = Set(old.map(\.name))
        manifest.segments = (entry.map { [$0] } ?? []) + manifest.segments.filter { !oldNames.contains($0.name) }
        guard try engine.commitManifest(manifest, for: self, clearingTombstones: dropped) else {
            if let e = entry { SegmentFiles.remove(name: e.name, directory: segmentDirectory) }
            throw EngineError.unknownCollection(name)
        }
        state.withLock { s in
            if let built {
                // Deletes committed during the build marked the old segments: carry them over.
                for seg in old where seg.live.deadCount > 0 {
                    for p in 0..<seg.count where !seg.live.isLive(p) { built.markDeleted(id: seg.id(at: p)) }
                }
            }
            s.sealed = (built.map { [$0] } ?? []) + s.sealed.filter { seg in !old.contains { $0 === seg } }
            s.manifest = manifest
            if let newTemplate { s.template = newTemplate }
        }
        for seg in old { SegmentFiles.remove(name: seg.name, directory: segmentDirectory) }
        if newTemplate != nil, let oldTemplateName { SegmentFiles.remove(name: oldTemplateName, directory: segmentDirectory) }
        report.segmentsAfter = state.withLock { $0.sealed.count }
        report.bytesAfter = entry.map { SegmentFiles.bytes(name: $0.name, directory: segmentDirectory) } ?? 0
        report.seconds = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
        engine.logger.info("compacted", metadata: [
            "collection": "\(name)", "kept": "\(report.itemsKept)", "dropped": "\(report.itemsDropped)",
            "segments": "\(report.segmentsBefore)->\(report.segmentsAfter)", "retrained": "\(report.retrained)",
            "seconds": "\(String(format: "%.2f", report.seconds))"])
        return report
    }

    /// Vectors added to the new index per step.
    static let compactionChunk = 65_536

    /// The vectors of `ids` that are still stored, read from LMDB and prepared as the index
    /// stores them, row after row, with the ids they belong to (an item deleted since the ids
    /// were taken is left out: its tombstone stays and marks it wherever it still is).
    private func vectors(of ids: [UInt64]) throws -> (ids: [UInt64], rows: [Float]) {
        let d = definition.dimension
        var found: [UInt64] = []
        var out: [Float] = []
        out.reserveCapacity(ids.count * d)
        try wrapped {
            try engine.environment.read { txn in
                var row = [Float](repeating: 0, count: d)
                for id in ids {
                    guard let bytes = try store.vectorBytes(id, txn), bytes.count == d * 4 else { continue }
                    row.withUnsafeMutableBytes { _ = bytes.copyBytes(to: $0) }
                    out += try indexVector(row)
                    found.append(id)
                }
            }
        }
        return (found, out)
    }

    /// Evenly spaced ids to train on: FAISS's own guideline, 256 per IVF list (at least 100k
    /// for PQ/SQ codebooks), or all of them when fewer.
    private func trainingSample(_ ids: [UInt64]) -> [UInt64] {
        let wanted = max(100_000, 256 * max(1, trainHint / 39))
        guard ids.count > wanted else { return ids }
        return (0..<wanted).map { ids[$0 * ids.count / wanted] }
    }
}
