// lookalike-test-writer: the child process of the crash tests. It streams writes into a data
// folder and prints one line per acknowledged write, until it is killed:
//   ADD <i> <version>   item k<i> holds writerVector(i, version)
//   DEL <i>             item d<i> was removed
// Usage: lookalike-test-writer DATA_DIR FIRST_INDEX [busy]
// "busy": segments merge all the time (merge factor 2) and writers are held back by the
// indexer (a backlog bound of 64 items), so kills land in merges and in backpressure.
import Foundation
import LookalikeEngine

let arguments = CommandLine.arguments
guard arguments.count == 3 || (arguments.count == 4 && arguments[3] == "busy"), let first = Int(arguments[2]) else {
    FileHandle.standardError.write("usage: lookalike-test-writer DATA_DIR FIRST_INDEX [busy]\n".data(using: .utf8)!)
    exit(2)
}
let dimension = 16

func writerVector(index: Int, version: Int) -> [Float] {
    (0..<dimension).map { j in Float((index * 31 + j * 7 + version * 13) % 97) / 97 + Float(j == 0 ? 1 : 0) }
}

var options = EngineOptions()
options.sealThreshold = 700  // seals (file writes, manifest commits) happen while we are killed
if arguments.count == 4 {
    options.sealThreshold = 300
    options.mergeFactor = 2
    options.maxUnindexedBytes = 64 * dimension * 4
}
let engine: Engine
let collection: Collection
do {
    engine = try Engine(directory: arguments[1], options: options)
    collection = try engine.createCollectionIfMissing(CollectionDefinition(
        name: "crash", dimension: dimension, metric: .l2, index: "HNSW16", attributes: ["category"]))
} catch {
    // Say why on stderr (the test shows it) rather than trapping on a top-level `try`.
    FileHandle.standardError.write("lookalike-test-writer: cannot open \(arguments[1]): \(error)\n".data(using: .utf8)!)
    exit(1)
}

let inFlight = DispatchSemaphore(value: 256)
@Sendable func say(_ line: String) {
    // Completions run on the engine's commit thread only: one writer of stdout.
    FileHandle.standardOutput.write((line + "\n").data(using: .utf8)!)
}

var i = first
while true {
    // A new item, an update of an earlier one, and an item added then deleted.
    let version = i % 3 == 0 && i > first ? 1 : 0
    let target = version == 1 ? i - 1 : i
    inFlight.wait()
    collection.submit(.upsert(key: "k\(target)", vector: writerVector(index: target, version: version),
                              attributes: .set("{\"category\":\"c\(target % 7)\"}"))) { result in
        if case .success = result { say("ADD \(target) \(version)") }
        inFlight.signal()
    }
    if i % 5 == 0 {
        let d = i
        inFlight.wait()
        collection.submit(.upsert(key: "d\(d)", vector: writerVector(index: d, version: 9), attributes: .keep)) { _ in
            inFlight.signal()
        }
        inFlight.wait()
        collection.submit(.remove(key: "d\(d)")) { result in
            if case .success(.removed) = result { say("DEL \(d)") }
            inFlight.signal()
        }
    }
    i += 1
}
