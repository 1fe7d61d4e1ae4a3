// `lookalike-bench ingest`: how fast items get in, and how soon they can be found.
//   - bulk offline: lookalike-ingest on .npy + JSON lines into a stopped data folder, per
//     index type (one sealed segment built at the end, one fsync);
//   - online pipelined: VADD FP32 + SETATTR over `connections` connections, each reply durable;
//   - online one at a time: each VADD waits for its reply before the next is sent;
//   - time until searchable: from sending a VADD until a VSIM by the same vector returns it.
import ArgumentParser
import Foundation
import LookalikeClient
import LookalikeFormats

struct IngestBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest",
        abstract: "Ingest rates (offline bulk, online pipelined, one at a time) and time until searchable.")

    @Flag(help: "Use generated data even when ../shared/data is present.") var generated = false
    @Option(help: "Generated items.") var count = 100_000
    @Option(help: "Generated dimension.") var dimension = 384
    @Option(parsing: .upToNextOption, help: "Index types for the offline load.") var indexes: [String] = ["HNSW32", "IVF1024,SQ8"]
    @Option(help: "Server connections for the pipelined load.") var connections = 2
    @Option(help: "VADDs in flight per connection.") var depth = 1_000
    @Option(help: "Items sent one at a time.") var single = 2_000
    @Option(help: "Port for the server under test.") var port = 6479
    @Flag(help: "20,000 items, fewer probes: finishes in under two minutes.") var quick = false
    @Option(help: "Scratch folder (deleted afterwards).") var scratch = NSTemporaryDirectory() + "lookalike-bench-ingest"

    mutating func run() async throws {
        lineBufferedOutput()
        let set = try Dataset.load(generated: generated, count: quick ? 20_000 : count, dimension: dimension, limit: quick ? 20_000 : nil)
        print("# Ingest: \(set.name); \(machineLine())")
        try? FileManager.default.removeItem(atPath: scratch)
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        var rows: [(String, String, String)] = []

        // Offline bulk, through the real tool, from files.
        let npy = scratch + "/vectors.npy", meta = scratch + "/meta.jsonl"
        try VectorFile.writeNPY(set.vectors, rows: set.count, dimension: set.dimension, to: npy)
        try (0..<set.count).map { i in
            let object: [String: Any] = ["id": set.keys[i], "category": set.categories[i], "author": set.authors[i]]
            return String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
        }.joined(separator: "\n").write(toFile: meta, atomically: true, encoding: .utf8)
        let tool = try siblingExecutable("lookalike-ingest")
        for spec in quick ? Array(indexes.prefix(1)) : indexes {
            let data = scratch + "/offline-\(ANN.collectionName(spec))"
            let t0 = now()
            try runProgram(tool, ["--data", data, "--collection", "items", "--vectors", npy, "--meta", meta, "--index", spec])
            let seconds = now() - t0
            rows.append(("bulk offline (lookalike-ingest, \(spec), index built, synced)", f0(Double(set.count) / seconds) + " items/s",
                         String(format: "%.1f s for %d items", seconds, set.count)))
            print(rows.last!)
        }

        // Online, through the server, every write durable before its reply.
        let server = try ServerProcess(data: scratch + "/online", port: port)
        let pipelinedRate = try loadOnline(port: port, key: "items", set: set, range: 0..<set.count, connections: connections, depth: depth)
        rows.append(("online pipelined VADD (\(connections) connections, \(depth) in flight each)", f0(pipelinedRate) + " items/s", "durable (fsync per group commit)"))
        print(rows.last!)

        let client = try RESPClient(address: "127.0.0.1:\(port)")
        let n = quick ? 500 : single
        var latencies: [Double] = []
        var t0 = now()
        for i in 0..<n {
            let row = i % set.count
            let start = now()
            if case .error(let e) = try client.call(vaddCommand("single", set.row(row), "s\(i)", set.attributesJSON(row))) { throw ClientError(e) }
            latencies.append(now() - start)
        }
        let singleRate = Double(n) / (now() - t0)
        let p = Percentiles(latencies)
        rows.append(("online one at a time (1 connection, wait for each reply)", f0(singleRate) + " items/s",
                     String(format: "VADD latency p50 %.2f ms, p99 %.2f ms", p.p50, p.p99)))
        print(rows.last!)

        // Time until searchable: a new item, then a query by its own vector, until it is the hit.
        var visible: [Double] = []
        var misses = 0
        t0 = now()
        for i in 0..<(quick ? 100 : 500) {
            let v = set.row((i * 7919) % set.count).map { $0 + 0.001 }
            let element = "fresh\(i)"
            let start = now()
            if case .error(let e) = try client.call(vaddCommand("items", v, element, nil)) { throw ClientError(e) }
            let blob = v.withUnsafeBytes { Array($0) }
            while true {
                client.send([Array("VSIM".utf8), Array("items".utf8), Array("FP32".utf8), blob, Array("COUNT".utf8), Array("1".utf8)])
                if case .array(let hits?) = try client.read(), hits.first?.text == element { break }
                misses += 1
                if now() - start > 5 { throw ClientError("\(element) not searchable after 5 s") }
            }
            visible.append(now() - start)
        }
        let v = Percentiles(visible)
        rows.append(("time until searchable (VADD sent → VSIM returns it)", String(format: "p50 %.2f ms, p99 %.2f ms", v.p50, v.p99),
                     "\(misses) queries before the item showed (0: visible when acknowledged)"))
        print(rows.last!)
        server.stop()

        print("")
        print("| ingest | rate | notes |")
        print("|---|---:|---|")
        for r in rows { print("| \(r.0) | \(r.1) | \(r.2) |") }
    }
}
