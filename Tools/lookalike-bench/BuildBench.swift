// `lookalike-bench build`: how fast an HNSW graph is built, and how good it is, side by side:
//   - Lookalike's insertion loop (FaissIndex.reserveGraph + insert, the live-graph path, in
//     batches as the engine inserts);
//   - FAISS 1.7.3's own IndexHNSW::add (Debian's build, with the shim's AVX2 flat storage, as
//     sealing builds segments today);
//   - faiss-cpu from PyPI (its SIMD build), in a child Python process on the same vectors.
// Every build uses `threads` threads; each is repeated `runs` times (round-robin over the
// methods) and the median is shown, as wall seconds and as items per CPU-second (every thread's
// user + system time), which a busy shared machine disturbs less.
// Recall@10 is tie-aware against brute force, at a few efSearch values, every graph searched
// by the same loop as its library's (Lookalike's for the first two, faiss-cpu's own for it).
import ArgumentParser
import Foundation
import LookalikeFormats
import LookalikeIndex

struct BuildBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build",
        abstract: "HNSW build rates and recall: Lookalike's insertion loop, FAISS 1.7.3's add, faiss-cpu (PyPI).")

    @Option(help: "Generated items per generated set.") var count = 50_000
    @Option(parsing: .upToNextOption, help: "Dimensions of the generated sets.") var dimensions: [Int] = [128, 384]
    @Flag(help: "Skip ../shared/data even when present.") var generatedOnly = false
    @Option(help: "Held-out queries per set.") var queries = 1_000
    @Option(help: "Build threads (OpenMP).") var threads = 2
    @Option(help: "Builds per method (the median is reported).") var runs = 3
    @Option(help: "HNSW M (neighbours per node; 2M on level 0).") var m = 32
    @Option(parsing: .upToNextOption, help: "efConstruction values.") var efConstruction: [Int] = [40, 200]
    @Option(parsing: .upToNextOption, help: "efConstruction values for faiss-cpu (PyPI).") var peerEfConstruction: [Int] = [200]
    @Option(parsing: .upToNextOption, help: "efSearch values for recall.") var efSearch: [Int] = [32, 64, 128]
    @Option(help: "Vectors per insert call (the live-graph path).") var batch = 10_000
    @Flag(help: "Skip faiss-cpu.") var noPeers = false
    @Flag(help: "Skip FAISS 1.7.3's own add (measure the insertion loop alone).") var noFaissAdd = false
    @Option(help: "Scratch folder (deleted afterwards).") var scratch = NSTemporaryDirectory() + "lookalike-bench-build"

    struct Row { var method: String; var efc: Int; var seconds: [Double]; var cpu: [Double]; var recalls: [Double] }

    func run() throws {
        lineBufferedOutput()
        var sets: [Dataset] = dimensions.map { Dataset.generate(count: count, dimension: $0, seed: 42) }
        if !generatedOnly, let real = try? Dataset.load(generated: false, count: 0, dimension: 0, limit: nil), real.name.hasPrefix("debian") {
            sets.append(real)
        }
        try? FileManager.default.removeItem(atPath: scratch)
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        print("# HNSW build: HNSW\(m), cosine (inner product on unit vectors), \(threads) threads, median of \(runs) builds; \(machineLine())")
        for set in sets { try measure(set) }
    }

    func measure(_ set: Dataset) throws {
        let (base, raw) = set.split(queries: queries, seed: 11)
        let prepared = base.prepared(), n = base.count, d = base.dimension
        let truth = GroundTruth(base: prepared, rows: n, queries: raw, dimension: d, k: 10, normalise: true)
        var rows: [Row] = []
        func recalls(_ index: FaissIndex) throws -> [Double] {
            try efSearch.map { ef in
                let r = try index.search(truth.queries, queryCount: raw.count, k: 10, effort: SearchEffort(efSearch: ef), selector: nil, threads: threads)
                return truth.recall((0..<raw.count).map { q in r.positions[(q * 10)..<((q + 1) * 10)].map { Int($0) } }, base: prepared)
            }
        }
        // Round-robin over the methods, run by run, so that a noisy neighbour on the machine
        // hits every method alike; wall and CPU (all threads) seconds per build.
        let methods = efConstruction.flatMap { efc in
            ["Lookalike insert (live graph)", "FAISS 1.7.3 add"].filter { !(noFaissAdd && $0.hasPrefix("FAISS")) }.map { ($0, efc) }
        }
        var times = [[(wall: Double, cpu: Double)]](repeating: [], count: methods.count)
        var built = [FaissIndex?](repeating: nil, count: methods.count)
        for _ in 0..<runs {
            for (i, (method, efc)) in methods.enumerated() {
                let index = try FaissIndex(spec: "HNSW\(m)", dimension: d, metric: .innerProduct)
                try index.setHNSW(efConstruction: efc, efSearch: max(256, efSearch.max() ?? 0))
                FaissIndex.setThreads(threads)
                let t0 = now(), c0 = cpuSeconds()
                try prepared.withUnsafeBufferPointer { p in
                    if method.hasPrefix("Lookalike") {
                        try index.reserveGraph(capacity: n)
                        for start in stride(from: 0, to: n, by: batch) {
                            try index.insert(p.baseAddress! + start * d, count: min(batch, n - start), threads: threads)
                        }
                    } else {
                        try index.add(p.baseAddress!, count: n)
                    }
                }
                times[i].append((now() - t0, cpuSeconds() - c0))
                built[i] = index
            }
        }
        for (i, (method, efc)) in methods.enumerated() {
            rows.append(Row(method: method, efc: efc, seconds: times[i].map(\.wall), cpu: times[i].map(\.cpu),
                            recalls: try recalls(built[i]!)))
            print(row(rows.last!, n))
        }
        if !noPeers { rows += try peers(prepared, truth, n: n, d: d) }
        print("\n## \(set.name)\n")
        print("| method | efConstruction | build s (median; all) | items/s | items per CPU-s | " + efSearch.map { "recall@10 ef=\($0)" }.joined(separator: " | ") + " |")
        print("|---|---|---|---:|---:|" + efSearch.map { _ in "---|" }.joined())
        for r in rows { print(row(r, n)) }
        print("")
    }

    func row(_ r: Row, _ n: Int) -> String {
        let median = r.seconds.sorted()[r.seconds.count / 2], cpu = r.cpu.sorted()[r.cpu.count / 2]
        return "| \(r.method) | \(r.efc) | \(f2(median)) (\(r.seconds.map(f2).joined(separator: ", "))) | \(f0(Double(n) / median)) | \(f0(Double(n) / cpu)) | "
            + r.recalls.map(f3).joined(separator: " | ") + " |"
    }

    /// faiss-cpu (PyPI): IndexHNSWFlat(d, M, inner product), add timed, searched with its own loop.
    func peers(_ prepared: [Float], _ truth: GroundTruth, n: Int, d: Int) throws -> [Row] {
        try Peers.ensure()
        let basePath = scratch + "/base.npy", queryPath = scratch + "/queries.npy", script = scratch + "/build.py"
        try VectorFile.writeNPY(prepared, rows: n, dimension: d, to: basePath)
        let q = truth.queries.count / d
        try VectorFile.writeNPY(truth.queries, rows: q, dimension: d, to: queryPath)
        try Self.python.write(toFile: script, atomically: true, encoding: .utf8)
        let text = try runProgram(Peers.python, [script, basePath, queryPath, scratch, String(threads), String(m), String(runs),
                                                 peerEfConstruction.map(String.init).joined(separator: ","),
                                                 efSearch.map(String.init).joined(separator: ",")])
        struct Line: Decodable { var efc: Int; var times: [Double]; var cpu: [Double]; var version: String }
        return try text.split(separator: "\n").filter { $0.hasPrefix("{") }.map { line in
            let p = try JSONDecoder().decode(Line.self, from: Data(line.utf8))
            let recalls = try efSearch.map { ef -> Double in
                let data = try Data(contentsOf: URL(fileURLWithPath: "\(scratch)/pip-\(p.efc)-\(ef).i64"))
                let ids = data.withUnsafeBytes { Array($0.bindMemory(to: Int64.self)) }
                return truth.recall((0..<q).map { i in ids[(i * 10)..<((i + 1) * 10)].map { Int($0) } }, base: prepared)
            }
            let r = Row(method: "faiss-cpu \(p.version) (PyPI) add", efc: p.efc, seconds: p.times, cpu: p.cpu, recalls: recalls)
            print(row(r, n))
            return r
        }
    }

    /// CPU seconds of this process, every thread (user + system).
    func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }

    static let python = """
        import json, sys, time
        import numpy as np, faiss
        base, queries, out = np.load(sys.argv[1]), np.load(sys.argv[2]), sys.argv[3]
        threads, m, runs = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
        efcs = [int(v) for v in sys.argv[7].split(",")]
        efss = [int(v) for v in sys.argv[8].split(",")]
        faiss.omp_set_num_threads(threads)
        for efc in efcs:
            times, cpu = [], []
            for _ in range(runs):
                index = faiss.IndexHNSWFlat(base.shape[1], m, faiss.METRIC_INNER_PRODUCT)
                index.hnsw.efConstruction = efc
                t0, c0 = time.perf_counter(), time.process_time()
                index.add(base)
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            for ef in efss:
                index.hnsw.efSearch = ef
                _, ids = index.search(queries, 10, params=faiss.SearchParametersHNSW(efSearch=ef))
                ids.astype("<i8").tofile(f"{out}/pip-{efc}-{ef}.i64")
            print(json.dumps({"efc": efc, "times": times, "cpu": cpu, "version": faiss.__version__}), flush=True)
        """
}
