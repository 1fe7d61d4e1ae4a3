// CommandStats: what INFO commandstats / errorstats / stats, SLOWLOG and LATENCY report, and
// the one place a finished command is recorded: `record` also feeds the Prometheus metrics
// (ServerMetrics) when the metrics port is on, so INFO and /metrics count the same commands.
//
// Owns: per-command counts and time, error counts by code, the slow log (a bounded ring of
// the slowest recent commands), the instantaneous ops/s sampler, keyspace hits and misses,
// AUTH failures; the rate-limited log lines of slow commands and AUTH failures (OperatorLog).
// Invariants: the slow log holds at most `maxLength` entries, newest first; a command is
// logged when it took at least `slowerThanMicros` (negative: never; 0: every command), timed
// from dispatch to its reply being ready, as Redis times execution.
// Threads: any thread; each update takes one short lock.
import Foundation
import Logging
import Synchronization

struct SlowLogEntry: Sendable {
    let id: Int
    let timestamp: Int
    let micros: Int
    let arguments: [[UInt8]]
    let client: String
    let name: String
}

final class CommandStats: Sendable {
    struct PerCommand: Sendable {
        var calls = 0
        var micros = 0
        var failed = 0
        var rejected = 0
    }

    struct SlowLogSettings: Sendable {
        var slowerThanMicros: Int
        var maxLength: Int
    }

    private let perCommand = Mutex<[String: PerCommand]>([:])
    private let errors = Mutex<[String: Int]>([:])
    private let slowLog = Mutex<(entries: [SlowLogEntry], nextId: Int)>(([], 0))
    let slowLogSettings: Mutex<SlowLogSettings>
    let keyspaceHits = Atomic<Int>(0)
    let keyspaceMisses = Atomic<Int>(0)
    /// AUTH (and HELLO AUTH) attempts with a wrong password (INFO acl_access_denied_auth).
    let authFailures = Atomic<Int>(0)
    /// Commands at or past the slow-log threshold (logged rate-limited; metrics).
    let slowCommands = Atomic<Int>(0)
    /// Nil unless --metrics-port is set.
    let metrics: ServerMetrics?
    private let logger: Logger
    private let slowLines = RateLimitedLog()
    private let authFailureLines = RateLimitedLog()
    /// Commands seen by each 100 ms sample (16 kept, as Redis does).
    private let samples = Mutex<(last: Int, ring: [Int])>((0, []))

    init(slowerThanMicros: Int, maxLength: Int, metrics: ServerMetrics? = nil,
         logger: Logger = Logger(label: "lookalike.server")) {
        slowLogSettings = Mutex(SlowLogSettings(slowerThanMicros: slowerThanMicros, maxLength: maxLength))
        self.metrics = metrics
        self.logger = logger
    }

    /// Records one finished command; `error` is its error reply's text, if it failed.
    /// `rejected`: refused before running (unknown, arity, auth). `collection`: its metrics
    /// label (ServerMetrics.collectionLabel), for the vector commands.
    func record(_ name: String, micros: Int, error: String?, rejected: Bool, collection: String? = nil) {
        // The metrics count what commandstats' calls count: refused commands are not calls.
        if !rejected { metrics?.record(command: name, collection: collection, nanoseconds: Int64(micros) * 1000, failed: error != nil) }
        perCommand.withLock { all in
            var s = all[name, default: PerCommand()]
            if rejected { s.rejected += 1 } else {
                s.calls += 1
                s.micros += micros
                if error != nil { s.failed += 1 }
            }
            all[name] = s
        }
        if let error {
            let code = String(error.prefix { $0 != " " }.prefix(32))
            errors.withLock { $0[code, default: 0] += 1 }
        }
    }

    /// A command at or past the threshold: a log line (rate-limited), and a SLOWLOG entry
    /// unless the slow log keeps none.
    func logIfSlow(_ name: String, micros: Int, arguments argumentsOf: () -> [[UInt8]], client: String, clientName: String) {
        let settings = slowLogSettings.withLock { $0 }
        guard settings.slowerThanMicros >= 0, micros >= settings.slowerThanMicros else { return }
        slowCommands.wrappingAdd(1, ordering: .relaxed)
        slowLines.note { count in
            logger.warning("slow command", metadata: [
                "command": "\(name.uppercased())", "micros": "\(micros)", "client": "\(client)",
                "threshold-micros": "\(settings.slowerThanMicros)", "slow-commands-since-last-line": "\(count)"])
        }
        guard settings.maxLength > 0 else { return }
        let arguments = argumentsOf()
        // As Redis: at most 32 arguments, each cut at 128 bytes.
        var kept = arguments.prefix(32).map { $0.count > 128 ? Array($0.prefix(128)) + Array(" ... (\($0.count - 128) more bytes)".utf8) : $0 }
        if arguments.count > 32 { kept[31] = Array("... (\(arguments.count - 31) more arguments)".utf8) }
        slowLog.withLock { log in
            log.entries.insert(SlowLogEntry(id: log.nextId, timestamp: Int(Date().timeIntervalSince1970), micros: micros,
                                            arguments: kept, client: client, name: clientName), at: 0)
            log.nextId += 1
            if log.entries.count > settings.maxLength { log.entries.removeLast(log.entries.count - settings.maxLength) }
        }
    }

    /// A wrong password: counted, and logged at most once per 10 s with the count since.
    func noteAuthFailure(client: String) {
        authFailures.wrappingAdd(1, ordering: .relaxed)
        authFailureLines.note { count in
            logger.warning("AUTH failed: wrong password", metadata: ["client": "\(client)", "failures-since-last-line": "\(count)"])
        }
    }

    func slowLogEntries(_ count: Int) -> [SlowLogEntry] { slowLog.withLock { Array($0.entries.prefix(count)) } }
    var slowLogLength: Int { slowLog.withLock { $0.entries.count } }
    func resetSlowLog() { slowLog.withLock { $0.entries.removeAll() } }

    func commandLines() -> [(String, String)] {
        perCommand.withLock { $0 }.sorted { $0.key < $1.key }.map { name, s in
            let per = s.calls == 0 ? 0 : Double(s.micros) / Double(s.calls)
            return ("cmdstat_\(name)", "calls=\(s.calls),usec=\(s.micros),usec_per_call=\(String(format: "%.2f", per)),rejected_calls=\(s.rejected),failed_calls=\(s.failed)")
        }
    }

    func errorLines() -> [(String, String)] {
        errors.withLock { $0 }.sorted { $0.key < $1.key }.map { ("errorstat_\($0.key)", "count=\($0.value)") }
    }

    var totalErrors: Int { errors.withLock { $0.values.reduce(0, +) } }

    /// Called every 100 ms with the running total of commands.
    func sample(total: Int) {
        samples.withLock { s in
            s.ring.append(total - s.last)
            s.last = total
            if s.ring.count > 16 { s.ring.removeFirst(s.ring.count - 16) }
        }
    }

    var opsPerSecond: Int {
        samples.withLock { s in s.ring.isEmpty ? 0 : s.ring.reduce(0, +) * 10 / s.ring.count }
    }
}
