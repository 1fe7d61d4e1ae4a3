// `lookalike-bench predict`: the category predictor of issue 19, in process.
//   - held-out accuracy on items never loaded, queried by vector: the neighbour vote, the
//     category model alone, and the blend the collection chose on its own held-out split;
//   - the rate of a prediction against a plain VSIM (top 10), in the same run, one thread;
//   - training time and memory (the fit reads a sample of n × d floats);
//   - CATEGORY AUTO P 0.9 against CATEGORY AUTO (one category): recall@k against the exact top
//     k within the query's true category, how often a hit of the true category is listed, rate.
// Data: debian-pkgs (Dataset) when present, else generated (200 clusters; --count, --dimension).
import ArgumentParser
import Foundation
import LookalikeEngine
import LookalikeFormats
import LookalikeIndex

struct Predict: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Category prediction: vote, model and blend accuracy on held-out items, rate vs VSIM, training cost, top-p search.")

    @Flag(help: "Use generated data even when ../shared/data is present.") var generated = false
    @Option(help: "Generated items.") var count = 100_000
    @Option(help: "Generated dimension.") var dimension = 128
    @Option(help: "Items held out (never loaded), queried by vector.") var heldOut = 2_000
    @Option(help: "Results per query.") var k = 10
    @Option(help: "Top-p's probability mass.") var p = 0.9
    @Option(help: "Scratch data folder (deleted afterwards).") var data = NSTemporaryDirectory() + "lookalike-bench-predict"

    mutating func run() async throws {
        lineBufferedOutput()
        let set = try Dataset.load(generated: generated, count: count, dimension: dimension, limit: nil)
        var rng = SeededRandom(seed: 19)
        var order = Array(0..<set.count)
        for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        let held = Array(order.prefix(heldOut)), loaded = Array(order.dropFirst(heldOut))
        print("# Category prediction: \(set.name), \(loaded.count) loaded, \(held.count) held out (never loaded), k=\(k); \(machineLine())")
        try? FileManager.default.removeItem(atPath: data)
        defer { try? FileManager.default.removeItem(atPath: data) }

        var options = EngineOptions()
        options.storage.sync = .none
        options.sealThreshold = set.count + 1
        options.categoryModel = false  // trained below, in the open, not by the first query
        FaissIndex.setThreads(2)
        var engine = try Engine(directory: data, options: options)
        var c = try engine.createCollection(.init(name: "bench", dimension: set.dimension, metric: set.metric, index: "HNSW32",
                                                  attributes: ["category"]))
        var t0 = now()
        try await load(set, rows: loaded, into: c)
        try engine.persist()
        print(String(format: "loaded and sealed (HNSW32) in %.1f s", now() - t0))
        engine.close()
        options.categoryModel = true
        engine = try Engine(directory: data, options: options)
        defer { engine.close() }
        c = engine.collection("bench")!

        let rssBefore = residentBytes()
        t0 = now()
        let status = try c.trainCategoryModel()
        let trainSeconds = now() - t0
        let sampleBytes = min(status.labelledItems, options.categoryModelMaxItems) * set.dimension * 4
        print(String(format: "trained in %.1f s (4 fits: 3 λ on the split, 1 on all; %d held-out votes); sample %.0f MB; resident memory %.0f → %.0f MB",
                     trainSeconds, status.heldOutItems, Double(sampleBytes) / 1e6, Double(rssBefore) / 1e6, Double(residentBytes()) / 1e6))
        print("chosen on the collection's own held-out split: \(status.predictor), \(status.note); λ \(status.lambda); "
              + String(format: "its accuracy: vote %.3f, model %.3f, blend %.3f", status.voteAccuracy ?? -1, status.modelAccuracy ?? -1, status.blendAccuracy ?? -1))

        // Held-out accuracy, and rates, each predictor over the same queries.
        let queries = held.map { set.row($0) }
        var rows: [(String, String, String, String)] = []
        let vsimRate = try rate(queries.count) { _ = try c.search(SearchRequest(query: .vector(queries[$0]), k: k)) }
        rows.append(("VSIM top \(k) (HNSW32, efSearch 64)", "—", String(format: "%.0f", vsimRate), "1.00×"))
        for (name, choice) in [("vote (20 neighbours)", CategoryPredictorChoice.vote), ("model alone", .model), ("blend (as chosen)", .automatic)] {
            var right = 0
            let r = try rate(queries.count) { i in
                if let top = try c.predictCategories(.vector(queries[i]), using: choice).first, top.category == set.categories[held[i]] { right += 1 }
            }
            rows.append(("VPREDICT: \(name)", String(format: "%.3f", Double(right) / Double(held.count)), String(format: "%.0f", r),
                         String(format: "%.2f×", r / vsimRate)))
        }
        print("\n| what | held-out accuracy | queries/s | vs VSIM |\n|---|---|---|---|")
        for row in rows { print("| \(row.0) | \(row.1) | \(row.2) | \(row.3) |") }

        try topP(set, held: held, loaded: loaded, c)
    }

    /// CATEGORY AUTO with and without P, against the exact top k of the true category.
    private func topP(_ set: Dataset, held: [Int], loaded: [Int], _ c: LookalikeEngine.Collection) throws {
        let prepared = set.prepared()
        let loadedRows = loaded.flatMap { Array(prepared[($0 * set.dimension)..<(($0 + 1) * set.dimension)]) }
        var results: [(String, Double, Double, Double)] = []
        for (name, topP) in [("CATEGORY AUTO (one category)", nil as Double?), ("CATEGORY AUTO P \(p)", p)] {
            var recall = 0.0, listed = 0
            let r = try rate(held.count) { h in
                let (i, q) = (held[h], set.row(held[h]))
                var request = SearchRequest(query: .vector(q), k: k)
                request.category = .predicted(topP: topP)
                let hits = try c.search(request)
                let scores = exactScores(loadedRows, rows: loaded.count, dimension: set.dimension, query: q)
                let truth = Set(loaded.indices.filter { set.categories[loaded[$0]] == set.categories[i] }
                    .sorted { scores[$0] > scores[$1] }.prefix(k).map { set.keys[loaded[$0]] })
                recall += Double(hits.filter { truth.contains($0.key) }.count) / Double(max(1, truth.count))
                if hits.contains(where: { truth.contains($0.key) }) { listed += 1 }
            }
            results.append((name, recall / Double(held.count), Double(listed) / Double(held.count), r))
        }
        print("\n| search | recall@\(k) vs true category's top \(k) | queries listing one of them | queries/s (incl. exact truth) |\n|---|---|---|---|")
        for (name, recall, listed, r) in results { print(String(format: "| %@ | %.3f | %.3f | %.0f |", name, recall, listed, r)) }
    }
}

/// Calls per second of `body` for 0..<n, one thread.
func rate(_ n: Int, _ body: (Int) throws -> Void) rethrows -> Double {
    let t0 = now()
    for i in 0..<n { try body(i) }
    return Double(n) / (now() - t0)
}

/// Loads the rows `rows` of `set` into `c` in batches of 8,192 writes, with their attributes.
func load(_ set: Dataset, rows: [Int], into c: LookalikeEngine.Collection) async throws {
    for start in stride(from: 0, to: rows.count, by: 8192) {
        let batch = rows[start..<min(rows.count, start + 8192)].map {
            WriteRequest.upsert(key: set.keys[$0], vector: set.row($0), attributes: .set(set.attributesJSON($0)))
        }
        for r in await c.write(batch: batch) { _ = try r.get() }
    }
}

/// This process's resident memory, from /proc/self/statm.
func residentBytes() -> Int {
    let text = (try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8)) ?? ""
    let pages = text.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}
