// NewItemsOutput: what the new-items batch job writes with OUTPUT name — JSON lines, one per
// new item (NewItemsLine), into <data>/exports/<name>, written as `.partial` and renamed only
// when complete and synced (JSONLinesFile); and each new item's list kept in the neighbors
// table (`keep`), in transactions of `newItemsWriteBatch` lines.
// Threads: one job's own thread; a file belongs to one job.
import Foundation
import LookalikeIndex
import LookalikeStorage

/// One line of the job's output: {"key": …, "metric": "similarity"|"distance", "neighbors": [{"key": …, "score": …}, …]}.
struct NewItemsLine: Codable {
    struct Neighbor: Codable {
        var key: String
        var score: Float
    }
    var key: String
    /// What `score` is: cosine similarity or inner product ("similarity"), or L2 distance.
    var metric: String
    var neighbors: [Neighbor]
}

/// An output file of JSON lines. It is written as `<path>.partial` and renamed to `path` only
/// when complete and synced, so a reader never sees a partial export under the final name;
/// a killed job's `.partial` file is removed at the next start (Engine).
final class JSONLinesFile {
    static let partialSuffix = ".partial"
    let handle: FileHandle
    let path: String
    var partialPath: String { path + Self.partialSuffix }

    init(path: String) throws {
        self.path = path
        guard FileManager.default.createFile(atPath: path + Self.partialSuffix, contents: nil) else {
            throw EngineError.invalidArgument("cannot create the output file '\(path)': check the folder exists and is writable")
        }
        guard let h = FileHandle(forWritingAtPath: path + Self.partialSuffix) else {
            throw EngineError.invalidArgument("cannot open the output file '\(path)' for writing")
        }
        handle = h
    }

    /// Removes the partial file of a job that failed.
    func discard() {
        try? handle.close()
        unlink(partialPath)
    }

    func write(_ lines: [[UInt8]]) throws {
        var data = Data()
        for l in lines { data.append(contentsOf: l); data.append(0x0A) }
        do { try handle.write(contentsOf: data) } catch {
            throw EngineError.invalidArgument("writing '\(path)' failed: \(error.localizedDescription)")
        }
    }

    func close() throws {
        try? handle.synchronize()
        try handle.close()
        guard rename(partialPath, path) == 0 else {
            throw EngineError.invalidArgument("cannot rename \(partialPath) to \(path): \(String(cString: strerror(errno)))")
        }
    }
}

extension Collection {
    /// Writes each item's neighbours as a JSON line to the output and to the neighbors table.
    func keep(_ ids: [UInt64], _ tops: [TopK], count: Int, _ output: JSONLinesFile?, _ snapshot: Transaction) throws {
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
