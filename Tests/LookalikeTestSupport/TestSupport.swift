// LookalikeTestSupport: what every test target shares. Test data made by the tests themselves
// (seeded, clustered vectors, and a brute-force truth computed here in Double, independently of
// the engine's own exact scan), temporary folders, built executables, error assertions.
// Threads: helpers are called from the test's own thread.
import Foundation
import LookalikeEngine
import LookalikeFormats
import LookalikeStorage
import XCTest

/// Points around `clusters` random centres: what image embeddings look like, roughly.
public func clusteredVectors(count: Int, dimension: Int, clusters: Int, spread: Float = 0.35,
                      seed: UInt64) -> [[Float]] {
    var rng = SeededRandom(seed: seed)
    let centres = (0..<clusters).map { _ in (0..<dimension).map { _ in rng.gaussian() } }
    return (0..<count).map { _ in
        let c = centres[Int(rng.next() % UInt64(clusters))]
        return c.map { $0 + spread * rng.gaussian() }
    }
}

/// Exact top-k keys by brute force, in Double.
public func bruteForce(_ query: [Float], _ data: [(key: String, vector: [Float])], k: Int, metric: Metric)
    -> [String]
{
    func norm(_ v: [Float]) -> Double { v.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot() }
    let qn = norm(query)
    let scored: [(String, Double)] = data.map { item in
        var dot = 0.0, l2 = 0.0
        for i in 0..<query.count {
            let a = Double(query[i]), b = Double(item.vector[i])
            dot += a * b
            l2 += (a - b) * (a - b)
        }
        switch metric {
        case .l2: return (item.key, l2)
        case .ip: return (item.key, -dot)
        case .cosine: return (item.key, -dot / (qn * norm(item.vector)))
        }
    }
    return scored.sorted { $0.1 < $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }.prefix(k).map(\.0)
}

public func recall(_ found: [String], _ truth: [String]) -> Double {
    Double(Set(found).intersection(truth).count) / Double(truth.count)
}

/// A fresh data folder, removed when the test ends.
public func temporaryDirectory(_ test: XCTestCase) -> String {
    let dir = FileManager.default.temporaryDirectory
        .appendingPathComponent("lookalike-test-\(UUID().uuidString)").path
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
    return dir
}

/// A small LMDB environment in a fresh folder (64 MiB map, no syncs): the storage tests' scratch
/// store. `configure` changes the options first (e.g. maxReaders).
public func scratchEnvironment(_ test: XCTestCase, _ configure: (inout StorageOptions) -> Void = { _ in }) throws -> Environment {
    var options = StorageOptions()
    options.mapSize = 64 << 20
    options.sync = .none
    configure(&options)
    return try Environment(path: temporaryDirectory(test), options: options)
}

/// An executable built next to the test bundle (the package's products).
public func builtExecutable(_ name: String) -> URL {
    let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for dir in [bundle, bundle.deletingLastPathComponent()] {
        let candidate = dir.appendingPathComponent(name)
        if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
    }
    return Bundle.main.bundleURL.appendingPathComponent(name)
}

/// The vector the crash writer writes for a key and version (shared with Tests/TestWriter).
public func writerVector(index: Int, version: Int, dimension: Int) -> [Float] {
    (0..<dimension).map { j in Float((index * 31 + j * 7 + version * 13) % 97) / 97 + Float(j == 0 ? 1 : 0) }
}

extension XCTestCase {
    public func assertThrows<T>(_ expected: EngineError, _ body: () throws -> T,
                         file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            XCTAssertEqual(error as? EngineError, expected, file: file, line: line)
        }
    }

    public func assertThrowsAsync<T>(_ expected: EngineError, _ body: () async throws -> T,
                              file: StaticString = #filePath, line: UInt = #line) async {
        do {
            _ = try await body()
            XCTFail("expected \(expected)", file: file, line: line)
        } catch {
            XCTAssertEqual(error as? EngineError, expected, file: file, line: line)
        }
    }
}
