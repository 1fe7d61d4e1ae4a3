// `lookalike-bench ann`: recall@10 against queries per second, sweeping efSearch / nprobe, for
// Flat, HNSW32, IVF and IVF-SQ8, every method on the same base vectors and held-out queries,
// in one run:
//   - Lookalike through the server over loopback TCP (pipelined, several connections);
//   - Lookalike's engine in-process (one query per call, on `threads` threads);
//   - the same Debian FAISS 1.7.3 index called directly from Swift through the shim (one batch on
//     `threads` threads; for HNSW that is the shim's own search loop, as in the engine);
//   - faiss-cpu and hnswlib from PyPI in-process (Tools/bench/peers.py, batch, `threads`).
// Recall is tie-aware, scored here against exact brute force for every method alike. The
// summary gives each method's best rate at recall ≥ 0.95 and the ratios the targets name.
// `--faiss-only` stops after the Debian FAISS rows (for IVF, IVF-PQ included: the shim's search
// against FAISS's own, one batch and one query a call), for high dimensions where loading the
// engine and the server would take most of the run.
import ArgumentParser
import Foundation
import LookalikeClient
import LookalikeEngine
import LookalikeFormats
import LookalikeIndex

struct ANN: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ann",
        abstract: "Recall@10 vs queries/s: Lookalike (TCP and in-process), Debian FAISS, faiss-cpu, hnswlib.")

    @Flag(help: "Use generated data even when ../shared/data is present.") var generated = false
    @Option(help: "Generated items.") var count = 100_000
    @Option(help: "Generated dimension.") var dimension = 128
    @Option(help: "Queries, held out of the base.") var queries = 1_000
    @Option(help: "Results per query.") var k = 10
    @Option(help: "Threads for every in-process method.") var threads = 2
    @Option(help: "Server connections.") var connections = 2
    @Option(help: "Queries in flight per connection.") var depth = 32
    @Option(help: "Port for the server under test.") var port = 6479
    @Option(help: "Recall at which rates are compared.") var target = 0.95
    @Option(parsing: .upToNextOption, help: "Index types to sweep (default: Flat, HNSW32, IVFn,Flat, IVFn,SQ8).") var indexes: [String] = []
    @Flag(help: "Skip faiss-cpu and hnswlib (no Python environment needed).") var noPeers = false
    @Flag(help: "Only Debian FAISS from Swift (the batch, and for IVF the shim's against FAISS's own search): no engine, server or peers.") var faissOnly = false
    @Option(parsing: .upToNextOption, help: "IVF nprobe values to sweep (default 1 2 4 8 16 32 64; --quick 1 4 16).") var nprobes: [Int] = []
    @Flag(help: "A 20,000-item subset, fewer points: finishes in under two minutes.") var quick = false
    @Flag(help: "Online mode (ANNOnline.swift): HNSW32 loaded by pipelined VADD into a fresh server and queried at once, then after SAVE, against faiss-cpu at efConstruction 200.") var online = false
    @Option(help: "Online mode: times each server point is measured; the median rate is kept (the machine is shared, one 0.4 s pass is noisy).") var passes = 3
    @Option(help: "Scratch folder (deleted afterwards).") var scratch = NSTemporaryDirectory() + "lookalike-bench-ann"
    @Option(help: "Results JSON (for the plot).") var results = ".build/bench-results/ann.json"
    @Option(help: "Recall–QPS plot (PNG); empty for none.") var png = "Docs/plots/ann.png"

    func validate() throws {
        if nprobes.contains(where: { $0 <= 0 }) { throw ValidationError("--nprobes: every value must be positive") }
    }

    mutating func run() async throws {
        lineBufferedOutput()
        let whole = try Dataset.load(generated: generated, count: quick ? 20_000 : count, dimension: dimension, limit: quick ? 20_000 : nil)
        let queryCount = quick ? 200 : queries
        let (set, rawQueries) = whole.split(queries: queryCount, seed: 5)
        let nlist = set.count >= 60_000 ? 1024 : 256
        let efs = quick ? [16, 32, 64, 128] : [16, 24, 32, 48, 64, 96, 128, 256]
        let nprobes = !self.nprobes.isEmpty ? self.nprobes : quick ? [1, 4, 16] : [1, 2, 4, 8, 16, 32, 64]
        // Every rate is taken over at least 4,000 queries (the query set repeated), so short
        // runs do not measure warm-up; recall is scored on the first round.
        let rounds = max(1, 4_000 / rawQueries.count)
        let specs = indexes.isEmpty ? ["Flat", "HNSW32", "IVF\(nlist),Flat", "IVF\(nlist),SQ8"] : indexes
        print("# ANN sweep: \(set.name) base \(set.count), \(rawQueries.count) held-out queries, k=\(k); \(machineLine())")
        try? FileManager.default.removeItem(atPath: scratch)
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }

        let prepared = set.prepared()
        var t0 = now()
        let truth = GroundTruth(base: prepared, rows: set.count, queries: rawQueries, dimension: set.dimension, k: k,
                                normalise: set.metric == .cosine)
        print("exact ground truth in \(String(format: "%.1f", now() - t0)) s")
        if online {
            try runOnline(set: set, rawQueries: rawQueries, prepared: prepared, truth: truth, efs: efs, rounds: rounds)
            return
        }
        let rowOfKey = Dictionary(uniqueKeysWithValues: set.keys.enumerated().map { ($1, $0) })
        var points: [Point] = []
        func record(_ method: String, _ index: String, _ param: String, _ qps: Double, _ hits: [[Int]]) {
            let p = Point(method: method, index: index, param: param, recall: truth.recall(hits, base: prepared), qps: qps)
            points.append(p)
            print("  \(method) \(index) \(param): recall \(f3(p.recall)), \(f0(p.qps)) q/s")
        }
        func sweep(_ spec: String) -> [(param: String, effort: SearchEffort)] {
            if spec.hasPrefix("HNSW") { return efs.map { ("ef=\($0)", SearchEffort(efSearch: $0)) } }
            if spec.hasPrefix("IVF") { return nprobes.map { ("nprobe=\($0)", SearchEffort(nprobe: $0)) } }
            return [("exact", SearchEffort())]
        }
        let name = Self.collectionName
        let k = self.k

        // 1. Debian FAISS from Swift: no engine, no server; one batch on `threads` threads.
        for spec in specs {
            let index = try FaissIndex(spec: spec, dimension: set.dimension, metric: .innerProduct)
            t0 = now()
            try prepared.withUnsafeBufferPointer { p in
                if spec.hasPrefix("HNSW") { try index.setHNSW(efConstruction: 40, efSearch: efs.max()!) }
                if spec.hasPrefix("IVF") { try index.train(p.baseAddress!, count: set.count) }
                try index.add(p.baseAddress!, count: set.count)
            }
            print("Debian FAISS \(spec) built in \(String(format: "%.1f", now() - t0)) s")
            for (param, effort) in sweep(spec) {
                _ = try searchBatch(index, truth.queries, count: min(50, rawQueries.count), effort: effort)  // warm-up
                t0 = now()
                let hits = try searchBatch(index, truth.queries, count: rawQueries.count, effort: effort)
                for _ in 1..<rounds { _ = try searchBatch(index, truth.queries, count: rawQueries.count, effort: effort) }
                record("FAISS 1.7.3 via the shim (batch)", spec, param, Double(rawQueries.count * rounds) / (now() - t0), hits)
                if spec.hasPrefix("IVF") { try compareIVF(index, spec, param, effort, truth.queries, rawQueries.count, rounds, record) }
            }
        }
        if faissOnly {
            printTable(points)
            return
        }

        // 2. Lookalike's engine in-process: one sealed segment per collection, as after SAVE.
        let data = scratch + "/data"
        var options = EngineOptions()
        options.sealThreshold = set.count + 1
        FaissIndex.setThreads(threads)
        do {
            let engine = try Engine(directory: data, options: options)
            defer { engine.close() }
            for spec in specs {
                let c = try engine.createCollection(.init(name: name(spec), dimension: set.dimension, metric: set.metric, index: spec,
                                                          attributes: ["category", "author"], efConstruction: 40))
                t0 = now()
                for start in stride(from: 0, to: set.count, by: 8192) {
                    let batch = (start..<min(set.count, start + 8192)).map {
                        WriteRequest.upsert(key: set.keys[$0], vector: set.row($0), attributes: .set(set.attributesJSON($0)))
                    }
                    for r in await c.write(batch: batch) { _ = try r.get() }
                }
                try engine.persist()
                print("Lookalike \(spec): loaded durably and sealed in \(String(format: "%.1f", now() - t0)) s")
            }
            FaissIndex.setThreads(1)
            for spec in specs {
                let c = engine.collection(name(spec))!
                for (param, effort) in sweep(spec) {
                    let one = { @Sendable (i: Int) throws -> [Int] in
                        let request = SearchRequest(query: .vector(rawQueries[i % rawQueries.count]), k: k, efSearch: effort.efSearch > 0 ? effort.efSearch : nil,
                                                    nprobe: effort.nprobe > 0 ? effort.nprobe : nil)
                        return try c.search(request).map { rowOfKey[$0.key] ?? -1 }
                    }
                    _ = try parallel(min(50, rawQueries.count), threads: threads, one)
                    let (qps, hits) = try parallel(rawQueries.count * rounds, threads: threads, one)
                    record("Lookalike in-process", spec, param, qps, Array(hits.prefix(rawQueries.count)))
                }
            }
        }

        // 3. The same data folder served by lookalike-server, queried over loopback TCP.
        let server = try ServerProcess(data: data, port: port, arguments: ["--threads", "\(threads)"])
        print("lookalike-server restarted on \(set.count * specs.count) items in \(String(format: "%.2f", server.startSeconds)) s")
        let blobs = rawQueries.map { q in q.withUnsafeBytes { Array($0) } }
        for spec in specs {
            for (param, effort) in sweep(spec) {
                let extra = effort.efSearch > 0 ? ["EF", "\(effort.efSearch)"] : effort.nprobe > 0 ? ["NPROBE", "\(effort.nprobe)"] : []
                let command = { @Sendable (i: Int) -> [[UInt8]] in
                    [Array("VSIM".utf8), Array(name(spec).utf8), Array("FP32".utf8), blobs[i % blobs.count], Array("COUNT".utf8), Array("\(k)".utf8)]
                        + extra.map { Array($0.utf8) }
                }
                _ = try pipelined(port: port, connections: connections, depth: depth, count: min(100, blobs.count), command: command)
                let (qps, replies) = try pipelined(port: port, connections: connections, depth: depth, count: blobs.count * rounds, command: command)
                record("Lookalike server (TCP)", spec, param, qps, replies.prefix(blobs.count).map { r in
                    guard case .array(let items?) = r else { return [] }
                    return items.map { $0.text.flatMap { rowOfKey[$0] } ?? -1 }
                })
            }
        }
        server.stop()

        // 4. The peers, on the same prepared vectors and queries.
        if !noPeers {
            let base = scratch + "/base.npy", qs = scratch + "/queries.npy"
            try VectorFile.writeNPY(prepared, rows: set.count, dimension: set.dimension, to: base)
            try VectorFile.writeNPY(truth.queries, rows: rawQueries.count, dimension: set.dimension, to: qs)
            let lines = try Peers.measure(["ann", "--base", base, "--queries", qs, "--k", "\(k)", "--threads", "\(threads)", "--rounds", "\(rounds)",
                                           "--specs"] + specs + ["--hnsw-ef"] + efs.map(String.init) + ["--ivf-nprobe"] + nprobes.map(String.init),
                                          out: scratch + "/peers", queries: rawQueries.count, k: k)
            for (line, hits) in lines {
                let spec = line.library.hasPrefix("hnswlib") ? "HNSW32" : line.index
                record(line.library, spec, line.param, line.qps, hits)
            }
        }

        printTable(points)
        printSummary(points)
        try writeJSON(SweepResults(dataset: set.name, machine: machineLine(), target: target, points: points), to: results)
        if !png.isEmpty { plot("ann", results: results, png: png) }
    }

    static func collectionName(_ spec: String) -> String { spec.lowercased().replacingOccurrences(of: ",", with: "-") }

    private func searchBatch(_ index: FaissIndex, _ queries: [Float], count: Int, effort: SearchEffort,
                             faissSearch: Bool = false) throws -> [[Int]] {
        let r = try queries.withUnsafeBufferPointer {
            try index.search($0.baseAddress!, queryCount: count, k: k, effort: effort, selector: nil, threads: threads,
                             faissSearch: faissSearch)
        }
        return (0..<count).map { q in r.positions[(q * k)..<((q + 1) * k)].map { Int($0) } }
    }

    /// IVF: the shim's scanner (ivf_scan.cpp) against FAISS 1.7.3's own IVF search on the same
    /// index in the same run, as one batch and as one query per call (the engine's way).
    private func compareIVF(_ index: FaissIndex, _ spec: String, _ param: String, _ effort: SearchEffort, _ queries: [Float],
                            _ count: Int, _ rounds: Int, _ record: (String, String, String, Double, [[Int]]) -> Void) throws {
        var t0 = now()
        let hits = try searchBatch(index, queries, count: count, effort: effort, faissSearch: true)
        for _ in 1..<rounds { _ = try searchBatch(index, queries, count: count, effort: effort, faissSearch: true) }
        record("FAISS 1.7.3's own IVF search (batch)", spec, param, Double(count * rounds) / (now() - t0), hits)
        let k = self.k, dimension = queries.count / count
        for faissSearch in [false, true] {
            let one = { @Sendable (i: Int) throws -> [Int] in
                let q = i % count
                return try queries.withUnsafeBufferPointer {
                    try index.search($0.baseAddress! + q * dimension, queryCount: 1, k: k, effort: effort, selector: nil,
                                     faissSearch: faissSearch).positions.map { Int($0) }
                }
            }
            _ = try parallel(min(50, count), threads: threads, one)
            t0 = now()
            let (qps, found) = try parallel(count * rounds, threads: threads, one)
            record(faissSearch ? "FAISS 1.7.3's own IVF search (1 query/call)" : "FAISS 1.7.3 via the shim (1 query/call)",
                   spec, param, qps, Array(found.prefix(count)))
        }
    }

    private func printTable(_ points: [Point]) {
        print("")
        print("| index | effort | " + methods(points).joined(separator: " | ") + " |")
        print("|---|---|" + methods(points).map { _ in "---:|" }.joined())
        var seen = Set<String>()
        for p in points where seen.insert(p.index + " " + p.param).inserted {
            let cells = methods(points).map { m in
                points.first { $0.method == m && $0.index == p.index && $0.param == p.param }.map { "\(f0($0.qps)) (\(f3($0.recall)))" } ?? "—"
            }
            print("| \(p.index) | \(p.param) | " + cells.joined(separator: " | ") + " |")
        }
    }

    private func methods(_ points: [Point]) -> [String] {
        var out: [String] = []
        for p in points where !out.contains(p.method) { out.append(p.method) }
        return out
    }

    /// Best rate at recall ≥ target per method and index, and the ratios the targets name.
    private func printSummary(_ points: [Point]) {
        func best(_ method: String, _ index: String) -> Point? {
            points.filter { $0.method.hasPrefix(method) && $0.index == index && $0.recall >= target }.max { $0.qps < $1.qps }
        }
        func atTarget(_ method: String, _ index: String) -> Double? {
            rateAtRecall(target, points.filter { $0.method.hasPrefix(method) && $0.index == index })
        }
        print("")
        print("Best queries/s at recall@\(k) ≥ \(target) (effort in brackets):")
        print("")
        print("| index | " + methods(points).joined(separator: " | ") + " |")
        print("|---|" + methods(points).map { _ in "---:|" }.joined())
        for index in Set(points.map(\.index)).sorted() {
            let cells = methods(points).map { m in best(m, index).map { "\(f0($0.qps)) (\($0.param))" } ?? "not reached" }
            print("| \(index) | " + cells.joined(separator: " | ") + " |")
        }
        let server = atTarget("Lookalike server", "HNSW32"), engine = atTarget("Lookalike in-process", "HNSW32")
        let debian = atTarget("FAISS 1.7.3", "HNSW32"), faiss = atTarget("faiss-cpu", "HNSW32"), hnswlib = atTarget("hnswlib", "HNSW32")
        func ratio(_ a: Double?, _ b: Double?) -> String { a.flatMap { a in b.map { String(format: "%.2f×", a / $0) } } ?? "—" }
        print("")
        print("HNSW32 queries/s at recall \(target), interpolated: "
              + [("server", server), ("in-process", engine), ("FAISS batch via the shim", debian), ("faiss-cpu", faiss), ("hnswlib", hnswlib)]
                .map { "\($0.0) \($0.1.map(f0) ?? "not reached")" }.joined(separator: ", ") + ".")
        print("Ratios at recall \(target): server over TCP / faiss-cpu (target ≥ 0.5×): \(ratio(server, faiss)); "
              + "server / hnswlib: \(ratio(server, hnswlib)); server / in-process engine (TCP overhead): \(ratio(server, engine)); "
              + "engine / FAISS 1.7.3 batch through the shim: \(ratio(engine, debian)); that / faiss-cpu: \(ratio(debian, faiss)).")
    }
}

/// The rate of a method's curve at exactly `target` recall, interpolated (log rate, linear
/// recall) between the two sweep points around it: comparing measured points alone would favour
/// whichever method happens to land just above the target. Nil when the curve never reaches it.
func rateAtRecall(_ target: Double, _ curve: [Point]) -> Double? {
    let curve = curve.sorted { $0.recall < $1.recall }
    guard let hi = curve.firstIndex(where: { $0.recall >= target }) else { return nil }
    guard hi > 0, curve[hi].recall > curve[hi - 1].recall else { return curve[hi...].map(\.qps).max() }
    let a = curve[hi - 1], b = curve[hi]
    let t = (target - a.recall) / (b.recall - a.recall)
    return exp(log(a.qps) + t * (log(b.qps) - log(a.qps)))
}

/// What the plot reads.
struct SweepResults: Codable {
    var dataset: String
    var machine: String
    var target: Double
    var points: [Point]
}

/// Pipelined commands over `connections` connections, `depth` in flight on each; the rate and
/// every reply in command order.
func pipelined(port: Int, connections: Int, depth: Int, count: Int, command: @escaping @Sendable (Int) -> [[UInt8]]) throws -> (qps: Double, replies: [Reply]) {
    let clients = try (0..<connections).map { _ in try RESPClient(address: "127.0.0.1:\(port)") }
    let slots = Slots<Reply>(count)
    let boxed = UncheckedBox(value: clients)
    let t0 = now()
    DispatchQueue.concurrentPerform(iterations: connections) { c in
        let client = boxed.value[c]
        let mine = Array(stride(from: c, to: count, by: connections))
        var sent = 0, received = 0
        do {
            while received < mine.count {
                // Refill in bursts when half the window has come back: one write per burst,
                // and the server sees batches it can group-commit.
                if sent - received <= depth / 2 {
                    while sent < mine.count && sent - received < depth {
                        client.send(command(mine[sent]))
                        sent += 1
                    }
                    try client.flush()
                }
                let reply = try client.read()
                slots.set(mine[received], .success(reply))
                received += 1
            }
        } catch {
            for i in mine[received...] { slots.set(i, .failure(error)) }
        }
    }
    let seconds = now() - t0
    return (Double(count) / seconds, try slots.values.map { try $0!.get() })
}

/// Hands a non-Sendable value to worker threads that use disjoint parts of it.
struct UncheckedBox<T>: @unchecked Sendable { let value: T }
