// Compaction: rebuilds a collection's sealed segments into one, without deleted and replaced
// items, optionally retraining IVF/PQ/SQ first; queries and writes go on meanwhile.
//
// It is the merge of every sealed segment with a full rebuild: the run is built anew from
// its live items' vectors read from LMDB (the source of truth), in id order, in chunks,
// retrained first when asked or when the IVF lists became uneven (`retrainImbalance`), and
// published by the same step as every merge (Merging.swift: `publishMerged`, with its crash
// safety): killed before the manifest commit the collection is as before, after it as after.
// Progress (`compactionProgress`, VCOMPACT key STATUS): stage `waiting` (for a merge on the
// merger's queue), `training` (reading the sample and training, when retraining), `reading`
// and `building` in turns, one chunk read from LMDB then added to the index in steps, items
// counted as they are added (the estimate's rate; a compressed HNSW whose live items fit in one
// chunk is built from it at once, `buildRows`, and counted when done), then `writing` (the
// segment files) and `publishing` (the manifest commit and the swap).
// Threads: runs on the merger's serial queue, so merges and compactions never overlap;
// callers wait for it. One compaction per collection at a time; progress is read from any.
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
        let progress = collection.compactionProgress
        _ = progress.begin(stage: "waiting")  // beginCompaction admits one at a time
        defer { progress.end() }
        var result: Result<CompactionReport, Error> = .failure(EngineError.closed)
        merger.run { result = Result { try collection.compact(retrain: retrain) } }
        let report = try result.get()
        collection.lastCompaction.withLock { $0 = report }
        return report
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

        let progress = compactionProgress
        progress.enter("reading", counting: false)
        var template = state.withLock { $0.template }
        let drifted = old.contains { $0.info.ivfImbalance > Self.retrainImbalance }
        var newTemplate: FaissIndex?
        if retrain || drifted, !ids.isEmpty {
            let fresh = try FaissIndex(spec: definition.index, dimension: definition.dimension, metric: definition.metric.faiss)
            if try !fresh.info().isTrained {
                progress.enter("training", counting: false)
                let sample = try vectors(of: trainingSample(ids, lists: try fresh.info().nlist)).rows
                try sample.withUnsafeBufferPointer { try fresh.train($0.baseAddress!, count: sample.count / definition.dimension) }
                newTemplate = try fresh.clone()
                template = newTemplate
                report.retrained = true
            }
        }
        var index: FaissIndex?
        if !ids.isEmpty {
            let fresh = try emptyIndex(template: template, capacity: ids.count)
            // In chunks: the vectors of a large collection need not fit in memory twice.
            var added: [UInt64] = []
            progress.count(total: ids.count)
            for start in stride(from: 0, to: ids.count, by: Self.compactionChunk) {
                progress.enter("reading")
                let chunk = try vectors(of: Array(ids[start..<min(ids.count, start + Self.compactionChunk)]))
                guard !chunk.ids.isEmpty else { continue }
                progress.enter("building")
                let whole = start == 0 && ids.count <= Self.compactionChunk
                try chunk.rows.withUnsafeBufferPointer {
                    try add($0.baseAddress!, count: chunk.ids.count, to: fresh, whole: whole, progress)
                }
                added += chunk.ids
            }
            ids = added
            report.itemsKept = ids.count
            index = ids.isEmpty ? nil : fresh
        }
        let built = try publishMerged(replacing: old, index: index, ids: ids, dropped: dropped, newTemplate: newTemplate,
                                      progress: progress)
        report.segmentsAfter = state.withLock { $0.sealed.count }
        report.bytesAfter = built.map { SegmentFiles.bytes(name: $0.name, directory: segmentDirectory) } ?? 0
        report.seconds = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
        engine.logger.info("compacted", metadata: [
            "collection": "\(name)", "kept": "\(report.itemsKept)", "dropped": "\(report.itemsDropped)",
            "segments": "\(report.segmentsBefore)->\(report.segmentsAfter)", "retrained": "\(report.retrained)",
            "seconds": "\(String(format: "%.2f", report.seconds))"])
        return report
    }

    /// Vectors read from LMDB per chunk, and added to the new index per call (the progress
    /// moves per call; splitting an add changes no result: FAISS adds in order).
    static let compactionChunk = 65_536
    static let compactionStep = 4_096

    /// `whole`: these are all the rows the index will hold, so a compressed HNSW is built from
    /// them at once (`buildRows`); beyond one chunk it grows by FAISS's add, chunk by chunk.
    private func add(_ rows: UnsafePointer<Float>, count: Int, to index: FaissIndex, whole: Bool,
                     _ progress: JobProgress) throws {
        if whole, buildsFromRows {
            try buildRows(rows, count: count, into: index)
            return progress.advance(by: count)
        }
        let d = definition.dimension
        for from in stride(from: 0, to: count, by: Self.compactionStep) {
            let n = min(Self.compactionStep, count - from)
            try addRows(rows + from * d, count: n, to: index)
            progress.advance(by: n)
        }
    }

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
                    out += try preparedVector(row)
                    found.append(id)
                }
            }
        }
        return (found, out)
    }

    /// Evenly spaced ids to train on: FAISS's own guideline, 256 per IVF list (at least 100k,
    /// as PQ/SQ codebooks want), or all of them when fewer.
    private func trainingSample(_ ids: [UInt64], lists: Int) -> [UInt64] {
        let wanted = max(100_000, 256 * max(1, lists))
        guard ids.count > wanted else { return ids }
        return (0..<wanted).map { ids[$0 * ids.count / wanted] }
    }
}
