// `lookalike-bench scale`: a large generated collection end to end — bulk load with
// lookalike-ingest (time, peak memory), start-up of the server on it (recovery, nothing
// rebuilt), its memory per item against the raw vectors (anonymous and file-backed resident
// memory apart: LMDB pages mapped by reads are file pages the kernel may reclaim), recall@10
// and queries/s over TCP, and restarts after SIGTERM and after SIGKILL. Several `--index`
// specs run one after another on the same generated data, with a side-by-side summary.
// `--rescore` sweeps rescoring factors at every effort and `--peers` adds faiss-cpu's index of
// each IVF spec on the same rows (ScaleSweep.swift): the 4096-d IVF-PQ run of issue 15; for
// HNSW specs, faiss-cpu HNSW32 at efConstruction 200 (issue 12's 1M × 128 comparison).
import ArgumentParser
import Foundation
import LookalikeClient
import LookalikeFormats
#if canImport(Glibc)
import Glibc
#endif

struct Scale: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "1,000,000 generated items: load, memory per item, start-up time, recall and rate over TCP.")

    @Option(help: "Generated items.") var count = 1_000_000
    @Option(help: "Generated dimension.") var dimension = 128
    @Option(help: "Latent dimension of the generated data (0: clusters in the full dimension; L: clusters in L dimensions mapped into --dimension, low intrinsic dimension as image embeddings have: Dataset.swift).") var latent = 0
    @Option(parsing: .upToNextOption, help: "FAISS index specs, each loaded and measured in turn on the same data.") var index: [String] = ["HNSW32"]
    @Option(help: "Held-out queries.") var queries = 1_000
    @Option(parsing: .upToNextOption, help: "Query efforts: EF for HNSW, NPROBE for IVF.") var efforts: [Int] = [32, 64, 128]
    @Option(parsing: .upToNextOption, help: "Rescoring factors, each run at every effort (VSIM … RESCORE r; 0 sends NORESCORE); none: the collection's default.") var rescore: [Int] = []
    @Flag(help: "Also faiss-cpu on the same vectors and queries, in-process on 2 threads (Tools/bench/peers.py): each IVF spec's index with the same training rows, plain and under IndexRefineFlat at the --rescore factors; and HNSW32 at efConstruction 200 when an HNSW spec runs.") var peers = false
    @Option(help: "Items per sealed segment, given to lookalike-ingest (default: its own, at most 2 GiB of vectors); the first segment is the training sample.") var segmentItems: Int?
    @Option(help: "Queries timed per point (the held-out set repeated).") var timedQueries = 4_000
    @Option(help: "Recall at which the --peers summary compares rates.") var target = 0.95
    @Option(parsing: .upToNextOption, help: "Folders to serve instead of loading, one per --index spec in order, each loaded before with the same --count and --dimension (e.g. a copy of a run's folder): queries again at other efforts or with another binary. Left in place.") var serve: [String] = []
    @Option(help: "Keep each loaded folder in DIR/<spec> (',' as '_') instead of deleting it, for --serve later (another binary, other efforts).") var keep: String?
    @Option(help: "Port for the server under test.") var port = 6479
    @Flag(help: "100,000 items: finishes in under two minutes.") var quick = false
    @Option(help: "Scratch folder (deleted afterwards).") var scratch = NSTemporaryDirectory() + "lookalike-bench-scale"

    mutating func run() async throws {
        lineBufferedOutput()
        let n = quick ? 100_000 : count
        let t0 = now()
        let (set, rawQueries) = Dataset.generate(count: n + queries, dimension: dimension, seed: 42, latent: latent).split(queries: queries, seed: 5)
        print("# Scale: \(set.name) → base \(set.count), \(index.joined(separator: " | ")); \(machineLine())")
        print("generated in \(String(format: "%.1f", now() - t0)) s")
        try? FileManager.default.removeItem(atPath: scratch)
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let npy = scratch + "/vectors.npy", meta = scratch + "/meta.jsonl"
        try VectorFile.writeNPY(set.vectors, rows: set.count, dimension: set.dimension, to: npy)
        try (0..<set.count).map { "{\"id\":\"\(set.keys[$0])\",\"category\":\"\(set.categories[$0])\"}" }
            .joined(separator: "\n").write(toFile: meta, atomically: true, encoding: .utf8)
        let prepared = set.prepared()
        let truth = GroundTruth(base: prepared, rows: set.count, queries: rawQueries, dimension: set.dimension, k: 10, normalise: true)
        var summary: [String] = [], points: [Point] = [], builds: [PeerBuild] = []
        guard serve.isEmpty || serve.count == index.count else {
            throw ValidationError("--serve takes one folder per --index spec (\(index.count)), not \(serve.count)")
        }
        for (i, spec) in index.enumerated() {
            let (row, measured) = try measure(spec, set: set, npy: npy, meta: meta, prepared: prepared, truth: truth, rawQueries: rawQueries,
                                              served: serve.isEmpty ? nil : serve[i])
            summary += row
            points += measured
        }
        if peers {
            let queriesNPY = scratch + "/queries.npy"
            try VectorFile.writeNPY(rawQueries.flatMap { $0 }, rows: rawQueries.count, dimension: set.dimension, to: queriesNPY)
            for spec in index where spec.hasPrefix("IVF") {
                let t1 = now()
                let (p, b) = try ScaleSweep.peers(spec: spec, npy: npy, queriesNPY: queriesNPY, trainRows: trainingRows(set),
                                                  efforts: efforts, factors: rescore.filter { $0 > 0 }, rounds: max(1, timedQueries / rawQueries.count),
                                                  scratch: scratch, truth: truth, prepared: prepared, queries: rawQueries.count)
                print("faiss-cpu \(spec): \(String(format: "%.1f", now() - t1)) s in all")
                points += p
                builds += b
            }
            if index.contains(where: { !$0.hasPrefix("IVF") }) {
                let t1 = now()
                let (p, b) = try ScaleSweep.hnswPeer(npy: npy, queriesNPY: queriesNPY, efforts: efforts,
                                                     rounds: max(1, timedQueries / rawQueries.count), scratch: scratch,
                                                     truth: truth, prepared: prepared, queries: rawQueries.count)
                print("faiss-cpu HNSW32 efConstruction 200: \(String(format: "%.1f", now() - t1)) s in all")
                points += p
                builds += b
            }
        }
        print("")
        let labels = efforts.flatMap { e in rescore.isEmpty ? ["effort \(e)"] : rescore.map { "effort \(e) rescore \($0)" } }
        print("| \(set.count) × \(set.dimension) | RSS after queries (anon + file) | × raw (anon) | " + labels.map { "\($0): recall@10, q/s" }.joined(separator: " | ") + " |")
        print("|---|---|---|" + labels.map { _ in "---|" }.joined())
        for line in summary { print(line) }
        if !rescore.isEmpty || peers { ScaleSweep.printSummary(points, builds: builds, target: target) }
    }

    /// Items in lookalike-ingest's first segment, the one the index is trained on.
    func trainingRows(_ set: Dataset) -> Int {
        min(set.count, segmentItems ?? (2 << 30) / (4 * set.dimension))
    }

    /// lookalike-ingest of the generated set into `data`, as one trained segment.
    func load(_ spec: String, into data: String, set: Dataset, npy: String, meta: String, rows: inout [(String, String)]) throws {
        let tool = try siblingExecutable("lookalike-ingest")
        let t0 = now()
        let ingestOutput = try runProgram(tool, ["--data", data, "--collection", "items", "--vectors", npy, "--meta", meta, "--index", spec, "--attributes", "category",
                              "--segment-items", "\(trainingRows(set))"])
        let loadSeconds = now() - t0
        print(ingestOutput.trimmingCharacters(in: .whitespacesAndNewlines))
        var usage = rusage()
        getrusage(RUSAGE_CHILDREN.rawValue, &usage)
        rows.append(("bulk load (lookalike-ingest, one segment built, synced)", String(format: "%.1f s, %.0f items/s, peak RSS of the children so far ", loadSeconds, Double(set.count) / loadSeconds) + mib(Double(usage.ru_maxrss) * 1024)))
    }

    /// Where `--keep` moves the folder loaded for `spec` (one folder per spec), or nil.
    func keepFolder(_ spec: String) -> String? {
        keep.map { "\($0)/\(spec.replacingOccurrences(of: ",", with: "_"))" }
    }

    /// Loads `spec` into a fresh folder (or takes `served`, loaded before), serves it, queries
    /// it at every effort; prints its table and returns its summary row.
    func measure(_ spec: String, set: Dataset, npy: String, meta: String, prepared: [Float], truth: GroundTruth,
                 rawQueries: [[Float]], served: String? = nil) throws -> ([String], [Point]) {
        var rows: [(String, String)] = []
        let raw = Double(set.count * set.dimension * 4)
        rows.append(("raw float32 vectors", mib(raw)))
        let data = served ?? scratch + "/data"
        if served == nil {
            try? FileManager.default.removeItem(atPath: data)
            try load(spec, into: data, set: set, npy: npy, meta: meta, rows: &rows)
        }
        defer {
            if served == nil, let keep = keepFolder(spec) {
                try? FileManager.default.removeItem(atPath: keep)
                try? FileManager.default.moveItem(atPath: data, toPath: keep)
            } else if served == nil { try? FileManager.default.removeItem(atPath: data) }
        }
        rows.append(("data folder on disk", mib(Double(folderBytes(data))) + String(format: " (%.2f× raw)", Double(folderBytes(data)) / raw)))
        // Start-up, memory, queries.
        var server = try ServerProcess(data: data, port: port)
        rows.append(("server start-up (cold: first open after the load)", String(format: "%.2f s", server.startSeconds)))
        let afterStart = residentSplit(server.process.processIdentifier)
        let rowOfKey = Dictionary(uniqueKeysWithValues: set.keys.enumerated().map { ($1, $0) })
        let blobs = rawQueries.map { q in q.withUnsafeBytes { Array($0) } }
        let word = spec.hasPrefix("IVF") ? "NPROBE" : "EF"
        var cells: [String] = [], points: [Point] = []
        for effort in efforts {
          for r in rescore.isEmpty ? [nil] : rescore.map({ Optional($0) }) {
            let command = { @Sendable (i: Int) -> [[UInt8]] in
                [Array("VSIM".utf8), Array("items".utf8), Array("FP32".utf8), blobs[i % blobs.count], Array("COUNT".utf8), Array("10".utf8),
                 Array(word.utf8), Array("\(effort)".utf8)] + ScaleSweep.rescoreWords(r)
            }
            _ = try pipelined(port: port, connections: 2, depth: 32, count: 200, command: command)
            let (qps, replies) = try pipelined(port: port, connections: 2, depth: 32, count: max(blobs.count, timedQueries), command: command)
            let hits = replies.prefix(blobs.count).map { r -> [Int] in
                guard case .array(let items?) = r else { return [] }
                return items.map { $0.text.flatMap { rowOfKey[$0] } ?? -1 }
            }
            let recall = truth.recall(hits, base: prepared)
            rows.append(("VSIM \(word) \(effort)\(r.map { " RESCORE \($0)" } ?? "") over TCP (2 connections, pipelined)", String(format: "%.0f q/s, recall@10 %.3f", qps, recall)))
            cells.append(String(format: "%.3f, %.0f", recall, qps))
            points.append(Point(method: "Lookalike server (TCP) \(spec)", index: spec, param: ScaleSweep.param(word, effort, r), recall: recall, qps: qps))
            print("  \(spec) \(ScaleSweep.param(word, effort, r)): recall \(String(format: "%.3f", recall)), \(String(format: "%.0f", qps)) q/s")
          }
        }
        let rss = residentSplit(server.process.processIdentifier)
        rows.append(("server RSS after start-up (anon + file)", "\(mib(Double(afterStart.anon + afterStart.file))) (\(mib(Double(afterStart.anon))) + \(mib(Double(afterStart.file))))"))
        rows.append(("server RSS after the queries (anon + file)", "\(mib(Double(rss.anon + rss.file))) (\(mib(Double(rss.anon))) + \(mib(Double(rss.file))))"
                     + String(format: " = %.0f bytes per item, %.2f× raw (anon alone %.2f×)", Double(rss.anon + rss.file) / Double(set.count),
                              Double(rss.anon + rss.file) / raw, Double(rss.anon) / raw)))
        server.stop()
        server = try ServerProcess(data: data, port: port)
        rows.append(("restart after SIGTERM", String(format: "%.2f s", server.startSeconds)))
        kill(server.process.processIdentifier, SIGKILL)
        server.process.waitUntilExit()
        server = try ServerProcess(data: data, port: port)
        rows.append(("restart after SIGKILL", String(format: "%.2f s", server.startSeconds)))
        let card = try RESPClient(address: "127.0.0.1:\(port)").call(["VCARD", "items"])
        rows.append(("VCARD after the restarts", card.text ?? "\(card)"))
        server.stop()

        print("")
        print("| \(set.count) × \(set.dimension), \(spec) | |")
        print("|---|---|")
        for r in rows { print("| \(r.0) | \(r.1) |") }
        let total = Double(rss.anon + rss.file)
        return (["| \(spec) | \(mib(total)) (\(mib(Double(rss.anon))) + \(mib(Double(rss.file)))) | " + String(format: "%.2f× (%.2f×)", total / raw, Double(rss.anon) / raw)
                + " | " + cells.joined(separator: " | ") + " |"], points)
    }
}

/// Resident memory of a process by kind (/proc/<pid>/status): anonymous (heap, FAISS's
/// arrays) and file-backed (mapped pages of LMDB and binaries, which the kernel may reclaim).
func residentSplit(_ pid: Int32) -> (anon: Int, file: Int) {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return (0, 0) }
    func kib(_ field: String) -> Int {
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(field) }) else { return 0 }
        return (Int(String(line.drop { !$0.isNumber }.prefix { $0.isNumber })) ?? 0) * 1024
    }
    return (kib("RssAnon:"), kib("RssFile:") + kib("RssShmem:"))
}

func mib(_ bytes: Double) -> String { String(format: "%.0f MiB", bytes / 1_048_576) }
func f2(_ x: Double) -> String { x.isNaN ? "—" : String(format: "%.2f", x) }

/// Bytes of the regular files under a folder.
func folderBytes(_ path: String) -> Int {
    guard let e = FileManager.default.enumerator(atPath: path) else { return 0 }
    var total = 0
    for case let name as String in e {
        total += ((try? FileManager.default.attributesOfItem(atPath: path + "/" + name))?[.size] as? Int) ?? 0
    }
    return total
}
