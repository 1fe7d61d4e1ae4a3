// NewItemsScoring: the batch job's arithmetic (NewItems.swift). One pass holds its new items'
// vectors in a StoredBlock; the existing items stream from LMDB in blocks of 16,384 rows; each
// block is scored against every new item by sgemm tiles (ExactScan.scanBatch), worker w taking
// query tiles w, w + W, … so that each TopK heap has one writer. WITHIN attribute restricts
// each new item to existing items sharing its value (Groups), stored or predicted.
// Invariants: exact (every live row below the bound is scored against every query of a group
// it may match); each worker writes only its own tiles' heaps.
// Threads: the job's thread, and `batchJobThreads` workers (all cores by default) inside each
// block through DispatchQueue.concurrentPerform.
import Dispatch
import Foundation
import LookalikeIndex
import LookalikeStorage

extension Collection {
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
    func scoreNewItems(_ ids: [UInt64], _ request: NewItemsRequest, below end: UInt64,
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
