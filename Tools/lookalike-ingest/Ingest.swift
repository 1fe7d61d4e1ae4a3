// lookalike-ingest: loads vector files (and their metadata) into a collection, offline into a
// data folder or online into a running server. See Docs/tools.md.
//
// Stages: (1) every input is opened and checked (vector file, metadata, the definition with
// FAISS's verdict on its index spec, metadata that does not line up with the vectors) before
// (2) the data folder, the server or the collection is touched; then (3) the rows are loaded
// in batches and (4) sealed and synced (offline) or SAVEd (online). A failure in any stage
// fails the tool, with the stage named and what to do.
//
// Exit status: 0 when every row loaded or was reported and skipped; 1 on a fatal error
// (unusable input, server gone, a seal or sync that failed, a bad record under --strict); 130
// when interrupted (what was acknowledged before stays; running the same command again
// resumes).
// Threads: the main task only (the sinks block on it); signals arrive on a dispatch queue.
import ArgumentParser
import Dispatch
import Foundation
import LookalikeClient
import LookalikeEngine
import LookalikeFormats
import LookalikeStorage
import LookalikeToolSupport

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
        if let l = limit, l < 1 { throw ValidationError("--limit must be positive") }
    }

    func run() async throws {
        let report = Report(strict: strict)
        let inputs = try checkInputs(report: report)
        // Joined by key, the metadata is read (and its bad lines reported) here: still before
        // anything is written, so --strict stops with nothing done.
        let reader = try ItemReader(vectors: inputs.file, rows: inputs.rows, metadata: inputs.metadata,
                                    join: Join(rawValue: join)!, keyField: keyField,
                                    fields: fields?.split(separator: ",").map(String.init),
                                    maxAttributeBytes: EngineOptions().maxAttributeBytes, report: report)
        let (sink, engine) = try openSink(inputs)
        defer { engine?.close() }

        let interrupted = Interruption()
        let progress = ProgressBar(total: inputs.rows)
        let counts = try await load(reader, into: sink, report: report, progress: progress, interrupted: interrupted)
        try await sink.finish(report: report)
        let seconds = Date().timeIntervalSince(progress.started)
        print("\(interrupted.isSet ? "interrupted" : "done"): \(counts.added) added, \(counts.updated) updated, \(counts.unchanged) unchanged, "
              + "\(report.skipped) skipped, \(counts.rows) rows\(report.asides) in \(String(format: "%.1f", seconds)) s "
              + "(\(Int(Double(counts.rows) / max(seconds, 1e-9))) rows/s)")
        if let note = try sink.exactNote() { print(note) }
        if interrupted.isSet { throw ExitCode(130) }
    }

    /// What the outcomes of the rows read add up to (with Report's skipped: all of them).
    struct Counts {
        var added = 0, updated = 0, unchanged = 0, rows = 0
    }

    /// Reads, writes and counts batches until the rows run out or the user interrupts.
    func load(_ reader: ItemReader, into sink: any Sink, report: Report, progress: ProgressBar,
              interrupted: Interruption) async throws -> Counts {
        var counts = Counts()
        while counts.rows < reader.rows, !interrupted.isSet {
            var items: [Item] = []
            while items.count < batch, let item = try reader.next() { items.append(item) }
            // Empty when the last rows were all skipped: their count still moves on.
            for (item, outcome) in zip(items, items.isEmpty ? [] : try await sink.write(items)) {
                switch outcome {
                case .added: counts.added += 1
                case .updated: counts.updated += 1
                case .unchanged: counts.unchanged += 1
                case .failed(let why): try report.skip("row \(item.row) (\(item.key)): \(why)")
                }
            }
            counts.rows = reader.row
            progress.update(done: counts.rows)
            if items.isEmpty { break }
        }
        progress.finish(done: counts.rows)
        return counts
    }

    /// The checked inputs of a load.
    struct Inputs {
        let file: VectorFile
        let metadata: MetadataFile?
        let definition: CollectionDefinition
        /// Rows to load: the file's, or the first --limit.
        let rows: Int
    }

    /// Opens and checks every input, and throws (saying what to do) before anything exists:
    /// no data folder, no connection, no collection.
    func checkInputs(report: Report) throws -> Inputs {
        let file = try VectorFile(path: vectors, format: format.flatMap(VectorFormat.init), dimension: dim)
        guard file.count > 0 else {
            throw IngestError("\(vectors) holds no vectors: nothing to load (check that it was written completely)")
        }
        let metadata = try meta.map { try MetadataFile(path: $0, format: metaFormat.flatMap(MetadataFormat.init)) }
        let rows = min(file.count, limit ?? file.count)
        if Join(rawValue: join)! == .row, let metadata {
            try checkRecordCount(metadata, file: file, rows: rows, report: report)
        }
        return Inputs(file: file, metadata: metadata, definition: try wantedDefinition(dimension: file.dimension), rows: rows)
    }

    /// Joined by row, record i goes with vector i: a metadata file with fewer or more records
    /// most likely lost or gained a line somewhere, and every record after it sits on the wrong
    /// vector. Records past the rows a --limit loads are no mismatch; records past every row are.
    func checkRecordCount(_ metadata: MetadataFile, file: VectorFile, rows: Int, report: Report) throws {
        let records = metadata.countRecords()
        guard records < rows || records > file.count else { return }
        let what = records < rows
            ? "\(metadata.path) has \(records) records for \(rows) vectors: \(Self.rowRange(records, rows - 1)) have no record"
            : "\(metadata.path) has \(records) records for \(file.count) vectors: the last \(records - file.count) records are not used"
        let advice = "joined by row, record i goes with vector i, so the two may not line up: check both files, or join by key (--join key)"
        if strict { throw IngestError("\(what); \(advice); nothing was loaded (--strict)") }
        report.warn("\(what)\(records < rows ? " and are skipped" : ""); \(advice)")
    }

    static func rowRange(_ first: Int, _ last: Int) -> String {
        first == last ? "row \(first)" : "rows \(first) to \(last)"
    }

    /// The definition a missing collection is created with, checked as the engine would.
    func wantedDefinition(dimension: Int) throws -> CollectionDefinition {
        var wanted = try definition.map { try CollectionDefinition.load(path: $0) }
            ?? CollectionDefinition(name: collection, dimension: dimension, metric: Metric(rawValue: metric)!, index: index,
                                    attributes: attributes.split(separator: ",").map(String.init))
        wanted.name = collection
        guard wanted.dimension == dimension else {
            throw IngestError("\(definition!) says dimension \(wanted.dimension), \(vectors) holds \(dimension)-d vectors: "
                              + "give a definition of dimension \(dimension), or the vector file it was written for")
        }
        do { try wanted.check() } catch EngineError.indexSpecRejected(let spec, let reason) {
            throw IngestError("FAISS rejects the index spec \"\(spec)\": \(reason) (pick another --index, e.g. HNSW32, IVF1024,SQ8 or Flat)")
        }
        return wanted
    }

    /// The engine (offline) or the server connection (online), with the collection ready.
    func openSink(_ inputs: Inputs) throws -> (any Sink, Engine?) {
        let wanted = inputs.definition, dimension = inputs.file.dimension
        if let server {
            let client = try RESPClient(address: server, password: password)
            let creation = ["METRIC", wanted.metric.rawValue.uppercased(), "INDEX", wanted.index]
            if case .integer(let d) = try client.call(["VDIM", collection]), d != dimension {
                throw IngestError("'\(collection)' on \(server) holds \(d)-d vectors, the file \(dimension)-d: "
                                  + "load into another --collection, or pass a \(d)-d vector file")
            }
            let (address, secret) = (server, password)
            return (OnlineSink(client: client, address: server, collection: collection, creation: creation,
                               connect: { try RESPClient(address: address, password: secret) }), nil)
        }
        var options = EngineOptions()
        options.storage.sync = SyncMode(rawValue: sync)!
        // One segment for the whole load when it fits in 2 GiB of float32 rows.
        options.sealThreshold = max(1, segmentItems ?? min(max(inputs.rows, 1), (2 << 30) / (4 * dimension)))
        let engine = try Engine(directory: data!, options: options)
        do {
            return (OfflineSink(engine: engine, collection: try collection(wanted, in: engine)), engine)
        } catch {
            engine.close()
            throw error
        }
    }

    /// The existing collection if it holds vectors of the file's dimension, else a new one.
    func collection(_ wanted: CollectionDefinition, in engine: Engine) throws -> Collection {
        guard let existing = engine.collection(collection) else { return try engine.createCollection(wanted) }
        guard existing.definition.dimension == wanted.dimension else {
            throw IngestError("'\(collection)' in \(data!) holds \(existing.definition.dimension)-d vectors, the file \(wanted.dimension)-d: "
                              + "load into another --collection, or pass a \(existing.definition.dimension)-d vector file")
        }
        return existing
    }
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
