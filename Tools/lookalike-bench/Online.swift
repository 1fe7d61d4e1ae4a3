// Online: what the server benchmarks share — loading a collection through pipelined VADDs,
// requests at a fixed offered load with their latencies, and a writer that runs beside them.
import Foundation
import LookalikeClient

/// VADD key FP32 blob element SETATTR json, as the online tools send it.
func vaddCommand(_ key: String, _ vector: [Float], _ element: String, _ attributes: String?) -> [[UInt8]] {
    var c: [[UInt8]] = [Array("VADD".utf8), Array(key.utf8), Array("FP32".utf8), vector.withUnsafeBytes { Array($0) }, Array(element.utf8)]
    if let attributes { c += [Array("SETATTR".utf8), Array(attributes.utf8)] }
    return c
}

/// Loads rows `range` of `set` into `key` over `connections` pipelined connections, `depth`
/// VADDs in flight on each; durable items per second (every reply checked).
func loadOnline(port: Int, key: String, set: Dataset, range: Range<Int>, connections: Int, depth: Int) throws -> Double {
    // Encoded before the clock starts: the client shares the cores with the server.
    let commands = range.map { vaddCommand(key, set.row($0), set.keys[$0], set.attributesJSON($0)) }
    let (rate, replies) = try pipelined(port: port, connections: connections, depth: depth, count: range.count) { commands[$0] }
    if let bad = replies.first(where: { if case .error = $0 { return true } else { return false } }) {
        throw ClientError("VADD failed: \(bad)")
    }
    return rate
}

/// Standard output line by line, so a long benchmark shows where it is when redirected.
func lineBufferedOutput() {
    // Swift 6 forbids touching the C global `stdout` directly; dlsym finds the same FILE *.
    guard let symbol = dlsym(nil, "stdout"), let out = symbol.assumingMemoryBound(to: UnsafeMutablePointer<FILE>?.self).pointee else { return }
    setvbuf(out, nil, _IOLBF, 0)
}

/// Percentiles of latencies in seconds, reported in milliseconds.
struct Percentiles: Codable {
    var p50: Double, p99: Double, p999: Double, max: Double, count: Int

    init(_ seconds: [Double]) {
        let s = seconds.sorted()
        func at(_ q: Double) -> Double { s.isEmpty ? .nan : 1000 * s[min(s.count - 1, Int(q * Double(s.count)))] }
        p50 = at(0.5); p99 = at(0.99); p999 = at(0.999); max = 1000 * (s.last ?? .nan); count = s.count
    }
}

/// Sends command(i) at `rate` per second for `seconds` on one connection, open loop: a sender
/// thread sends each request at its intended time whether or not earlier replies are back, and
/// each latency runs from that intended time to its reply (no coordinated omission). Replies
/// still missing at three times the planned duration count with the wait they had so far (a
/// lower bound), so the run stays bounded.
func fixedRateLatencies(port: Int, rate: Double, seconds: Double, command: @escaping @Sendable (Int) -> [[UInt8]]) throws -> [Double] {
    let client = UncheckedBox(value: try RESPClient(address: "127.0.0.1:\(port)"))
    let total = Int(rate * seconds)
    let t0 = now()
    let sendFailure = Slots<Void>(1)
    Thread.detachNewThread {
        do {
            for i in 0..<total {
                let intended = t0 + Double(i) / rate
                while now() < intended { usleep(UInt32(max(0, min(1_000, (intended - now()) * 1e6)))) }
                client.value.send(command(i))
                try client.value.flush()
            }
            sendFailure.set(0, .success(()))
        } catch {
            sendFailure.set(0, .failure(error))
        }
    }
    var latencies: [Double] = []
    latencies.reserveCapacity(total)
    let deadline = t0 + 3 * seconds
    for i in 0..<total {
        if now() > deadline {
            latencies += (i..<total).map { deadline - (t0 + Double($0) / rate) }
            break
        }
        if case .error(let e) = try client.value.receive() { throw ClientError("request failed: \(e)") }
        latencies.append(now() - (t0 + Double(i) / rate))
    }
    if case .failure(let e)? = sendFailure.values[0] { throw e }
    return latencies
}

/// A writer beside the measured requests: VADDs of `make(i)` on its own connection, at `rate`
/// items per second (0: as fast as pipelining allows), until stopped or `limit` are written.
final class BackgroundWriter: @unchecked Sendable {
    private let lock = NSLock()
    private var stopped = false
    private(set) var written = 0
    private var failure: Error?
    private let done = DispatchSemaphore(value: 0)

    init(port: Int, rate: Double, batch: Int = 50, limit: Int, make: @escaping @Sendable (Int) -> [[UInt8]]) {
        Thread.detachNewThread { [self] in
            defer { done.signal() }
            do {
                let client = try RESPClient(address: "127.0.0.1:\(port)")
                let t0 = now()
                var i = 0
                while !isStopped && i < limit {
                    if rate > 0 {
                        let due = t0 + Double(i + batch) / rate
                        while now() < due && !isStopped { usleep(1_000) }
                    }
                    for j in 0..<batch { client.send(make(i + j)) }
                    for _ in 0..<batch {
                        if case .error(let e) = try client.read() { throw ClientError("VADD failed: \(e)") }
                    }
                    i += batch
                    lock.withLock { written = i }
                }
            } catch {
                lock.withLock { failure = error }
            }
        }
    }

    private var isStopped: Bool { lock.withLock { stopped } }

    /// Stops the writer; the items it wrote, or its error.
    func stop() throws -> Int {
        lock.withLock { stopped = true }
        done.wait()
        if let failure = lock.withLock({ failure }) { throw failure }
        return lock.withLock { written }
    }
}
