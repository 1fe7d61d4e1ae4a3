// `lookalike-bench scale`: a large generated collection end to end — bulk load with
// lookalike-ingest (time, peak memory), start-up of the server on it (recovery, nothing
// rebuilt), its memory per item against the raw vectors (anonymous and file-backed resident
// memory apart: LMDB pages mapped by reads are file pages the kernel may reclaim), recall@10
// and queries/s over TCP, and restarts after SIGTERM and after SIGKILL. Several `--index`
// specs run one after another on the same generated data, with a side-by-side summary; then
// faiss-cpu HNSW32 at efConstruction 200 on the same prepared vectors and queries (2 threads,
// in-process, one batch), and the rate of each HNSW spec at recall 0.95 against it.
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
    @Option(parsing: .upToNextOption, help: "FAISS index specs, each loaded and measured in turn on the same data.") var index: [String] = ["HNSW32"]
    @Option(help: "Held-out queries.") var queries = 1_000
    @Option(parsing: .upToNextOption, help: "Query efforts: EF for HNSW, NPROBE for IVF.") var efforts: [Int] = [32, 64, 128]
    @Option(help: "Port for the server under test.") var port = 6479
    @Flag(help: "100,000 items: finishes in under two minutes.") var quick = false
    @Option(help: "Scratch folder (deleted afterwards).") var scratch = NSTemporaryDirectory() + "lookalike-bench-scale"
    @Flag(help: "Skip faiss-cpu (PyPI) HNSW32 at efConstruction 200 on the same data.") var noPeers = false
    @Option(help: "Threads for faiss-cpu's build and batch search.") var threads = 2
    @Option(help: "Recall@10 at which rates are compared with faiss-cpu.") var target = 0.95

    mutating func run() async throws {
        lineBufferedOutput()
        let n = quick ? 100_000 : count
        let t0 = now()
        let (set, rawQueries) = Dataset.generate(count: n + queries, dimension: dimension, seed: 42).split(queries: queries, seed: 5)
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
        var summary: [String] = []
        var curves: [(String, [Point])] = []
        for spec in index {
            let (line, curve) = try measure(spec, set: set, npy: npy, meta: meta, prepared: prepared, truth: truth, rawQueries: rawQueries)
            summary += line
            curves.append((spec, curve))
        }
        print("")
        print("| \(set.count) × \(set.dimension) | RSS after queries (anon + file) | × raw (anon) | " + efforts.map { "effort \($0): recall@10, q/s" }.joined(separator: " | ") + " |")
        print("|---|---|---|" + efforts.map { _ in "---|" }.joined())
        for line in summary { print(line) }
        if !noPeers && index.contains(where: { !$0.hasPrefix("IVF") }) {
            try comparePeer(curves.filter { !$0.0.hasPrefix("IVF") }, prepared: prepared, truth: truth, rows: set.count,
                            dimension: set.dimension)
        }
    }

    /// faiss-cpu HNSW32 (efConstruction 200) on the same vectors and queries at the HNSW
    /// efforts, and each spec's rate at `target` recall against faiss-cpu's.
    func comparePeer(_ curves: [(String, [Point])], prepared: [Float], truth: GroundTruth, rows: Int, dimension: Int) throws {
        let base = scratch + "/base.npy", qs = scratch + "/queries.npy"
        try VectorFile.writeNPY(prepared, rows: rows, dimension: dimension, to: base)
        try VectorFile.writeNPY(truth.queries, rows: truth.queries.count / dimension, dimension: dimension, to: qs)
        let lines = try Peers.measure(["ann", "--base", base, "--queries", qs, "--k", "10", "--threads", "\(threads)",
                                       "--specs", "HNSW32", "--no-hnswlib", "--ef-construction", "200", "--hnsw-ef"] + efforts.map(String.init),
                                      out: scratch + "/peers", queries: truth.queries.count / dimension, k: 10)
        var peer: [Point] = []
        print("")
        for (line, hits) in lines {
            let recall = truth.recall(hits, base: prepared)
            peer.append(Point(method: "faiss-cpu", index: "HNSW32", param: line.param, recall: recall, qps: line.qps))
            print(String(format: "faiss-cpu HNSW32 efConstruction 200, %@: recall@10 %.3f, %.0f q/s (built at %.0f items/s, %d threads)",
                         line.param, recall, line.qps, Double(rows) / line.build_s, threads))
        }
        let theirs = rateAtRecall(target, peer)
        print("")
        print("| at recall@10 \(target) | q/s | × faiss-cpu HNSW32 (efC 200, \(threads) threads, batch) |")
        print("|---|---:|---:|")
        print("| faiss-cpu | \(theirs.map(f0) ?? "not reached") | 1.00× |")
        for (spec, curve) in curves {
            let ours = rateAtRecall(target, curve)
            let ratio = ours.flatMap { o in theirs.map { String(format: "%.2f×", o / $0) } } ?? "—"
            print("| Lookalike \(spec) over TCP | \(ours.map(f0) ?? "not reached") | \(ratio) |")
        }
    }

    /// Loads `spec` into a fresh folder, serves it, queries it at every effort; prints its table
    /// and returns its summary row.
    func measure(_ spec: String, set: Dataset, npy: String, meta: String, prepared: [Float], truth: GroundTruth,
                 rawQueries: [[Float]]) throws -> ([String], [Point]) {
        var rows: [(String, String)] = []
        let raw = Double(set.count * set.dimension * 4)
        rows.append(("raw float32 vectors", mib(raw)))
        let data = scratch + "/data"
        try? FileManager.default.removeItem(atPath: data)
        defer { try? FileManager.default.removeItem(atPath: data) }
        let tool = try siblingExecutable("lookalike-ingest")
        var before = rusage()
        getrusage(RUSAGE_CHILDREN.rawValue, &before)
        var t0 = now()
        try runProgram(tool, ["--data", data, "--collection", "items", "--vectors", npy, "--meta", meta, "--index", spec, "--attributes", "category"])
        let loadSeconds = now() - t0
        var usage = rusage()
        getrusage(RUSAGE_CHILDREN.rawValue, &usage)
        rows.append(("bulk load (lookalike-ingest, one segment built, synced)", String(format: "%.1f s, %.0f items/s, peak RSS of the children so far ", loadSeconds, Double(set.count) / loadSeconds) + mib(Double(usage.ru_maxrss) * 1024)))
        rows.append(("data folder on disk", mib(Double(folderBytes(data))) + String(format: " (%.2f× raw)", Double(folderBytes(data)) / raw)))

        // Start-up, memory, queries.
        var server = try ServerProcess(data: data, port: port)
        rows.append(("server start-up (cold: first open after the load)", String(format: "%.2f s", server.startSeconds)))
        let afterStart = residentSplit(server.process.processIdentifier)
        let rowOfKey = Dictionary(uniqueKeysWithValues: set.keys.enumerated().map { ($1, $0) })
        let blobs = rawQueries.map { q in q.withUnsafeBytes { Array($0) } }
        let word = spec.hasPrefix("IVF") ? "NPROBE" : "EF"
        var cells: [String] = []
        var curve: [Point] = []
        for effort in efforts {
            let command = { @Sendable (i: Int) -> [[UInt8]] in
                [Array("VSIM".utf8), Array("items".utf8), Array("FP32".utf8), blobs[i % blobs.count], Array("COUNT".utf8), Array("10".utf8),
                 Array(word.utf8), Array("\(effort)".utf8)]
            }
            _ = try pipelined(port: port, connections: 2, depth: 32, count: 200, command: command)
            let (qps, replies) = try pipelined(port: port, connections: 2, depth: 32, count: max(blobs.count, 4_000), command: command)
            let hits = replies.prefix(blobs.count).map { r -> [Int] in
                guard case .array(let items?) = r else { return [] }
                return items.map { $0.text.flatMap { rowOfKey[$0] } ?? -1 }
            }
            let recall = truth.recall(hits, base: prepared)
            rows.append(("VSIM \(word) \(effort) over TCP (2 connections, pipelined)", String(format: "%.0f q/s, recall@10 %.3f", qps, recall)))
            cells.append(String(format: "%.3f, %.0f", recall, qps))
            curve.append(Point(method: "Lookalike", index: spec, param: "\(word) \(effort)", recall: recall, qps: qps))
        }
        let rss = residentSplit(server.process.processIdentifier)
        rows.append(("server RSS after start-up (anon + file)", "\(mib(Double(afterStart.anon + afterStart.file))) (\(mib(Double(afterStart.anon))) + \(mib(Double(afterStart.file))))"))
        rows.append(("server RSS after the queries (anon + file)", "\(mib(Double(rss.anon + rss.file))) (\(mib(Double(rss.anon))) + \(mib(Double(rss.file))))"
                     + String(format: " = %.0f bytes per item, %.2f× raw (anon alone %.2f×)", Double(rss.anon + rss.file) / Double(set.count),
                              Double(rss.anon + rss.file) / raw, Double(rss.anon) / raw)))
        server.stop()
        t0 = now()
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
                + " | " + cells.joined(separator: " | ") + " |"], curve)
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
