// NewItemsOutput: what the new-items batch job writes with OUTPUT name — JSON lines, one per
// new item (NewItemsLine), into <data>/exports/<name>, written as `.partial` and renamed only
// when complete and synced (JSONLinesFile).
// Threads: one job's own thread; a file belongs to one job.
import Foundation

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
