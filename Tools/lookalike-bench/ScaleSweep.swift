// ScaleSweep: what `lookalike-bench scale` adds for compressed IVF (issue 15, the 4096-d run):
// a sweep over effort (NPROBE/EF) × rescoring factor (VSIM … RESCORE r, 0 = NORESCORE), and
// faiss-cpu's index of the same spec on the same vectors, the same training rows (Lookalike
// trains on its first sealed segment: the first `segment items` rows) and the same queries,
// in-process on 2 threads, plain and under IndexRefineFlat at the same factors
// (Tools/bench/peers.py --normalise --train-rows --refine-k-factor). Recall is scored here,
// for every method alike; the summary compares rates at a recall on each method's Pareto front
// (no point of it both faster and more accurate), since a two-knob sweep has no single curve.
// Threads: the benchmark's main thread.
import Foundation
import LookalikeFormats

/// What the peers measured besides the points: memory and build times, per spec.
struct PeerBuild {
    var method: String
    var anonMiB: Double
    var trainSeconds: Double
    var addSeconds: Double
}

enum ScaleSweep {
    /// The rescoring words of one query: none (the collection's default), NORESCORE, RESCORE r.
    static func rescoreWords(_ r: Int?) -> [[UInt8]] {
        guard let r else { return [] }
        return r == 0 ? [Array("NORESCORE".utf8)] : [Array("RESCORE".utf8), Array("\(r)".utf8)]
    }

    static func param(_ word: String, _ effort: Int, _ r: Int?) -> String {
        "\(word.lowercased())=\(effort)" + (r.map { " rescore=\($0)" } ?? "")
    }

    /// faiss-cpu's index of `spec` on the raw vectors in `npy` (made unit length there) and the
    /// raw queries in `queriesNPY`; its points (recall scored by `truth`) and build figures.
    static func peers(spec: String, npy: String, queriesNPY: String, trainRows: Int, efforts: [Int], factors: [Int],
                      rounds: Int, scratch: String, truth: GroundTruth, prepared: [Float], queries: Int) throws -> ([Point], [PeerBuild]) {
        try measure(["--base", npy, "--queries", queriesNPY, "--normalise", "--train-rows", "\(trainRows)", "--rounds", "\(rounds)",
                     "--specs", spec, "--ivf-nprobe"] + efforts.map(String.init) + ["--refine-k-factor"] + factors.map(String.init),
                    method: { "\($0.library) \($0.index)" }, scratch: scratch, truth: truth, prepared: prepared, queries: queries)
    }

    /// faiss-cpu HNSW32 at efConstruction 200 on the same vectors (made unit length there) and
    /// queries, at the HNSW efforts: its points and its build.
    static func hnswPeer(npy: String, queriesNPY: String, efforts: [Int], rounds: Int, scratch: String, truth: GroundTruth,
                         prepared: [Float], queries: Int) throws -> ([Point], [PeerBuild]) {
        try measure(["--base", npy, "--queries", queriesNPY, "--normalise", "--rounds", "\(rounds)", "--specs", "HNSW32",
                     "--ef-construction", "200", "--hnsw-ef"] + efforts.map(String.init),
                    method: { _ in "faiss-cpu HNSW32 (efConstruction 200)" }, scratch: scratch, truth: truth, prepared: prepared,
                    queries: queries)
    }

    /// Runs peers.py ann with `arguments` (k 10, 2 threads, no hnswlib): each point under its
    /// method, and one build per method.
    private static func measure(_ arguments: [String], method: (Peers.Line) -> String, scratch: String, truth: GroundTruth,
                                prepared: [Float], queries: Int) throws -> ([Point], [PeerBuild]) {
        let out = scratch + "/peers"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let lines = try Peers.measure(["ann", "--k", "10", "--threads", "2", "--no-hnswlib"] + arguments, out: out, queries: queries, k: 10)
        var points: [Point] = [], builds: [PeerBuild] = []
        for (line, hits) in lines {
            let m = method(line)
            points.append(Point(method: m, index: line.index, param: line.param, recall: truth.recall(hits, base: prepared), qps: line.qps))
            if !builds.contains(where: { $0.method == m }) {
                builds.append(PeerBuild(method: m, anonMiB: line.anon_mb ?? .nan, trainSeconds: line.train_s ?? 0,
                                        addSeconds: line.add_s ?? line.build_s))
            }
        }
        return (points, builds)
    }

    /// The points no other point of the same method beats on both recall and rate.
    static func front(_ points: [Point]) -> [Point] {
        points.filter { p in !points.contains { $0.recall >= p.recall && $0.qps > p.qps || $0.recall > p.recall && $0.qps >= p.qps } }
    }

    /// Every point, then per method its rate at `target` on its front (interpolated) and the
    /// fastest measured point at or above it, and each method's ratio to the first (Lookalike).
    static func printSummary(_ points: [Point], builds: [PeerBuild], target: Double) {
        print("")
        print("| method | effort, rescoring | recall@10 | q/s |")
        print("|---|---|---:|---:|")
        for p in points { print("| \(p.method) | \(p.param) | \(String(format: "%.3f", p.recall)) | \(String(format: "%.0f", p.qps)) |") }
        if !builds.isEmpty {
            print("")
            print("| peer | anonymous memory of the index | train | add |")
            print("|---|---:|---:|---:|")
            for b in builds {
                print("| \(b.method) | \(String(format: "%.0f MiB", b.anonMiB)) | \(String(format: "%.1f s", b.trainSeconds)) | \(String(format: "%.1f s", b.addSeconds)) |")
            }
        }
        var methods: [String] = []
        for p in points where !methods.contains(p.method) { methods.append(p.method) }
        let rates = methods.map { m in rateAtRecall(target, front(points.filter { $0.method == m })) }
        print("")
        print("| method | q/s at recall \(target) (front, interpolated) | fastest point ≥ \(target) | ratio of the first to it |")
        print("|---|---:|---|---:|")
        for (m, rate) in zip(methods, rates) {
            let best = points.filter { $0.method == m && $0.recall >= target }.max { $0.qps < $1.qps }
            let ratio = rates[0].flatMap { a in rate.map { String(format: "%.2f×", a / $0) } } ?? "—"
            print("| \(m) | \(rate.map { String(format: "%.0f", $0) } ?? "not reached") | "
                  + (best.map { "\($0.param): \(String(format: "%.3f, %.0f q/s", $0.recall, $0.qps))" } ?? "none") + " | \(ratio) |")
        }
    }
}
