// Sinks: where ingested items go.
//   OfflineSink: straight into a data folder through the engine (the server must be stopped:
//     the folder's lock says so). Large group-commit batches, one segment sealed at the end.
//   OnlineSink: into a running server, pipelined VADDs with a bounded number in flight.
// Both are idempotent per item: the same key with the same vector and attributes is left
// unchanged, so running a load again resumes it without duplicates.
import Foundation
import LookalikeClient
import LookalikeEngine

enum Outcome {
    case added, updated, unchanged
    case failed(String)
}

protocol Sink {
    func write(_ items: [Item]) async throws -> [Outcome]
    /// Makes everything written durable and searchable from disk.
    func finish() async throws
}

final class OfflineSink: Sink {
    let engine: Engine
    let collection: Collection

    init(engine: Engine, collection: Collection) {
        self.engine = engine
        self.collection = collection
    }

    func write(_ items: [Item]) async throws -> [Outcome] {
        let requests = items.map {
            WriteRequest.upsert(key: $0.key, vector: $0.vector, attributes: .set($0.attributes))
        }
        return await collection.write(batch: requests).map { result in
            switch result {
            case .success(.added): return .added
            case .success(.unchanged): return .unchanged
            case .success: return .updated
            case .failure(let e): return .failed(e.description)
            }
        }
    }

    func finish() async throws {
        try engine.persist()  // seals what is left
        try engine.sync()  // the load ran without fsync (--sync none): one now
    }
}

final class OnlineSink: Sink {
    let client: RESPClient
    let collection: String
    /// METRIC / INDEX words for the VADD that creates the set, when it does not exist yet.
    let creation: [String]

    init(client: RESPClient, collection: String, creation: [String]) {
        self.client = client
        self.collection = collection
        self.creation = creation
    }

    func write(_ items: [Item]) async throws -> [Outcome] {
        for item in items {
            let blob = item.vector.withUnsafeBytes { Array($0) }  // float32, little-endian (x86-64, arm64)
            var arguments: [[UInt8]] = [Array("VADD".utf8), Array(collection.utf8), Array("FP32".utf8), blob, Array(item.key.utf8)]
            arguments += creation.map { Array($0.utf8) }
            if let a = item.attributes { arguments += [Array("SETATTR".utf8), Array(a.utf8)] }
            client.send(arguments)
        }
        try client.flush()
        return try items.map { _ in
            switch try client.read() {
            case .integer(1): return .added
            case .integer: return .updated  // VADD answers 0 for updated and unchanged alike
            case .error(let e): return .failed(e)
            case let other: return .failed("unexpected reply \(other)")
            }
        }
    }

    func finish() async throws {
        // Acknowledged VADDs are durable already; SAVE seals them into the index as well.
        if case .error(let e) = try client.call(["SAVE"]) { throw IngestError("SAVE failed: \(e)") }
    }
}

struct IngestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
