// `lookalike-bench recommend`: the recommendation jobs of issue 7 through the real server.
//   - the new-items batch job (VNEWNEIGHBORS): 100,000 new items against 1,000,000 existing,
//     its time and rate in scored pairs per second, and the lookup (VNEIGHBORS) after it;
//   - the cascade (VRECOMMEND): the first call (which builds the TOP ranking) and the median
//     of the calls after it, beside a plain VSIM of the same COUNT;
//   - VHISTORY and VWITHIN beside VSIM.
// Data: generated clustered vectors (Dataset.generate) loaded with lookalike-ingest into a Flat
// index (nothing to build: the job reads LMDB, not the index), with author, category and rank.
import ArgumentParser
import Foundation
import LookalikeClient
import LookalikeFormats

struct Recommend: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The new-items batch job (100k new vs 1M existing), the cascade, VHISTORY and VWITHIN over TCP.")

    @Option(help: "Existing items.") var existing = 1_000_000
    @Option(help: "New items.") var new = 100_000
    @Option(help: "Generated dimension.") var dimension = 128
    @Option(help: "Neighbours per new item.") var count = 10
    @Option(help: "Calls per latency figure.") var calls = 200
    @Option(help: "Port for the server under test.") var port = 6479
    @Flag(help: "10,000 new against 100,000 existing: finishes in about a minute.") var quick = false
    @Option(help: "Scratch folder (deleted afterwards).") var scratch = NSTemporaryDirectory() + "lookalike-bench-recommend"

    mutating func run() async throws {
        lineBufferedOutput()
        let (old, fresh) = quick ? (existing / 10, new / 10) : (existing, new)
        let total = old + fresh
        let set = Dataset.generate(count: total, dimension: dimension, seed: 42)
        print("# Recommendations: \(old) existing + \(fresh) new items, \(dimension)-d generated, cosine; \(machineLine())")
        try? FileManager.default.removeItem(atPath: scratch)
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }

        let npy = scratch + "/vectors.npy", meta = scratch + "/meta.jsonl", data = scratch + "/data"
        try VectorFile.writeNPY(set.vectors, rows: total, dimension: dimension, to: npy)
        // 20 items per author, the generator's categories, a sales rank that is a permutation.
        try (0..<total).map { i in
            "{\"id\":\"\(set.keys[i])\",\"category\":\"\(set.categories[i])\",\"author\":\"a\(i / 20)\",\"rank\":\((i &* 7_919) % total + 1)}"
        }.joined(separator: "\n").write(toFile: meta, atomically: true, encoding: .utf8)
        var t0 = now()
        _ = try runProgram(try siblingExecutable("lookalike-ingest"),
                           ["--data", data, "--collection", "items", "--vectors", npy, "--meta", meta,
                            "--index", "Flat", "--attributes", "category,author"])
        print(String(format: "loaded with lookalike-ingest in %.1f s", now() - t0))
        try? FileManager.default.removeItem(atPath: npy)

        let server = try ServerProcess(data: data, port: port)
        defer { server.stop() }
        let client = try RESPClient(address: "127.0.0.1:\(port)")
        var rows: [(String, String)] = []

        // The batch job: ids follow the file's order, so the new items are the last `fresh`.
        t0 = now()
        let report = try client.call(["VNEWNEIGHBORS", "items", "SINCE", "ID", "\(old)", "COUNT", "\(count)", "OUTPUT", "bench.jsonl"])
        let seconds = now() - t0
        guard case .array(let fields?) = report else { throw ClientError("VNEWNEIGHBORS answered \(report)") }
        let map = Dictionary(uniqueKeysWithValues: stride(from: 0, to: fields.count - 1, by: 2).map { (fields[$0].text ?? "", fields[$0 + 1]) })
        guard map["new-items"]?.text == "\(fresh)", map["existing-items"]?.text == "\(old)" else {
            throw ClientError("the job saw \(map["new-items"]?.text ?? "?") new and \(map["existing-items"]?.text ?? "?") existing items")
        }
        let pairs = Double(old) * Double(fresh)
        rows.append(("VNEWNEIGHBORS: \(fresh) new × \(old) existing, top \(count), exact, JSON lines written",
                     String(format: "%.1f s (%.0f new items/s, %.2g pairs/s, %.0f GFLOP/s), %d pass(es)",
                            seconds, Double(fresh) / seconds, pairs / seconds, 2 * pairs * Double(dimension) / seconds / 1e9,
                            Int(map["passes"]?.text ?? "0") ?? 0)))
        let newKeys = (old..<total).map { set.keys[$0] }
        rows.append(("VNEIGHBORS (lookup of a kept list)", latency(client, calls) { ["VNEIGHBORS", "items", newKeys[$0 % newKeys.count], "WITHSCORES"] }))

        // The cascade, and the plain search it builds on.
        let items = (0..<calls).map { set.keys[($0 &* 104_729) % old] }
        // 20 items per author: SAME author gives 19, so COUNT 30 reaches the TOP stage.
        t0 = now()
        _ = try client.call(["VRECOMMEND", "items", items[0], "COUNT", "30", "SAME", "author", "TOP", "rank"])
        rows.append(("VRECOMMEND, first call reaching TOP (builds the ranking: a scan of every item's attributes)", String(format: "%.2f s", now() - t0)))
        rows.append(("VRECOMMEND COUNT 30: SAME author (19), then TOP rank (cached ranking)", latency(client, calls) {
            ["VRECOMMEND", "items", items[$0], "COUNT", "30", "SAME", "author", "TOP", "rank"] }))
        rows.append(("VRECOMMEND COUNT 30: SAME author (19), then SIMILAR IN category", latency(client, calls) {
            ["VRECOMMEND", "items", items[$0], "COUNT", "30", "SAME", "author", "SIMILAR", "IN", "category"] }))
        rows.append(("VRECOMMEND COUNT 30: SIMILAR", latency(client, calls) { ["VRECOMMEND", "items", items[$0], "COUNT", "30", "SIMILAR"] }))
        rows.append(("VSIM ELE COUNT 30 (Flat: an exact scan)", latency(client, calls) { ["VSIM", "items", "ELE", items[$0], "COUNT", "30"] }))
        rows.append(("VHISTORY of 5 items, COUNT 30", latency(client, calls) { i in
            ["VHISTORY", "items", "5"] + (0..<5).map { items[(i + $0) % items.count] } + ["COUNT", "30"] }))
        rows.append(("VWITHIN ELE 0.95 (at most 1000)", latency(client, calls) { ["VWITHIN", "items", "ELE", items[$0], "0.95"] }))

        print("\n| what | measured |\n|---|---|")
        for (what, value) in rows { print("| \(what) | \(value) |") }
    }

    /// Median and p99 of one call at a time (no pipelining), in milliseconds.
    private func latency(_ client: RESPClient, _ n: Int, _ command: (Int) -> [String]) -> String {
        var seconds: [Double] = []
        for i in 0..<n {
            let t = now()
            guard let reply = try? client.call(command(i)) else { return "failed" }
            if case .error(let e) = reply { return "error: \(e)" }
            seconds.append(now() - t)
        }
        let p = Percentiles(seconds)
        return String(format: "median %.2f ms, p99 %.2f ms", p.p50, p.p99)
    }
}
