// Sinks: where ingested items go.
//   OfflineSink: straight into a data folder through the engine (the server must be stopped:
//     the folder's lock says so). Large group-commit batches, one segment sealed at the end.
//   OnlineSink: into a running server, pipelined VADDs with a bounded number in flight.
// Both are idempotent per item: the same key with the same vector and attributes is left
// unchanged, so running a load again resumes it without duplicates. `finish` throws when the
// load did not end durable and indexed, naming the stage that failed and what to do.
// Threads: the load's main loop only.
import Foundation
import LookalikeClient
import LookalikeEngine
import LookalikeToolSupport

enum Outcome {
    case added, updated, unchanged
    case failed(String)
}

protocol Sink {
    func write(_ items: [Item]) async throws -> [Outcome]
    /// Makes everything written durable and searchable from disk.
    func finish(report: Report) async throws
    /// A line for the summary when the collection is left searched exactly because its index
    /// has too few items to train; nil otherwise.
    func exactNote() throws -> String?
}

/// Said with every failed seal: which items are safe, and what can be done.
private let sealAdvice = "If the index spec cannot work for these vectors (see the reason), load them into a new "
    + "collection with another --index; otherwise SAVE on the server, or the same load run again, retries the indexing"

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

    func finish(report: Report) async throws {
        report.stage("sealing", "indexing what was loaded (\(collection.definition.index))")
        var sealError: Error?
        // A graph's items are linked as they load; what is left is linked here, with progress.
        let (c, waiting) = (collection, collection.unindexed.items)
        ProgressBar.during(total: waiting, unit: "items linked", measure: { waiting - c.unindexed.items }) {
            do { try engine.persist() } catch { sealError = error }
        }
        // Synced even when the seal failed: the load ran without fsync (--sync none), and its
        // items, stored in LMDB and searchable, must survive a crash all the same.
        report.stage("syncing", "writing \(engine.directory) to disk")
        do { try engine.sync() } catch {
            throw IngestError("syncing failed: \(error); what was loaded may not survive a crash: "
                              + "fix the disk, then run the same command again (it resumes)")
        }
        guard let sealError else { return }
        // persist() reports any collection's failed seal; say when it is not the one loaded.
        if case EngineError.sealFailed(let other, _) = sealError, other != collection.name {
            throw IngestError("sealing failed in this data folder ('\(other)', not '\(collection.name)'): \(sealError). \(sealAdvice)")
        }
        throw IngestError("sealing failed: \(sealError). \(sealAdvice)")
    }

    func exactNote() throws -> String? {
        let needed = collection.itemsToTrain
        guard needed > 0 else { return nil }
        return "note: '\(collection.name)' holds \(try collection.itemCount()) items, too few to train its \(collection.definition.index) index: "
            + "it is searched exactly (every item compared) until it holds \(needed), and indexed from then on"
    }
}

final class OnlineSink: Sink {
    let client: RESPClient
    /// The server's host:port, for messages.
    let address: String
    let collection: String
    /// METRIC / INDEX words for the VADD that creates the set, when it does not exist yet.
    let creation: [String]

    /// A second connection, for progress while SAVE runs on the first.
    let connect: () throws -> RESPClient

    init(client: RESPClient, address: String, collection: String, creation: [String],
         connect: @escaping () throws -> RESPClient) {
        self.client = client
        self.address = address
        self.collection = collection
        self.creation = creation
        self.connect = connect
    }

    /// The set's items not yet in its index (VINFO unindexed-items); nil if unknown.
    static func unindexed(_ client: RESPClient, _ collection: String) -> Int? {
        guard case .array(let pairs?)? = try? client.call(["VINFO", collection]) else { return nil }
        for i in stride(from: 0, to: pairs.count - 1, by: 2) where pairs[i].text == "unindexed-items" {
            return pairs[i + 1].text.flatMap { Int($0) }
        }
        return nil
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
            let reply = try client.read()
            switch reply {
            case .integer(1): return .added
            case .integer: return .updated  // VADD answers 0 for updated and unchanged alike
            case .error: return .failed(reply.errorMessage!)
            case let other: return .failed("unexpected reply \(other)")
            }
        }
    }

    func finish(report: Report) async throws {
        // Acknowledged VADDs are durable already; SAVE seals them into the index as well.
        report.stage("saving", "SAVE on \(address) (indexes what was loaded)")
        let watcher = try? connect()
        let waiting = watcher.flatMap { Self.unindexed($0, collection) } ?? 0
        let (box, name) = (UncheckedBox(watcher), collection)
        let reply = try ProgressBar.during(total: waiting, unit: "items linked",
                                        measure: { box.value.flatMap { Self.unindexed($0, name) }.map { waiting - $0 } }) {
            try client.call(["SAVE"])
        }
        if let e = reply.errorMessage { throw IngestError("SAVE failed on \(address): \(e). \(sealAdvice)") }
    }

    /// After SAVE, items left in the mutable segment of a set with no sealed one are waiting
    /// for enough to train its index (SAVE seals everything else).
    func exactNote() throws -> String? {
        guard case .array(let pairs?) = try client.call(["VINFO", collection]) else { return nil }
        var info: [String: String] = [:]
        for i in stride(from: 0, to: pairs.count - 1, by: 2) { info[pairs[i].text ?? ""] = pairs[i + 1].text }
        guard info["sealed-segments"] == "0", info["sealing-segments"] == "0",
              let waiting = info["mutable-items"].flatMap({ Int($0) }), waiting > 0 else { return nil }
        return "note: '\(collection)' holds \(waiting) items, too few to train its \(info["index"] ?? "") index: "
            + "it is searched exactly (every item compared) until it holds enough, and indexed from then on"
    }
}
