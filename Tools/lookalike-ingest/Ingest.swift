// lookalike-ingest: loads vector files (and their metadata) into a collection, offline into a
// data folder or online into a running server. See Docs/tools.md.
//
// Exit status: 0 when every record loaded or was reported and skipped; 1 on a fatal error
// (unreadable file, server gone, a bad record under --strict); 130 when interrupted (what was
// acknowledged before stays; running the same command again resumes).
import ArgumentParser
import Dispatch
import Foundation
import LookalikeClient
import LookalikeEngine
import LookalikeFormats
import LookalikeStorage

@main
struct Ingest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lookalike-ingest",
        abstract: "Loads vectors and metadata into a Lookalike collection (offline or through a server).",
        discussion: """
            Vector files: .npy (float32/float16, N×d), .fvecs, raw float32 (--format raw --dim d), \
            Amazon image features (--format amazon: 10-byte ASIN + 4096 float32 per record). \
            Metadata: JSON lines, or Amazon's metadata file (--meta-format amazon). Bad records are \
            reported with their row or line and skipped (--strict stops instead). Loading the \
            same files again adds nothing twice.
            """)

    @Option(help: "The collection to load into (created if missing).") var collection: String
    @Option(help: "The vector file.") var vectors: String
    @Option(help: "Vector file format: npy, fvecs, raw or amazon (default: from the file name).") var format: String?
    @Option(help: "Dimension, for raw files (and a check for the others).") var dim: Int?
    @Option(help: "The metadata file (JSON lines or Amazon metadata).") var meta: String?
    @Option(help: "Metadata format: jsonl or amazon (default: from the file name).") var metaFormat: String?
    @Option(help: "The metadata field holding the item's key.") var keyField = "id"
    @Option(help: "Join vectors and metadata by row order or by key.") var join = "row"
    @Option(help: "Keep only these metadata fields as attributes (comma-separated).") var fields: String?

    @Option(help: "Offline: the data folder to load into (the server must be stopped).") var data: String?
    @Option(help: "Online: the server, host:port.") var server: String?
    @Option(help: "Online: the server's password.") var password: String?

    @Option(help: "Collection definition file (Indexes/*.json) used when creating it.") var definition: String?
    @Option(help: "Metric when creating: cosine, l2 or ip.") var metric = "cosine"
    @Option(help: "FAISS index spec when creating.") var index = "HNSW32"
    @Option(help: "Indexed attributes when creating (comma-separated).") var attributes = "category,author"

    @Option(help: "Items per write batch (offline: per transaction; online: VADDs in flight).") var batch = 4096
    @Option(help: "Offline: items per sealed segment (default: all of the file, at most 2 GiB of vectors).") var segmentItems: Int?
    @Option(help: "Offline: LMDB sync while loading: none (synced once at the end), nometasync or full.") var sync = "none"
    @Option(help: "Load at most this many rows.") var limit: Int?
    @Flag(help: "Stop at the first bad record instead of skipping it.") var strict = false

    func validate() throws {
        guard (data == nil) != (server == nil) else { throw ValidationError("give exactly one of --data DIR (offline) or --server HOST:PORT (online)") }
        guard Join(rawValue: join) != nil else { throw ValidationError("--join must be row or key") }
        guard batch >= 1 && batch <= 65_536 else { throw ValidationError("--batch must be 1 to 65536") }
        guard Metric(rawValue: metric) != nil else { throw ValidationError("--metric must be cosine, l2 or ip") }
        guard SyncMode(rawValue: sync) != nil else { throw ValidationError("--sync must be none, nometasync or full") }
        if let f = format, VectorFormat(rawValue: f) == nil { throw ValidationError("--format must be npy, fvecs, raw or amazon") }
        if let f = metaFormat, MetadataFormat(rawValue: f) == nil { throw ValidationError("--meta-format must be jsonl or amazon") }
        if let s = segmentItems, s < 1 { throw ValidationError("--segment-items must be positive") }
    }

    func run() async throws {
        let file = try VectorFile(path: vectors, format: format.flatMap(VectorFormat.init), dimension: dim)
        let metadata = try meta.map { try MetadataFile(path: $0, format: metaFormat.flatMap(MetadataFormat.init)) }
        let skipped = Counter()
        let strict = self.strict
        let report: (String) throws -> Void = { message in
            FileHandle.standardError.write(Data("skipped: \(message)\n".utf8))
            skipped.value += 1
            if strict { throw IngestError("stopped at the first bad record (--strict)") }
        }
        let reader = try ItemReader(vectors: file, metadata: metadata, join: Join(rawValue: join)!, keyField: keyField,
                                    fields: fields?.split(separator: ",").map(String.init),
                                    maxAttributeBytes: EngineOptions().maxAttributeBytes, report: report)
        let total = min(file.count, limit ?? file.count)
        let (sink, engine) = try openSink(dimension: file.dimension, total: total)
        defer { engine?.close() }

        let interrupted = Interruption()
        var added = 0, updated = 0, unchanged = 0, done = 0
        let progress = Progress(total: total)
        while done < total, !interrupted.isSet {
            var items: [Item] = []
            while items.count < batch, reader.row < total, let item = try reader.next(report: report) {
                items.append(item)
            }
            if items.isEmpty { break }
            for (item, outcome) in zip(items, try await sink.write(items)) {
                switch outcome {
                case .added: added += 1
                case .updated: updated += 1
                case .unchanged: unchanged += 1
                case .failed(let why): try report("row \(item.row) (\(item.key)): \(why)")
                }
            }
            done = reader.row
            progress.update(done: done)
        }
        progress.finish(done: done)
        try await sink.finish()
        let seconds = Date().timeIntervalSince(progress.started)
        print("\(interrupted.isSet ? "interrupted" : "done"): \(added) added, \(updated) updated, \(unchanged) unchanged, \(skipped.value) skipped, "
              + "\(done) rows in \(String(format: "%.1f", seconds)) s (\(Int(Double(done) / max(seconds, 1e-9))) rows/s)")
        if interrupted.isSet { throw ExitCode(130) }
    }

    /// The engine (offline) or the server connection (online), with the collection ready.
    func openSink(dimension: Int, total: Int) throws -> (any Sink, Engine?) {
        var wanted = try definition.map { try CollectionDefinition.load(path: $0) }
            ?? CollectionDefinition(name: collection, dimension: dimension, metric: Metric(rawValue: metric)!, index: index,
                                    attributes: attributes.split(separator: ",").map(String.init))
        wanted.name = collection
        guard wanted.dimension == dimension else {
            throw IngestError("the definition says dimension \(wanted.dimension), the vector file holds \(dimension)")
        }
        if let server {
            let client = try RESPClient(address: server, password: password)
            let creation = ["METRIC", wanted.metric.rawValue.uppercased(), "INDEX", wanted.index]
            if case .integer(let d) = try client.call(["VDIM", collection]), d != dimension {
                throw IngestError("'\(collection)' on the server holds \(d)-d vectors, the file \(dimension)-d")
            }
            return (OnlineSink(client: client, collection: collection, creation: creation), nil)
        }
        var options = EngineOptions()
        options.storage.sync = SyncMode(rawValue: sync)!
        // One segment for the whole load when it fits in 2 GiB of float32 rows.
        options.sealThreshold = max(1, segmentItems ?? min(max(total, 1), (2 << 30) / (4 * dimension)))
        let engine = try Engine(directory: data!, options: options)
        let c: Collection
        if let existing = engine.collection(collection) {
            guard existing.definition.dimension == dimension else {
                engine.close()
                throw IngestError("'\(collection)' holds \(existing.definition.dimension)-d vectors, the file \(dimension)-d")
            }
            c = existing
        } else {
            c = try engine.createCollection(wanted)
        }
        return (OfflineSink(engine: engine, collection: c), engine)
    }
}

final class Counter: @unchecked Sendable {
    var value = 0
}

/// Set by SIGINT / SIGTERM: the load stops between batches, makes what it wrote durable and
/// reports. A second signal ends the process at once (what was acknowledged stays).
final class Interruption: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    private var sources: [DispatchSourceSignal] = []

    init() {
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { [weak self] in
                guard let self else { return }
                if self.isSet { exit(130) }
                self.lock.withLock { self.flag = true }
                FileHandle.standardError.write(Data("\ninterrupted: finishing the current batch (again to quit now)\n".utf8))
            }
            source.resume()
            sources.append(source)
        }
    }

    var isSet: Bool { lock.withLock { flag } }
}
