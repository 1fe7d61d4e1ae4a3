// Harness: what the benchmarks share beyond the data.
//   - ServerProcess: a release lookalike-server started beside this binary, on a data folder;
//     start-up time (until PING answers), resident memory (its own INFO), and a clean stop.
//   - Peers: Tools/bench/peers.py in its virtual environment (faiss-cpu, hnswlib), run on the
//     vectors this benchmark wrote, its hits read back so recall is scored here for everyone.
//   - Point / Results: one measured point, the markdown table, and the JSON the plots read.
//   - parallel: a measured loop over queries split across threads.
import Foundation
import LookalikeClient
import LookalikeFormats

/// The repository root (the benchmark runs from its build folder or anywhere else).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

final class ServerProcess {
    let process = Process()
    let port: Int
    /// Seconds from launch until PING answered.
    private(set) var startSeconds = 0.0

    /// Extra flags for every server a benchmark starts, from LOOKALIKE_BENCH_SERVER_ARGS
    /// (space-separated): A/B runs of a knob without a flag on each benchmark.
    static let extraArguments = (ProcessInfo.processInfo.environment["LOOKALIKE_BENCH_SERVER_ARGS"] ?? "")
        .split(separator: " ").map(String.init)

    init(data: String, port: Int, arguments: [String] = []) throws {
        self.port = port
        process.executableURL = URL(fileURLWithPath: try siblingExecutable("lookalike-server"))
        process.arguments = ["--port", "\(port)", "--data", data, "--log-level", "warning"] + arguments + Self.extraArguments
        let t0 = now()
        try process.run()
        while true {
            if !process.isRunning { throw ClientError("lookalike-server exited at start (is port \(port) free?)") }
            if let c = try? RESPClient(address: "127.0.0.1:\(port)"), (try? c.call(["PING"])) == .simple("PONG") { break }
            if now() - t0 > 600 { throw ClientError("lookalike-server did not answer PING in 600 s") }
            usleep(5_000)
        }
        startSeconds = now() - t0
    }

    /// Resident memory of the server in bytes, as it reports it (INFO memory, used_memory_rss).
    func residentBytes() throws -> Int {
        let info = try RESPClient(address: "127.0.0.1:\(port)").call(["INFO", "memory"]).text ?? ""
        let line = info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("used_memory_rss:") }
        guard let value = line.flatMap({ Int($0.dropFirst("used_memory_rss:".count)) }) else {
            throw ClientError("INFO memory has no used_memory_rss")
        }
        return value
    }

    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }

    deinit { stop() }
}

/// The release executable `name` built beside this benchmark (lookalike-server, -ingest).
func siblingExecutable(_ name: String) throws -> String {
    let path = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        .appendingPathComponent(name).path
    guard FileManager.default.isExecutableFile(atPath: path) else {
        throw ClientError("\(path) is missing: build it with `swift build -c release` first")
    }
    return path
}

/// Runs a program; its standard output. Standard error passes through.
@discardableResult
func runProgram(_ program: String, _ arguments: [String]) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: program)
    p.arguments = arguments
    let pipe = Pipe()
    p.standardOutput = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw ClientError("\(program) \(arguments.joined(separator: " ")) exited with \(p.terminationStatus)") }
    return String(decoding: data, as: UTF8.self)
}

enum Peers {
    static let python = repositoryRoot.appendingPathComponent(".build/bench-py/bin/python").path

    /// Makes the virtual environment when it is missing (needs PyPI once).
    static func ensure() throws {
        if FileManager.default.isExecutableFile(atPath: python) { return }
        print("setting up the peers (faiss-cpu, hnswlib) with Tools/bench/setup-peers.sh …")
        try runProgram("/bin/bash", [repositoryRoot.appendingPathComponent("Tools/bench/setup-peers.sh").path])
    }

    struct Line: Decodable {
        var label: String; var library: String; var index: String; var param: String; var build_s: Double; var qps: Double
        /// The peer's anonymous memory after its build, and its train and add times (scale --peers).
        var anon_mb: Double?; var train_s: Double?; var add_s: Double?
    }

    /// Runs peers.py with `arguments`; each reported point with its hits (queries × k rows).
    static func measure(_ arguments: [String], out: String, queries: Int, k: Int) throws -> [(Line, [[Int]])] {
        try ensure()
        let text = try runProgram(python, [repositoryRoot.appendingPathComponent("Tools/bench/peers.py").path] + arguments + ["--out", out])
        return try text.split(separator: "\n").filter { $0.hasPrefix("{") }.map { line in
            let point = try JSONDecoder().decode(Line.self, from: Data(line.utf8))
            let data = try Data(contentsOf: URL(fileURLWithPath: "\(out)/\(point.label).i64"))
            let ids = data.withUnsafeBytes { Array($0.bindMemory(to: Int64.self)) }
            return (point, (0..<queries).map { q in ids[(q * k)..<((q + 1) * k)].map { Int($0) } })
        }
    }

}

/// One measured point of a sweep.
struct Point: Codable {
    var method: String
    var index: String
    var param: String
    var recall: Double
    var qps: Double
}

/// Runs `body(i)` for every query index on `threads` threads (query i on thread i % threads);
/// the rate over the whole run and every query's result, in order.
func parallel<R>(_ count: Int, threads: Int, _ body: @escaping @Sendable (Int) throws -> R) throws -> (qps: Double, results: [R]) {
    let slots = Slots<R>(count)
    let t0 = now()
    DispatchQueue.concurrentPerform(iterations: threads) { t in
        for i in stride(from: t, to: count, by: threads) { slots.set(i, Result { try body(i) }) }
    }
    let seconds = now() - t0
    return (Double(count) / seconds, try slots.values.map { try $0!.get() })
}

/// Per-index result slots, each written by one thread.
final class Slots<R>: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [Result<R, Error>?]
    init(_ count: Int) { storage = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ value: Result<R, Error>) { lock.lock(); storage[i] = value; lock.unlock() }
    var values: [Result<R, Error>?] { lock.lock(); defer { lock.unlock() }; return storage }
}

/// The machine line every table carries.
func machineLine() -> String {
    let cores = ProcessInfo.processInfo.activeProcessorCount
    let gib = Double(ProcessInfo.processInfo.physicalMemory) / Double(1 << 30)
    let date = ISO8601DateFormatter().string(from: Date()).prefix(10)
    return "\(date), \(cores) cores, \(String(format: "%.0f", gib)) GiB, FAISS 1.7.3 (Debian), release build"
}

/// Writes `value` as JSON to `path` (folders created), for the plots.
func writeJSON<T: Encodable>(_ value: T, to path: String) throws {
    try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    try encoder.encode(value).write(to: URL(fileURLWithPath: path))
}

/// Draws the PNGs from a results JSON with Tools/bench/plot.py (in the peers' environment,
/// which has matplotlib); a missing environment only skips the plot.
func plot(_ kind: String, results: String, png: String) {
    do {
        try Peers.ensure()
        try runProgram(Peers.python, [repositoryRoot.appendingPathComponent("Tools/bench/plot.py").path, kind, results, png])
        print("plot: \(png)")
    } catch {
        print("plot skipped: \(error)")
    }
}
