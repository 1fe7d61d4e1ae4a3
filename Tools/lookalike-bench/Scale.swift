// `lookalike-bench scale`: a large generated collection end to end — bulk load with
// lookalike-ingest (time, peak memory), start-up of the server on it (recovery, nothing
// rebuilt), its memory per item against the raw vectors, recall@10 and queries/s over TCP,
// and restarts after SIGTERM and after SIGKILL.
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
    @Option(help: "FAISS index spec.") var index = "HNSW32"
    @Option(help: "Held-out queries.") var queries = 1_000
    @Option(parsing: .upToNextOption, help: "Query efforts: EF for HNSW, NPROBE for IVF.") var efforts: [Int] = [32, 64, 128]
    @Option(help: "Port for the server under test.") var port = 6479
    @Flag(help: "100,000 items: finishes in under two minutes.") var quick = false
    @Option(help: "Scratch folder (deleted afterwards).") var scratch = NSTemporaryDirectory() + "lookalike-bench-scale"

    mutating func run() async throws {
        lineBufferedOutput()
        let n = quick ? 100_000 : count
        var t0 = now()
        let (set, rawQueries) = Dataset.generate(count: n + queries, dimension: dimension, seed: 42).split(queries: queries, seed: 5)
        print("# Scale: \(set.name) → base \(set.count), \(index); \(machineLine())")
        print("generated in \(String(format: "%.1f", now() - t0)) s")
        try? FileManager.default.removeItem(atPath: scratch)
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        var rows: [(String, String)] = []
        let raw = Double(set.count * set.dimension * 4)
        rows.append(("raw float32 vectors", mib(raw)))

        // Bulk load through the real tool, from files.
        let npy = scratch + "/vectors.npy", meta = scratch + "/meta.jsonl", data = scratch + "/data"
        try VectorFile.writeNPY(set.vectors, rows: set.count, dimension: set.dimension, to: npy)
        try (0..<set.count).map { "{\"id\":\"\(set.keys[$0])\",\"category\":\"\(set.categories[$0])\"}" }
            .joined(separator: "\n").write(toFile: meta, atomically: true, encoding: .utf8)
        let tool = try siblingExecutable("lookalike-ingest")
        t0 = now()
        try runProgram(tool, ["--data", data, "--collection", "items", "--vectors", npy, "--meta", meta, "--index", index, "--attributes", "category"])
        let loadSeconds = now() - t0
        var usage = rusage()
        getrusage(RUSAGE_CHILDREN.rawValue, &usage)
        rows.append(("bulk load (lookalike-ingest, one segment built, synced)", String(format: "%.1f s, %.0f items/s, peak RSS ", loadSeconds, Double(set.count) / loadSeconds) + mib(Double(usage.ru_maxrss) * 1024)))
        rows.append(("data folder on disk", mib(Double(folderBytes(data))) + String(format: " (%.2f× raw)", Double(folderBytes(data)) / raw)))
        try? FileManager.default.removeItem(atPath: npy)
        try? FileManager.default.removeItem(atPath: meta)

        // Start-up, memory, queries.
        var server = try ServerProcess(data: data, port: port)
        rows.append(("server start-up (cold: first open after the load)", String(format: "%.2f s", server.startSeconds)))
        let afterStart = try server.residentBytes()
        let prepared = set.prepared()
        let truth = GroundTruth(base: prepared, rows: set.count, queries: rawQueries, dimension: set.dimension, k: 10, normalise: true)
        let rowOfKey = Dictionary(uniqueKeysWithValues: set.keys.enumerated().map { ($1, $0) })
        let blobs = rawQueries.map { q in q.withUnsafeBytes { Array($0) } }
        let word = index.hasPrefix("IVF") ? "NPROBE" : "EF"
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
            rows.append(("VSIM \(word) \(effort) over TCP (2 connections, pipelined)", String(format: "%.0f q/s, recall@10 %.3f", qps, truth.recall(hits, base: prepared))))
        }
        let rss = try server.residentBytes()
        rows.append(("server RSS after start-up / after the queries", "\(mib(Double(afterStart))) / \(mib(Double(rss)))"
                     + String(format: " = %.0f bytes per item, %.2f× raw", Double(rss) / Double(set.count), Double(rss) / raw)))
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
        print("| \(set.count) × \(set.dimension), \(index) | |")
        print("|---|---|")
        for r in rows { print("| \(r.0) | \(r.1) |") }
    }
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
