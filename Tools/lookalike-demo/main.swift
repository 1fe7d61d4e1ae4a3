// lookalike-demo: the engine end to end on generated data, until the server lands: create a
// collection in a data folder, ingest with group commit, search by vector and by item, check
// recall against exact search, close, and time the reopen.
import ArgumentParser
import Dispatch
import Foundation
import LookalikeEngine

@main
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lookalike-demo",
        abstract: "Runs the Lookalike engine on generated look-alike data in a data folder.")

    @Option(help: "The data folder (created if missing).") var data = "./data"
    @Option(help: "Items to ingest.") var count = 20_000
    @Option(help: "Vector dimension.") var dimension = 128
    @Option(help: "FAISS index spec for the collection.") var index = "HNSW32"
    @Option(help: "Metric: cosine, l2 or ip.") var metric = "cosine"
    @Option(help: "Items per sealed segment.") var sealThreshold = 10_000

    mutating func run() async throws {
        guard let metric = Metric(rawValue: metric) else {
            throw ValidationError("metric must be cosine, l2 or ip")
        }
        var options = EngineOptions()
        options.sealThreshold = sealThreshold
        var engine = try Engine(directory: data, options: options)
        let name = "demo-\(index)-\(metric)-\(dimension)"
        let c = try engine.createCollectionIfMissing(CollectionDefinition(
            name: name, dimension: dimension, metric: metric, index: index))
        let before = try c.itemCount()
        print("collection \(name): \(before) items in \(data)")

        var rng = SystemRandomNumberGenerator()
        let centres = (0..<50).map { _ in (0..<dimension).map { _ in Float.random(in: -1...1, using: &rng) } }
        let categories = ["shoes", "bags", "hats", "shirts", "toys"]
        let started = DispatchTime.now()
        var requests: [WriteRequest] = []
        for i in 0..<count {
            let centre = centres[i % centres.count]
            let v = centre.map { $0 + Float.random(in: -0.3...0.3, using: &rng) }
            let attrs = "{\"category\":\"\(categories[i % categories.count])\",\"title\":\"item \(before + i)\"}"
            requests.append(.upsert(key: "item:\(before + i)", vector: v, attributes: .set(attrs)))
        }
        let results = await c.write(batch: requests)
        let seconds = elapsed(since: started)
        let failed = results.filter { if case .failure = $0 { return true } else { return false } }.count
        print(String(format: "ingested %d items in %.2f s (%.0f items/s, durable), %d failed",
                     count, seconds, Double(count) / seconds, failed))

        let query = requests[0]
        guard case .upsert(let key, let vector, _) = query else { return }
        let hits = try c.search(SearchRequest(query: .vector(vector), k: 5, withAttributes: true))
        print("top 5 for \(key)'s vector:")
        for h in hits { print(String(format: "  %@  %.4f  %@", h.key, h.score, h.attributes ?? "")) }
        let more = try c.search(SearchRequest(query: .key(key), k: 5))
        print("more like \(key): \(more.map(\.key).joined(separator: ", "))")

        engine.waitForSealing()
        var total = 0.0
        let probes = 100
        let searchStarted = DispatchTime.now()
        for p in 0..<probes {
            guard case .upsert(_, let v, _) = requests[(p * 7919) % requests.count] else { continue }
            let approx = try c.search(SearchRequest(query: .vector(v), k: 10)).map(\.key)
            let exact = try c.search(SearchRequest(query: .vector(v), k: 10, exact: true)).map(\.key)
            total += Double(Set(approx).intersection(exact).count) / 10
        }
        print(String(format: "recall@10 vs exact over %d queries: %.3f (%.1f ms per approximate+exact pair)",
                     probes, total / Double(probes), elapsed(since: searchStarted) * 1000 / Double(probes)))
        let summary = c.segmentSummary()
        print("segments: \(summary.sealed) sealed, \(summary.frozen) sealing, \(summary.mutableCount) items in the mutable segment")
        engine.close()

        let reopenStarted = DispatchTime.now()
        engine = try Engine(directory: data, options: options)
        let reopened = try engine.collection(name)?.itemCount() ?? 0
        print(String(format: "reopened with %d items in %.3f s", reopened, elapsed(since: reopenStarted)))
        engine.close()
    }

    func elapsed(since start: DispatchTime) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
    }
}
