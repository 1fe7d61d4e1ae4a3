// `lookalike-bench latency`: VSIM latency percentiles at a fixed offered load through the
// server, idle and while items stream in (at a fixed rate, and as fast as pipelining allows).
// The collection is loaded and sealed (SAVE) first; the server seals the streamed items in the
// background every `seal-threshold`, so index builds run during the measurement too.
import ArgumentParser
import Foundation
import LookalikeClient
import LookalikeFormats

struct Latency: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "VSIM p50/p99/p99.9 at a fixed offered load, idle and during sustained ingest.")

    @Flag(help: "Use generated data even when ../shared/data is present.") var generated = false
    @Option(help: "Generated items.") var count = 100_000
    @Option(help: "Generated dimension.") var dimension = 384
    @Option(help: "Queries per second offered (one connection, open loop).") var rate = 500.0
    @Option(help: "Seconds per scenario.") var seconds = 20.0
    @Option(help: "Items per second written during the fixed-rate ingest scenario.") var ingestRate = 5_000.0
    @Option(help: "HNSW efSearch of the queries.") var ef = 64
    @Option(help: "The server's seal threshold (items per background index build; the server's default).") var sealThreshold = 100_000
    @Option(help: "Port for the server under test.") var port = 6479
    @Flag(help: "20,000 items, 4 s per scenario: finishes in under two minutes.") var quick = false
    @Option(help: "Scratch folder (deleted afterwards).") var scratch = NSTemporaryDirectory() + "lookalike-bench-latency"
    @Option(help: "Results JSON (for the plot).") var results = ".build/bench-results/latency.json"
    @Option(help: "Latency plot (PNG); empty for none.") var png = "Docs/plots/latency.png"

    struct Row: Codable { var scenario: String; var p50: Double; var p99: Double; var p999: Double; var max: Double; var written: Int }
    struct Results: Codable { var machine: String; var dataset: String; var rate: Double; var rows: [Row] }

    mutating func run() async throws {
        lineBufferedOutput()
        let set = try Dataset.load(generated: generated, count: quick ? 20_000 : count, dimension: dimension, limit: quick ? 20_000 : nil)
        let duration = quick ? 4.0 : seconds
        print("# Latency: \(set.name), \(f0(rate)) VSIM/s offered for \(duration) s per scenario, EF \(ef); \(machineLine())")
        try? FileManager.default.removeItem(atPath: scratch)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let server = try ServerProcess(data: scratch, port: port, arguments: ["--seal-threshold", "\(sealThreshold)"])
        defer { server.stop() }
        _ = try loadOnline(port: port, key: "items", set: set, range: 0..<set.count, connections: 2, depth: 1_000)
        _ = try RESPClient(address: "127.0.0.1:\(port)").call(["SAVE"])

        let queries = (0..<997).map { set.row(($0 * 7919) % set.count).withUnsafeBytes { Array($0) } }
        let ef = self.ef
        let query = { @Sendable (i: Int) -> [[UInt8]] in
            [Array("VSIM".utf8), Array("items".utf8), Array("FP32".utf8), queries[i % queries.count],
             Array("COUNT".utf8), Array("10".utf8), Array("EF".utf8), Array("\(ef)".utf8)]
        }
        let d = set.dimension
        let writeLimit = quick ? 50_000 : 300_000
        // New items look like stored ones, as a shop's new items do: a stored row with noise of
        // 30% of its per-component scale (cosine about 0.95 to it). Random Gaussian vectors,
        // with no neighbourhoods to find, link several times slower than any real embedding.
        let base = (0..<997).map { set.row(($0 * 104_729) % set.count) }
        let fresh = { @Sendable (i: Int) -> [[UInt8]] in
            var rng = SeededRandom(seed: UInt64(i + 1))
            let row = base[i % base.count]
            let sigma = 0.3 * (row.reduce(0) { $0 + $1 * $1 }.squareRoot() / Float(d).squareRoot())
            return vaddCommand("items", row.map { $0 + sigma * Float(rng.gaussian()) }, "new\(i)", nil)
        }
        _ = try fixedRateLatencies(port: port, rate: rate, seconds: 1, command: query)  // warm-up

        var rows: [Row] = []
        func scenario(_ name: String, writer: BackgroundWriter?) throws {
            let p = Percentiles(try fixedRateLatencies(port: port, rate: rate, seconds: duration, command: query))
            let written = try writer?.stop() ?? 0
            rows.append(Row(scenario: name, p50: p.p50, p99: p.p99, p999: p.p999, max: p.max, written: written))
            print("\(name): p50 \(f2(p.p50)) ms, p99 \(f2(p.p99)) ms, p99.9 \(f2(p.p999)) ms, max \(f2(p.max)) ms; \(written) items written")
        }
        try scenario("idle", writer: nil)
        // The two writers use distinct element names (new0…, new10000000…): both only add.
        try scenario("ingest \(f0(ingestRate)) items/s", writer: BackgroundWriter(port: port, rate: ingestRate, limit: writeLimit) { fresh($0) })
        try scenario("ingest at full speed (pipelined)", writer: BackgroundWriter(port: port, rate: 0, batch: 500, limit: writeLimit) { fresh(10_000_000 + $0) })

        print("")
        print("| scenario | items written | p50 ms | p99 ms | p99.9 ms | max ms | p99 / idle p99 |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for r in rows {
            print("| \(r.scenario) | \(r.written) | \(f2(r.p50)) | \(f2(r.p99)) | \(f2(r.p999)) | \(f2(r.max)) | \(f2(r.p99 / rows[0].p99))× |")
        }
        try writeJSON(Results(machine: machineLine(), dataset: set.name, rate: rate, rows: rows), to: results)
        if !png.isEmpty { plot("latency", results: results, png: png) }
    }
}
