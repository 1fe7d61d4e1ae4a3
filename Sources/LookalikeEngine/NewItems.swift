// NewItems: the daily batch job. For every item added since a point (an id, a time, or where
// the last run stopped), its top-N most similar existing items, exact, written as JSON lines
// and kept in LMDB (c<N>/neighbors) so that `neighbors(key:)` answers at once.
//
// How: the new items' vectors are read into memory (in passes of at most
// `batchJobMemory` bytes); the existing items' vectors stream from LMDB in blocks; each block
// is scored against all new items by sgemm tiles (ExactScan.scanBatch), one worker per core,
// each worker owning a disjoint range of new items and their TopK heaps. The existing vectors
// are read once per pass. Exact, so there is no recall to lose; the cost is
// new × existing × dimension multiply-adds (Docs/recommendations/new-items.md has figures).
//
// Consistency: the job reads one LMDB snapshot (one read transaction for the whole pass), so
// writes go on meanwhile and are simply not seen; an item deleted after the snapshot may still
// be listed until the next run (the lookup drops neighbours that no longer exist).
// Files: the scoring (the sgemm tiles, the workers, WITHIN's groups) is NewItemsScoring.swift;
// what the job writes (JSON lines, the neighbors table) is NewItemsOutput.swift.
// Threads: `runNewItemsJob` blocks its caller for the whole job (minutes); one job per
// collection at a time; `newItemsProgress` may be read from any thread meanwhile. Results are
// written in transactions of 1,000 lines from the caller's thread; LMDB serialises them with the
// commit thread's.
import Dispatch
import Foundation
import Logging
import LookalikeIndex
import LookalikeStorage
import Synchronization

public struct NewItemsRequest: Sendable {
    public enum Since: Sendable, Equatable {
        /// Items with this id or a later one (VINFO's `hnsw-max-node-uid` is the next id).
        case id(UInt64)
        /// Items added at or after this Unix time (seconds), from the clock table.
        case time(UInt64)
        /// Items added after the last run's snapshot (an error when there was none).
        case lastRun
    }
    public var since: Since
    /// Neighbours per new item.
    public var count: Int
    /// Also count the other new items as neighbours (default: only items that existed before).
    public var includeNew: Bool
    /// Where to write the JSON lines; nil writes none (the results are still kept in LMDB).
    public var outputPath: String?
    /// An indexed attribute (a category): each new item's neighbours share its value of it, or
    /// its predicted value when it has none (VPREDICT: new stickers often arrive without one).
    public var within: String?

    public init(since: Since, count: Int = 10, includeNew: Bool = false, outputPath: String? = nil,
                within: String? = nil) {
        self.since = since
        self.count = count
        self.includeNew = includeNew
        self.outputPath = outputPath
        self.within = within
    }
}

public struct NewItemsReport: Sendable, Equatable, Codable {
    /// The new items are those with ids in [firstId, throughId).
    public var firstId: UInt64 = 0
    public var throughId: UInt64 = 0
    public var newItems = 0
    public var existingItems = 0
    public var passes = 0
    public var seconds = 0.0
    public var outputPath: String?
    /// The attribute neighbours were restricted to (`NewItemsRequest.within`), and how many new
    /// items had no value of it and used their predicted one. Nil for unrestricted jobs.
    public var within: String?
    public var predicted: Int?
}

extension Collection {
    /// Neighbours kept per item at most (and asked of a job at most).
    public static let maxNewItemNeighbors = 1_000
    /// Results written per LMDB transaction.
    static let newItemsWriteBatch = 1_000


    /// Runs the job (see NewItems.swift) and returns its report. Throws `.invalidArgument` when
    /// a job for this collection is already running or the request is out of range.
    public func runNewItemsJob(_ request: NewItemsRequest) throws -> NewItemsReport {
        guard request.count >= 1, request.count <= Self.maxNewItemNeighbors else {
            throw EngineError.invalidArgument("COUNT must be between 1 and \(Self.maxNewItemNeighbors)")
        }
        if let attribute = request.within, !definition.attributes.contains(attribute) { throw notIndexed(attribute) }
        guard newItemsProgress.begin(stage: "scoring") else {
            throw EngineError.invalidArgument("a new-items job for '\(name)' is already running")
        }
        defer { newItemsProgress.end() }
        let started = DispatchTime.now()
        let run = AbortedNewItemsRun(startedAt: Date().timeIntervalSince1970, output: request.outputPath,
                                     reason: "the server stopped during the job")
        try wrapped { try engine.environment.write { try engine.meta.put(MetaLayout.newItemsRunning(number), Array(try JSONEncoder().encode(run)), $0) } }
        let output: JSONLinesFile?
        var report: NewItemsReport
        do {
            output = try request.outputPath.map(JSONLinesFile.init(path:))
            do {
                report = try wrapped { try engine.environment.read { try newItemsJob(request, output, $0) } }
                try output?.close()
            } catch {
                output?.discard()
                throw error
            }
        } catch {
            var failed = run
            failed.reason = "the job failed: \(EngineError.wrap(error))"
            try? recordAborted(failed)
            throw error
        }
        report.seconds = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
        report.outputPath = request.outputPath
        let saved = try JSONEncoder().encode(report)
        guard !isDropped else { throw EngineError.unknownCollection(name) }
        try wrapped {
            try engine.environment.write { txn in
                try engine.meta.put(MetaLayout.newItemsLastRun(number), Array(saved), txn)
                try engine.meta.delete(MetaLayout.newItemsRunning(number), txn)
                try engine.meta.delete(MetaLayout.newItemsAborted(number), txn)
            }
        }
        engine.logger.info("new-items job done", metadata: [
            "collection": "\(name)", "new": "\(report.newItems)", "existing": "\(report.existingItems)",
            "seconds": "\(String(format: "%.1f", report.seconds))"])
        return report
    }

    /// Records a job that did not finish, and that it no longer runs.
    private func recordAborted(_ run: AbortedNewItemsRun) throws {
        guard !isDropped else { return }
        try wrapped {
            try engine.environment.write { txn in
                try engine.meta.put(MetaLayout.newItemsAborted(number), Array(try JSONEncoder().encode(run)), txn)
                try engine.meta.delete(MetaLayout.newItemsRunning(number), txn)
            }
        }
    }

    /// At open: a job marked running was cut short by the process's end.
    func noteInterruptedNewItemsJob() throws {
        guard let bytes = try engine.environment.read({ try engine.meta.get(MetaLayout.newItemsRunning(number), $0) }),
              let run = try? JSONDecoder().decode(AbortedNewItemsRun.self, from: Data(bytes)) else { return }
        try recordAborted(run)
        engine.logger.warning("a new-items job was cut short by a stop; its partial output was removed", metadata: [
            "collection": "\(name)", "output": "\(run.output ?? "none")"])
    }

    /// The last job that did not finish, unless a job finished since.
    public func abortedNewItemsRun() throws -> AbortedNewItemsRun? {
        try wrapped {
            try engine.environment.read { txn in
                try engine.meta.get(MetaLayout.newItemsAborted(number), txn).map { try JSONDecoder().decode(AbortedNewItemsRun.self, from: Data($0)) }
            }
        }
    }

    /// The last finished job's report, if any.
    public func lastNewItemsReport() throws -> NewItemsReport? {
        try wrapped { try engine.environment.read(lastNewItemsReport) }
    }

    private func lastNewItemsReport(_ txn: Transaction) throws -> NewItemsReport? {
        try engine.meta.get(MetaLayout.newItemsLastRun(number), txn).map { try JSONDecoder().decode(NewItemsReport.self, from: Data($0)) }
    }

    /// One past the highest live id: where items added after this snapshot will start.
    private func nextLiveId(_ txn: Transaction) throws -> UInt64 {
        try store.lastVectorId(txn).map { $0 + 1 } ?? 0
    }

    /// The kept neighbours of an item, best first, without those that no longer exist; nil when
    /// no job has listed the item (or it no longer exists itself).
    public func neighbors(key: String) throws -> [SearchHit]? {
        try wrapped {
            try engine.environment.read { txn in
                guard try store.id(forKey: key, txn) != nil, let line = try store.neighbors(key: key, txn) else { return nil }
                let parsed = try JSONDecoder().decode(NewItemsLine.self, from: Data(line))
                return try parsed.neighbors.compactMap { n in
                    guard let id = try store.id(forKey: n.key, txn) else { return nil }
                    return SearchHit(key: n.key, id: id, score: n.score, attributes: nil)
                }
            }
        }
    }

    // MARK: - The job, inside one read snapshot

    private func newItemsJob(_ request: NewItemsRequest, _ output: JSONLinesFile?, _ txn: Transaction) throws -> NewItemsReport {
        var report = NewItemsReport()
        report.firstId = try firstNewId(request.since, txn)
        report.throughId = try nextLiveId(txn)
        // Items only: an item's views search with it (their own vectors are neighbours, not queries).
        let newIds = try liveIds(from: report.firstId, txn).filter { id in
            try store.item(id, txn).map { Views.split($0.key).view == nil } ?? false
        }
        report.newItems = newIds.count
        report.existingItems = try storedVectors(below: report.firstId, txn)
        guard !newIds.isEmpty else { return report }
        let d = definition.dimension
        let perPass = max(1, engine.options.batchJobMemory / (d * 4))
        let scannedPerPass = report.existingItems + (request.includeNew ? newIds.count : 0)
        let passes = (newIds.count + perPass - 1) / perPass
        newItemsProgress.count(total: passes * scannedPerPass)
        report.passes = passes
        let groups = try request.within.map { try Groups(self, attribute: $0, newIds: newIds, txn) }
        report.within = request.within
        report.predicted = groups?.predicted
        for pass in 0..<passes {
            let ids = Array(newIds[(pass * perPass)..<min(newIds.count, (pass + 1) * perPass)])
            let tops = try scoreNewItems(ids, request, below: request.includeNew ? report.throughId : report.firstId,
                                         groups: groups, txn)
            try keep(ids, tops, count: request.count, output, txn)
            engine.logger.info("new-items job", metadata: [
                "collection": "\(name)", "pass": "\(pass + 1)/\(passes)",
                "done": "\(String(format: "%.0f%%", 100 * newItemsProgress.fraction))"])
        }
        return report
    }

    private func firstNewId(_ since: NewItemsRequest.Since, _ txn: Transaction) throws -> UInt64 {
        switch since {
        case .id(let id): return id
        case .time(let second): return try store.firstId(since: second, txn) ?? nextLiveId(txn)
        case .lastRun:
            guard let last = try lastNewItemsReport(txn) else {
                throw EngineError.invalidArgument("no earlier new-items job for '\(name)': say where to start (SINCE ID n or SINCE TIME unix-seconds)")
            }
            return last.throughId
        }
    }

    private func liveIds(from first: UInt64, _ txn: Transaction) throws -> [UInt64] {
        var ids: [UInt64] = []
        try store.forEachVector(from: first, txn) { id, _ in ids.append(id); return true }
        return ids
    }

    /// Stored vectors (items and views) with ids below `end`.
    private func storedVectors(below end: UInt64, _ txn: Transaction) throws -> Int {
        var n = 0
        try store.forEachVector(from: 0, txn) { id, _ in
            guard id < end else { return false }
            n += 1
            return true
        }
        return n
    }

}

/// A job that did not finish: when it started, where it was writing, and why it stopped.
public struct AbortedNewItemsRun: Sendable, Equatable, Codable {
    public var startedAt: Double
    public var output: String?
    public var reason: String
}
