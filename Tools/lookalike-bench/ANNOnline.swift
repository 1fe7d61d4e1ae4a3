// `lookalike-bench ann --online`: items loaded as a Redis user loads them, and queried at once.
//   1. a fresh lookalike-server (release) gets the base by pipelined VADD (HNSW32, the server's
//      defaults: efConstruction 200, items linked into the live graph as they arrive);
//   2. the EF sweep runs over TCP at once, while the last items may still be linking;
//   3. SAVE (every item linked, the graph sealed and written), then the sweep again;
//   4. faiss-cpu HNSW32 at efConstruction 200 on the same prepared vectors (2 threads,
//      in-process, batch queries), and Debian FAISS with the shim's insertion loop, for the
//      build rates.
// Reported: recall@10 and queries/s of each, the rates at recall 0.95 (interpolated), and the
// indexed ingest rate, items / (load + SAVE), against faiss-cpu's build rate.
import Foundation
import LookalikeClient
import LookalikeEngine
import LookalikeFormats
import LookalikeIndex

extension ANN {
    func runOnline(set: Dataset, rawQueries: [[Float]], prepared: [Float], truth: GroundTruth, efs: [Int], rounds: Int) throws {
        let rowOfKey = Dictionary(uniqueKeysWithValues: set.keys.enumerated().map { ($1, $0) })
        var points: [Point] = []
        func record(_ method: String, _ param: String, _ qps: Double, _ hits: [[Int]]) {
            let p = Point(method: method, index: "HNSW32", param: param, recall: truth.recall(hits, base: prepared), qps: qps)
            points.append(p)
            print("  \(method) \(param): recall \(f3(p.recall)), \(f0(p.qps)) q/s")
        }
        let k = self.k
        let key = "online"
        let blobs = rawQueries.map { q in q.withUnsafeBytes { Array($0) } }
        func sweepServer(_ method: String) throws {
            for ef in efs {
                let command = { @Sendable (i: Int) -> [[UInt8]] in
                    [Array("VSIM".utf8), Array(key.utf8), Array("FP32".utf8), blobs[i % blobs.count], Array("COUNT".utf8), Array("\(k)".utf8),
                     Array("EF".utf8), Array("\(ef)".utf8)]
                }
                var rates: [Double] = []
                var replies: [Reply] = []
                for _ in 0..<max(1, passes) {
                    let pass = try pipelined(port: port, connections: connections, depth: depth, count: blobs.count * rounds, command: command)
                    rates.append(pass.qps)
                    if replies.isEmpty { replies = pass.replies }
                }
                let qps = rates.sorted()[rates.count / 2]
                record(method, "ef=\(ef)", qps, replies.prefix(blobs.count).map { r in
                    guard case .array(let items?) = r else { return [] }
                    return items.map { $0.text.flatMap { rowOfKey[$0] } ?? -1 }
                })
            }
        }

        // 1–3. The server, loaded online.
        let data = scratch + "/online"
        let server = try ServerProcess(data: data, port: port, arguments: ["--threads", "\(threads)", "--default-metric", set.metric.rawValue])
        let loadRate = try loadOnline(port: port, key: key, set: set, range: 0..<set.count, connections: 2, depth: 1000)
        let loadSeconds = Double(set.count) / loadRate
        print("loaded \(set.count) items by pipelined VADD in \(String(format: "%.1f", loadSeconds)) s (\(f0(loadRate)) items/s, durable)")
        // The collection's layout (segments, unlinked items), so runs that differ can be told apart.
        func printLayout(_ when: String) throws {
            guard case .array(let fields?) = try RESPClient(address: "127.0.0.1:\(port)").call(["VINFO", key]) else { return }
            let wanted: Set<String> = ["sealed-segments", "sealing-segments", "mutable-items", "unindexed-items", "index-state", "category-model-training"]
            let pairs = stride(from: 0, to: fields.count - 1, by: 2).compactMap { i -> String? in
                guard let name = fields[i].text, wanted.contains(name) else { return nil }
                return "\(name) \(fields[i + 1].text ?? "\(fields[i + 1])")"
            }
            print("\(when): \(pairs.joined(separator: ", "))")
        }
        try printLayout("at once")
        try sweepServer("Lookalike server online, at once")
        var t0 = now()
        _ = try RESPClient(address: "127.0.0.1:\(port)").call(["SAVE"])
        let saveSeconds = now() - t0
        let ingestRate = Double(set.count) / (loadSeconds + saveSeconds)
        print("SAVE in \(String(format: "%.1f", saveSeconds)) s: indexed ingest \(f0(ingestRate)) items/s (load + SAVE)")
        try printLayout("after SAVE")
        try sweepServer("Lookalike server online, after SAVE")
        server.stop()

        // 4. Build rates in-process: Debian FAISS with the shim's insertion loop, and faiss-cpu.
        let index = try FaissIndex(spec: "HNSW32", dimension: set.dimension, metric: .innerProduct)
        try index.setHNSW(efConstruction: 200, efSearch: efs.max()!)
        try index.reserveGraph(capacity: set.count)
        t0 = now()
        try prepared.withUnsafeBufferPointer { try index.insert($0.baseAddress!, count: set.count, threads: threads) }
        let shimBuild = Double(set.count) / (now() - t0)
        print("Debian FAISS HNSW32 efConstruction 200, the shim's insertion loop, \(threads) threads: \(f0(shimBuild)) items/s")
        var faissBuild = Double.nan
        if !noPeers {
            let base = scratch + "/base.npy", qs = scratch + "/queries.npy"
            try VectorFile.writeNPY(prepared, rows: set.count, dimension: set.dimension, to: base)
            try VectorFile.writeNPY(truth.queries, rows: rawQueries.count, dimension: set.dimension, to: qs)
            let lines = try Peers.measure(["ann", "--base", base, "--queries", qs, "--k", "\(k)", "--threads", "\(threads)", "--rounds", "\(rounds)",
                                           "--specs", "HNSW32", "--no-hnswlib", "--ef-construction", "200", "--hnsw-ef"] + efs.map(String.init),
                                          out: scratch + "/peers", queries: rawQueries.count, k: k)
            for (line, hits) in lines {
                record(line.library + " (efConstruction 200)", line.param, line.qps, hits)
                faissBuild = Double(set.count) / line.build_s
            }
            print("faiss-cpu HNSW32 efConstruction 200, \(threads) threads: built at \(f0(faissBuild)) items/s")
        }

        // Summary.
        func atTarget(_ method: String) -> Double? { rateAtRecall(target, points.filter { $0.method.hasPrefix(method) }) }
        let once = atTarget("Lookalike server online, at once"), saved = atTarget("Lookalike server online, after SAVE"), faiss = atTarget("faiss-cpu")
        func ratio(_ a: Double?, _ b: Double?) -> String { a.flatMap { a in b.map { String(format: "%.2f×", a / $0) } } ?? "—" }
        print("")
        print("| \(set.name) \(set.count) × \(set.dimension), HNSW32 | measured |")
        print("|---|---:|")
        print("| online load (pipelined VADD, durable) | \(f0(loadRate)) items/s, \(String(format: "%.1f", loadSeconds)) s |")
        print("| SAVE after it | \(String(format: "%.1f", saveSeconds)) s |")
        print("| indexed ingest, items / (load + SAVE) | \(f0(ingestRate)) items/s |")
        print("| faiss-cpu build, efConstruction 200, \(threads) threads | \(f0(faissBuild)) items/s |")
        print("| Debian FAISS + the shim's insertion loop, efConstruction 200 | \(f0(shimBuild)) items/s |")
        print("| queries/s at recall \(target): at once / after SAVE / faiss-cpu | \(once.map(f0) ?? "not reached") / \(saved.map(f0) ?? "not reached") / \(faiss.map(f0) ?? "not reached") |")
        print("| ratios to faiss-cpu: at once (target ≥ 0.25×) / after SAVE (≥ 0.5×) | \(ratio(once, faiss)) / \(ratio(saved, faiss)) |")
        print("| indexed ingest / faiss-cpu build (target ≥ 1×) | \(ratio(ingestRate, faissBuild)) |")
        try writeJSON(SweepResults(dataset: set.name, machine: machineLine(), target: target, points: points),
                      to: results.replacingOccurrences(of: ".json", with: "-online.json"))
    }
}
