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

    /// A job's category restriction: a group number per value of the attribute that some new
    /// item has (stored, or predicted when it has none), and the group of every existing item
    /// in one of those groups. A new item with no value, stored or predicted, is unrestricted.
    struct Groups {
        var ofNew: [UInt64: Int32] = [:]
        var ofExisting: [UInt64: Int32] = [:]
        var predicted = 0
        /// Rows in no new item's group: never a candidate of a restricted query.
        static let none: Int32 = -2

        init(_ c: Collection, attribute: String, newIds: [UInt64], _ txn: Transaction) throws {
            var number: [String: Int32] = [:]
            for id in newIds {
                guard let record = try c.store.item(id, txn) else { continue }
                var value = Attributes(record.attributes)?.indexedTexts(attribute).first
                if value == nil, let guess = try c.predict(.key(record.key), attribute: attribute)?.category {
                    value = guess
                    predicted += 1
                }
                guard let value else { continue }
                let g = number[value] ?? Int32(number.count)
                number[value] = g
                ofNew[id] = g
            }
            for (value, g) in number {
                for id in try c.store.ids(attribute: attribute, value: value, txn) { ofExisting[id] = g }
            }
        }

        func query(_ id: UInt64) -> Int32 { ofNew[id] ?? ExactScan.anyGroup }
        func row(_ id: UInt64) -> Int32 { ofExisting[id] ?? Self.none }
    }

    /// Each new item's TopK over the live items with ids below `end`, streamed from LMDB.
    private func scoreNewItems(_ ids: [UInt64], _ request: NewItemsRequest, below end: UInt64,
                               groups: Groups?, _ txn: Transaction) throws -> [TopK] {
        let d = definition.dimension
        var queries = StoredBlock(dimension: d, metric: definition.metric, capacity: ids.count)
        for id in ids {
            if let bytes = try store.vectorBytes(id, txn) { queries.add(id: id, bytes: bytes) }
        }
        let queryGroups = groups.map { g in queries.ids.prefix(queries.count).map(g.query) }
        // With views, one item may fill several places: keep more, then one per item (`keep`).
        let heap = try store.viewCount(txn) > 0 ? request.count * 4 : request.count
        let tops = UnsafeMutablePointer<TopK>.allocate(capacity: ids.count)
        tops.initialize(repeating: TopK(k: heap), count: ids.count)
        defer { tops.deinitialize(count: ids.count); tops.deallocate() }
        var block = StoredBlock(dimension: d, metric: definition.metric, capacity: 16_384)
        let workers = engine.options.batchJobThreads > 0 ? engine.options.batchJobThreads
            : ProcessInfo.processInfo.activeProcessorCount
        let scratch = (0..<workers).map { _ in
            UnsafeMutablePointer<Float>.allocate(capacity: ExactScan.batchQueryTile * ExactScan.batchRowTile)
        }
        defer { scratch.forEach { $0.deallocate() } }
        let flush = { (block: inout StoredBlock) in
            let rowGroups = groups.map { g in block.ids.prefix(block.count).map(g.row) }
            Self.score(queries, block, tops: tops, metric: self.definition.metric.faiss, workers: workers, scratch: scratch,
                       groups: queryGroups.map { ($0, rowGroups!) })
            self.newItemsProgress.advance(by: block.count)
            block.removeAll()
        }
        try store.forEachVector(from: 0, txn) { id, bytes in
            guard id < end else { return false }
            block.add(id: id, bytes: bytes)
            if block.isFull { flush(&block) }
            return true
        }
        flush(&block)
        return (0..<ids.count).map { tops[$0] }
    }

    /// One block of existing rows against every query; worker w takes query tiles w, w + W, …
    /// `groups`: the queries' and the rows' groups (Groups), when the job is restricted.
    private static func score(_ queries: StoredBlock, _ block: StoredBlock, tops: UnsafeMutablePointer<TopK>,
                              metric: FaissMetric, workers: Int, scratch: [UnsafeMutablePointer<Float>],
                              groups: ([Int32], [Int32])?) {
        guard block.count > 0, queries.count > 0 else { return }
        guard let groups else { return score(queries, block, tops: tops, metric: metric, workers: workers, scratch: scratch, qg: nil, rg: nil) }
        groups.0.withUnsafeBufferPointer { qg in
            groups.1.withUnsafeBufferPointer { rg in
                score(queries, block, tops: tops, metric: metric, workers: workers, scratch: scratch,
                      qg: qg.baseAddress, rg: rg.baseAddress)
            }
        }
    }

    private static func score(_ queries: StoredBlock, _ block: StoredBlock, tops: UnsafeMutablePointer<TopK>,
                              metric: FaissMetric, workers: Int, scratch: [UnsafeMutablePointer<Float>],
                              qg: UnsafePointer<Int32>?, rg: UnsafePointer<Int32>?) {
        let d = queries.dimension
        let tile = ExactScan.batchQueryTile
        let tiles = (queries.count + tile - 1) / tile
        queries.rows.withUnsafeBufferPointer { q in
            queries.norms.withUnsafeBufferPointer { qn in
                queries.ids.withUnsafeBufferPointer { qi in
                    block.rows.withUnsafeBufferPointer { r in
                        block.norms.withUnsafeBufferPointer { rn in
                            block.ids.withUnsafeBufferPointer { ri in
                                let shared = SharedPointers(q: q.baseAddress!, qn: qn.baseAddress!, qi: qi.baseAddress!,
                                                            r: r.baseAddress!, rn: rn.baseAddress!, ri: ri.baseAddress!,
                                                            tops: tops, scratch: scratch, qg: qg, rg: rg)
                                let (rowCount, queryCount) = (block.count, queries.count)
                                DispatchQueue.concurrentPerform(iterations: workers) { w in
                                    var t = w
                                    while t < tiles {
                                        let first = t * tile
                                        let n = min(tile, queryCount - first)
                                        ExactScan.scanBatch(
                                            queries: shared.q + first * d, queryCount: n, querySquaredNorms: shared.qn + first,
                                            queryIds: shared.qi + first, rows: shared.r, rowCount: rowCount,
                                            rowSquaredNorms: shared.rn, rowIds: shared.ri, dimension: d, metric: metric,
                                            tops: shared.tops + first, scratch: shared.scratch[w],
                                            queryGroups: shared.qg.map { $0 + first }, rowGroups: shared.rg)
                                        t += workers
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Writes each item's neighbours as a JSON line to the output and to the neighbors table.
    private func keep(_ ids: [UInt64], _ tops: [TopK], count: Int, _ output: JSONLinesFile?, _ snapshot: Transaction) throws {
        let scoreName = definition.metric == .l2 ? "distance" : "similarity"
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys  // "key" first: a line reads as what it is about
        var pending: [(String, [UInt8])] = []
        func flush() throws {
            let batch = pending
            pending.removeAll(keepingCapacity: true)
            try output?.write(batch.map(\.1))
            // A collection dropped while the job ran keeps nothing of it.
            guard !isDropped else { throw EngineError.unknownCollection(name) }
            try wrapped { try engine.environment.write { txn in for (k, line) in batch { try store.putNeighbors(key: k, line, txn) } } }
        }
        for (id, top) in zip(ids, tops) {
            guard let item = try store.item(id, snapshot) else { continue }
            var neighbors: [NewItemsLine.Neighbor] = []
            var seen: Set<String> = [item.key]  // an item's own views are not its neighbours
            for n in top.sorted() where neighbors.count < count {
                guard let r = try store.item(n.id, snapshot) else { continue }
                let owner = Views.split(r.key).item
                if seen.insert(owner).inserted { neighbors.append(.init(key: owner, score: score(n.distance))) }
            }
            let line = NewItemsLine(key: item.key, metric: scoreName, neighbors: neighbors)
            pending.append((item.key, Array(try encoder.encode(line))))
            if pending.count >= Self.newItemsWriteBatch { try flush() }
        }
        try flush()
    }
}

/// The pointers the workers share; each worker writes only its own tiles' TopKs.
private struct SharedPointers: @unchecked Sendable {
    let q: UnsafePointer<Float>, qn: UnsafePointer<Float>, qi: UnsafePointer<UInt64>
    let r: UnsafePointer<Float>, rn: UnsafePointer<Float>, ri: UnsafePointer<UInt64>
    let tops: UnsafeMutablePointer<TopK>
    let scratch: [UnsafeMutablePointer<Float>]
    /// The queries' and rows' groups of a restricted job; nil otherwise.
    let qg: UnsafePointer<Int32>?, rg: UnsafePointer<Int32>?
}

/// A job that did not finish: when it started, where it was writing, and why it stopped.
public struct AbortedNewItemsRun: Sendable, Equatable, Codable {
    public var startedAt: Double
    public var output: String?
    public var reason: String
}
