// `lookalike-bench filtered`: recall@10 and queries per second per filter size, filtered vs
// unfiltered, in-process, side by side in one run (issue 3's benchmark):
//   - ours: the planner (automatic), and each plan forced, without its fallbacks (exact;
//     post-filtered unfiltered search; selector ANN with scaled effort);
//   - FAISS HNSW32 with an id bitmap at the same efSearch, no planner (what other servers do);
//   - unfiltered HNSW on the same queries, the rate a filtered query must not fall below;
//   - the predicted category's accuracy on the query items, each left out of its own vote.
import ArgumentParser
import Foundation
import LookalikeEngine
import LookalikeFormats
import LookalikeIndex

struct Filtered: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Filtered search per category size: recall@10 and QPS, ours vs FAISS with a bitmap.")

    @Flag(help: "Use generated data even when ../shared/data is present.") var generated = false
    @Option(help: "Generated items.") var count = 60_000
    @Option(help: "Generated dimension.") var dimension = 128
    @Option(help: "Queries per filter.") var queries = 200
    @Option(help: "Results per query.") var k = 10
    @Option(help: "HNSW efSearch for every method.") var ef = 64
    @Option(help: "The engine's post-filter depth (--post-filter-depth of the server).") var postFilterDepth = EngineOptions().postFilterDepth
    @Flag(help: "Skip faiss-cpu and hnswlib (no Python environment needed).") var noPeers = false
    @Flag(help: "Fewer queries and filters: finishes in well under two minutes.") var quick = false
    @Option(help: "Scratch data folder (deleted afterwards).") var data = NSTemporaryDirectory() + "lookalike-bench-filtered"

    mutating func run() async throws {
        lineBufferedOutput()
        let queryCount = quick ? 50 : queries
        let set = try Dataset.load(generated: generated, count: quick ? min(count, 20_000) : count, dimension: dimension, limit: nil)
        print("# Filtered search: \(set.name), k=\(k), efSearch \(ef), \(queryCount) queries per filter, 1 thread, post-filter depth \(postFilterDepth)")
        try? FileManager.default.removeItem(atPath: data)
        defer { try? FileManager.default.removeItem(atPath: data) }

        // Ours: one sealed HNSW32 segment, as after SAVE.
        var options = EngineOptions()
        options.storage.sync = .none
        options.sealThreshold = set.count + 1
        options.postFilterDepth = postFilterDepth
        FaissIndex.setThreads(2)
        let engine = try Engine(directory: data, options: options)
        defer { engine.close() }
        let c = try engine.createCollection(.init(name: "bench", dimension: set.dimension, metric: set.metric, index: "HNSW32",
                                                  attributes: ["category", "author", "bucket"], efSearch: ef))
        var t0 = now()
        for start in stride(from: 0, to: set.count, by: 8192) {
            let batch = (start..<min(set.count, start + 8192)).map {
                WriteRequest.upsert(key: set.keys[$0], vector: set.row($0), attributes: .set(set.attributesJSON($0)))
            }
            for r in await c.write(batch: batch) { _ = try r.get() }
        }
        try engine.persist()
        print("loaded and sealed in \(String(format: "%.1f", now() - t0)) s")

        // FAISS alone: the same factory string, the same prepared vectors, positions = rows.
        let prepared = set.prepared()
        t0 = now()
        let faiss = try FaissIndex(spec: "HNSW32", dimension: set.dimension, metric: set.metric == .l2 ? .l2 : .innerProduct)
        try faiss.setHNSW(efConstruction: 40, efSearch: ef)
        try prepared.withUnsafeBufferPointer { try faiss.add($0.baseAddress!, count: set.count) }
        print("FAISS HNSW32 built in \(String(format: "%.1f", now() - t0)) s")
        FaissIndex.setThreads(1)

        var rng = SeededRandom(seed: 11)
        let queryRows = (0..<queryCount).map { _ in Int(rng.next() % UInt64(set.count)) }
        let scores = queryRows.map { exactScores(prepared, rows: set.count, dimension: set.dimension, query: set.row($0)) }
        let rowOfKey = Dictionary(uniqueKeysWithValues: set.keys.enumerated().map { ($1, $0) })
        let allRows = Array(0..<set.count)
        let preparedQueries = queryRows.map { Array(prepared[($0 * set.dimension)..<(($0 + 1) * set.dimension)]) }

        // Filters: categories spanning the sizes, and the scattered buckets.
        var groups: [(attribute: String, value: String, rows: [Int])] = []
        var byCategory: [String: [Int]] = [:]
        for (i, cat) in set.categories.enumerated() { byCategory[cat, default: []].append(i) }
        let sortedCategories = byCategory.sorted { $0.value.count < $1.value.count }
        let picks = quick ? 5 : 10
        for j in 0..<picks {
            let (name, rows) = sortedCategories[j * (sortedCategories.count - 1) / (picks - 1)]
            groups.append(("category", name, rows))
        }
        for (bucket, _) in Dataset.bucketShares {
            groups.append(("bucket", bucket, set.buckets.indices.filter { set.buckets[$0].contains(bucket) }))
        }
        groups.sort { $0.rows.count < $1.rows.count }

        // The peers on the same vectors, queries and filters (faiss-cpu with an id selector,
        // hnswlib with a filter function), when their environment can be had.
        var peerResults: [String: (qps: Double, recall: Double, short: Double)] = [:]
        if !noPeers {
            let base = data + "-base.npy", qs = data + "-queries.npy", groupsFile = data + "-groups.json"
            defer { for f in [base, qs, groupsFile] { try? FileManager.default.removeItem(atPath: f) } }
            try VectorFile.writeNPY(prepared, rows: set.count, dimension: set.dimension, to: base)
            try VectorFile.writeNPY(preparedQueries.flatMap { $0 }, rows: queryRows.count, dimension: set.dimension, to: qs)
            let groupList = groups.map { ["name": "\($0.attribute)=\($0.value)", "rows": $0.rows] as [String: Any] }
            try JSONSerialization.data(withJSONObject: groupList).write(to: URL(fileURLWithPath: groupsFile))
            for (line, hits) in try Peers.measure(["filtered", "--base", base, "--queries", qs, "--k", "\(k)", "--ef", "\(ef)", "--groups", groupsFile],
                                                  out: data + "-peers", queries: queryRows.count, k: k) {
                guard let group = groups.first(where: { "\($0.attribute)=\($0.value)" == line.param }) else { continue }
                let want = min(k, group.rows.count)
                var recall = 0.0
                for (qi, rows) in hits.enumerated() { recall += tieAwareRecall(hitRows: rows.filter { $0 >= 0 }, scores: scores[qi], allowed: group.rows, k: k) }
                let short = Double(hits.filter { $0.filter { $0 >= 0 }.count < want }.count) / Double(hits.count)
                peerResults[line.library.split(separator: " ")[0] + " " + line.param] = (line.qps, recall / Double(hits.count), short)
            }
            try? FileManager.default.removeItem(atPath: data + "-peers")
        }

        print("")
        print("| filter | items | share | ours QPS | ours recall | ours min hits | exact QPS | exact recall | post-filter QPS | post-filter recall | selector-ANN QPS | selector-ANN recall | FAISS bitmap QPS | FAISS recall | FAISS short | faiss-cpu selector QPS (recall, short) | hnswlib filter QPS (recall, short) | unfiltered QPS | ours / unfiltered |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for group in groups where !group.rows.isEmpty {
            let want = min(k, group.rows.count)
            // Only the searches are timed; recall is scored afterwards.
            func measure(_ plan: FilterPlan?) throws -> (qps: Double, recall: Double, minHits: Int) {
                var results: [[SearchHit]] = []
                let start = now()
                for row in queryRows {
                    var request = SearchRequest(query: .vector(set.row(row)), k: k)
                    if let plan {
                        request.filterPlan = plan
                        results.append(try c.search(request.inCategory(group.value, attribute: group.attribute)))
                    } else {
                        results.append(try c.search(request))
                    }
                }
                let qps = Double(queryRows.count) / (now() - start)
                var recall = 0.0
                for (qi, hits) in results.enumerated() {
                    recall += tieAwareRecall(hitRows: hits.compactMap { rowOfKey[$0.key] }, scores: scores[qi],
                                             allowed: plan == nil ? allRows : group.rows, k: k)
                }
                return (qps, recall / Double(queryRows.count), results.map(\.count).min() ?? 0)
            }
            _ = try measure(.automatic)  // warm-up: member cache and CPU caches, for every method alike
            let ours = try measure(.automatic)
            let exact = try measure(.exact)
            // The forced ANN plans crawl on tiny filters (efSearch at its cap, a few queries
            // per second): measured from 1% up, where the planner may pick them.
            let forcedANN = group.rows.count * 100 >= set.count
            let skipped = (qps: Double.nan, recall: Double.nan, minHits: 0)
            let selector = forcedANN ? try measure(.approximate) : skipped
            let post = forcedANN ? try measure(.postFilter) : skipped
            let unfiltered = try measure(nil)
            // FAISS with a bitmap over the group's rows, efSearch unchanged.
            var bitmap = [UInt8](repeating: 0, count: (set.count + 7) / 8)
            for r in group.rows { bitmap[r >> 3] |= UInt8(1 << (r & 7)) }
            var faissResults: [[Int]] = []
            let fStart = now()
            for q in preparedQueries {
                let result = try bitmap.withUnsafeBytes { b in
                    try q.withUnsafeBufferPointer { try faiss.search($0.baseAddress!, queryCount: 1, k: k, effort: SearchEffort(efSearch: ef, nprobe: 1), selector: b) }
                }
                faissResults.append(result.positions.filter { $0 >= 0 }.map { Int($0) })
            }
            let faissQPS = Double(queryRows.count) / (now() - fStart)
            let short = faissResults.filter { $0.count < want }.count
            var faissRecall = 0.0
            for (qi, rows) in faissResults.enumerated() {
                faissRecall += tieAwareRecall(hitRows: rows, scores: scores[qi], allowed: group.rows, k: k)
            }
            let share = 100 * Double(group.rows.count) / Double(set.count)
            let cells: [String] = [
                "\(group.attribute)=\(group.value)", "\(group.rows.count)", String(format: "%.2f%%", share),
                f0(ours.qps), f3(ours.recall), "\(ours.minHits)/\(want)",
                f0(exact.qps), f3(exact.recall), f0(post.qps), f3(post.recall), f0(selector.qps), f3(selector.recall),
                f0(faissQPS), f3(faissRecall / Double(queryRows.count)), String(format: "%.0f%%", 100 * Double(short) / Double(queryRows.count)),
                peerCell(peerResults["faiss-cpu \(group.attribute)=\(group.value)"]), peerCell(peerResults["hnswlib \(group.attribute)=\(group.value)"]),
                f0(unfiltered.qps), String(format: "%.2f×", ours.qps / unfiltered.qps),
            ]
            print("| " + cells.joined(separator: " | ") + " |")
        }

        // Prediction: each query item votes without itself.
        var correct = 0, confident = 0, confidentCorrect = 0
        for row in queryRows {
            guard let p = try c.predict(.key(set.keys[row])) else { continue }
            if p.category == set.categories[row] { correct += 1 }
            if p.confidence >= 0.5 {
                confident += 1
                if p.category == set.categories[row] { confidentCorrect += 1 }
            }
        }
        print("")
        print("Predicted category (20-neighbour similarity vote, item left out): accuracy \(f3(Double(correct) / Double(queryRows.count))) on \(queryRows.count) items; "
              + "with confidence ≥ 0.5: \(confident) items, accuracy \(f3(Double(confidentCorrect) / Double(max(1, confident)))).")
    }
}

func peerCell(_ r: (qps: Double, recall: Double, short: Double)?) -> String {
    guard let r else { return "—" }
    return "\(f0(r.qps)) (\(f3(r.recall)), \(String(format: "%.0f%%", 100 * r.short)))"
}

func f0(_ x: Double) -> String { x.isNaN ? "—" : String(format: "%.0f", x) }
func f3(_ x: Double) -> String { x.isNaN ? "—" : String(format: "%.3f", x) }
