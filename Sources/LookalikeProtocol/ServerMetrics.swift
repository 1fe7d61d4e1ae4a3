// ServerMetrics: the server's Prometheus metrics (Docs/operations.md lists every one).
//
// Owns: the per-command handles (counts, errors, latency histograms, per collection for the
// vector commands), the cap on distinct collection labels, and the scrape-time reading of the
// state gauges and of the counters other parts keep (ServerContext's atomics, the engine's
// statistics). Nothing here counts what another part counts already: commands are recorded
// by CommandStats.record (the same call that feeds INFO commandstats), state is read at scrape.
// Invariants: at most `maxCollections` distinct collection labels; later collections share the
// label `_other`. Counters only grow: a scrape-time counter adds the growth since the last
// scrape (a restarted engine's numbers never make one go down).
// Threads: `record` from any thread (one short lock); `refresh` from the endpoint's pool, one
// scrape at a time (the endpoint serialises them).
import CoreMetrics
import Foundation
import LookalikeEngine
import Prometheus
import Synchronization

public final class ServerMetrics: Sendable {
    /// Label given to collections past the cap.
    static let otherCollections = "_other"

    private struct Handles: Sendable {
        let calls: CoreMetrics.Counter
        let errors: CoreMetrics.Counter
        let duration: CoreMetrics.Timer
    }

    private struct Key: Hashable, Sendable {
        let command: String
        let collection: String
    }

    private let maxCollections: Int
    private let handles = Mutex<[Key: Handles]>([:])
    private let labelledCollections = Mutex<Set<String>>([])
    /// Scrape-time counters: the value last reported, per metric name.
    private let reported = Mutex<[String: Int]>([:])
    /// Collections whose gauges the last scrape set (the gauges of dropped ones are removed).
    private let gaugedCollections = Mutex<Set<String>>([])
    /// The label sets of `lookalike_memory_bytes` the last scrape set.
    private let gaugedMemory = Mutex<Set<[String]>>([])

    public init(maxCollections: Int) { self.maxCollections = max(0, maxCollections) }

    /// The factory lookalike-server bootstraps swift-metrics with: Prometheus, with buckets
    /// fitted to our latencies (100 µs to 10 s) and batch sizes (1 to maxBatch).
    public static func factory(registry: PrometheusCollectorRegistry) -> PrometheusMetricsFactory {
        var f = PrometheusMetricsFactory(registry: registry)
        let latency: [Duration] = [.microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
                                   .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25),
                                   .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
                                   .seconds(1), .microseconds(2_500_000), .seconds(10)]
        f.defaultDurationHistogramBuckets = latency
        f.durationHistogramBuckets["lookalike_seal_duration_seconds"] = [.milliseconds(100), .seconds(1), .seconds(10), .seconds(60), .seconds(600)]
        f.durationHistogramBuckets["lookalike_merge_duration_seconds"] = [.milliseconds(100), .seconds(1), .seconds(10), .seconds(60), .seconds(600)]
        f.valueHistogramBuckets["lookalike_commit_batch_size"] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]
        return f
    }

    /// The collection label of a command: its key for the vector commands (the V… commands,
    /// whose first argument is the collection), nil for the others. `key` is read only then.
    func collectionLabel(command: String, firstKey: Int, key: () -> String) -> String? {
        guard command.hasPrefix("v"), firstKey == 1 else { return nil }
        return label(key())
    }

    /// A collection's label: its name while fewer than `maxCollections` names have one (the
    /// first seen keep theirs, for commands and gauges alike), else `_other`.
    func label(_ name: String) -> String {
        labelledCollections.withLock { known in
            if known.contains(name) { return name }
            guard known.count < maxCollections else { return Self.otherCollections }
            known.insert(name)
            return name
        }
    }

    /// One finished command (CommandStats.record calls it).
    func record(command: String, collection: String?, nanoseconds: Int64, failed: Bool) {
        let key = Key(command: command, collection: collection ?? "")
        let h = handles.withLock { all -> Handles in
            if let h = all[key] { return h }
            let labels = [("command", key.command), ("collection", key.collection)]
            let h = Handles(calls: CoreMetrics.Counter(label: "lookalike_commands_total", dimensions: labels),
                            errors: CoreMetrics.Counter(label: "lookalike_command_errors_total", dimensions: labels),
                            duration: CoreMetrics.Timer(label: "lookalike_command_duration_seconds", dimensions: labels))
            all[key] = h
            return h
        }
        h.calls.increment()
        if failed { h.errors.increment() }
        h.duration.recordNanoseconds(nanoseconds)
    }

    // MARK: Scrape time

    /// Sets the gauges and scrape-time counters from what the server and engine hold now.
    func refresh(_ server: ServerContext) {
        let stats = server.stats
        for (name, value) in [
            ("lookalike_connections_received_total", server.totalConnections.load(ordering: .relaxed)),
            ("lookalike_connections_rejected_total", server.rejectedConnections.load(ordering: .relaxed)),
            ("lookalike_client_timeouts_total", server.timedOutClients.load(ordering: .relaxed)),
            ("lookalike_client_output_limit_disconnections_total", server.outputLimitDisconnections.load(ordering: .relaxed)),
            ("lookalike_protocol_errors_total", server.protocolErrors.load(ordering: .relaxed)),
            ("lookalike_auth_failures_total", stats.authFailures.load(ordering: .relaxed)),
            ("lookalike_slow_commands_total", stats.slowCommands.load(ordering: .relaxed)),
            ("lookalike_keyspace_hits_total", stats.keyspaceHits.load(ordering: .relaxed)),
            ("lookalike_keyspace_misses_total", stats.keyspaceMisses.load(ordering: .relaxed)),
        ] { counter(name, value) }

        let engine = server.engine
        let indexing = engine.indexingStatistics()
        gauge("lookalike_connected_clients", server.connectedClients.load(ordering: .relaxed))
        gauge("lookalike_memory_heap_bytes", InfoCommand.heapBytes())
        gauge("lookalike_memory_rss_bytes", InfoCommand.residentBytes())
        gauge("lookalike_lmdb_used_bytes", engine.storageBytes())
        gauge("lookalike_lmdb_map_bytes", server.options.engine.storage.mapSize)
        gauge("lookalike_unindexed_items", indexing.unindexed)
        gauge("lookalike_writes_failing", engine.writeFailure == nil ? 0 : 1)
        counter("lookalike_linked_items_total", indexing.linked)
        counter("lookalike_write_throttled_batches_total", indexing.throttledBatches)
        gauge("lookalike_uptime_seconds", Int(Date().timeIntervalSince(server.startedAt)))
        let adminJobs = server.admin.counts
        gauge("lookalike_admin_jobs_running", adminJobs.running)
        gauge("lookalike_admin_jobs_queued", adminJobs.queued)
        refreshCollections(engine.collectionStatistics())
    }

    /// Per-collection gauges, within the label cap (collections past it are summed in `_other`).
    /// A dropped collection's gauges go; its label stays taken (its command counters remain).
    private func refreshCollections(_ all: [CollectionStatistics]) {
        var rows: [String: [Int]] = [:]
        for c in all.sorted(by: { $0.name < $1.name }) {
            let label = label(c.name)
            let values = [c.items, c.sealedSegments, c.sealingSegments, c.mutableItems, c.unindexedItems,
                          c.segmentsDueToMerge, c.estimatedBytes]
            rows[label] = zip(rows[label] ?? Array(repeating: 0, count: values.count), values).map { $0 + $1 }
        }
        let names = ["lookalike_collection_items", "lookalike_collection_sealed_segments",
                     "lookalike_collection_sealing_segments", "lookalike_collection_mutable_items",
                     "lookalike_collection_unindexed_items", "lookalike_collection_segments_due_to_merge",
                     "lookalike_collection_estimated_bytes"]
        for (label, values) in rows {
            for (name, value) in zip(names, values) { gauge(name, value, [("collection", label)]) }
        }
        refreshMemory(all)
        let gone = gaugedCollections.withLock { seen in
            defer { seen = Set(rows.keys) }
            return seen.subtracting(rows.keys)
        }
        for label in gone {
            for name in names { CoreMetrics.Gauge(label: name, dimensions: [("collection", label)]).destroy() }
        }
        gauge("lookalike_collections", all.count)
    }

    /// `lookalike_memory_bytes{collection, component, backing}`: every component under its
    /// usual backing (LMDB mapped, the rest heap), and under the other one when it has bytes
    /// there (IVF lists read with mmap).
    private func refreshMemory(_ all: [CollectionStatistics]) {
        var rows: [[String]: Int] = [:]
        for c in all {
            let label = label(c.name)
            for component in MemoryComponent.allCases {
                let usual = component == .lmdb ? "mapped" : "heap"
                for (backing, bytes) in [("heap", c.memory.heap[component]), ("mapped", c.memory.mapped[component])]
                where backing == usual || (bytes ?? 0) > 0 {
                    rows[[label, component.rawValue, backing], default: 0] += bytes ?? 0
                }
            }
        }
        func dimensions(_ key: [String]) -> [(String, String)] {
            [("collection", key[0]), ("component", key[1]), ("backing", key[2])]
        }
        for (key, bytes) in rows { gauge("lookalike_memory_bytes", bytes, dimensions(key)) }
        let gone = gaugedMemory.withLock { seen in
            defer { seen = Set(rows.keys) }
            return seen.subtracting(rows.keys)
        }
        for key in gone { CoreMetrics.Gauge(label: "lookalike_memory_bytes", dimensions: dimensions(key)).destroy() }
    }

    private func gauge(_ name: String, _ value: Int, _ labels: [(String, String)] = []) {
        CoreMetrics.Gauge(label: name, dimensions: labels).record(value)
    }

    /// Reports a running total kept elsewhere as a Prometheus counter: adds its growth since
    /// the last scrape (nothing when it went down, as after a restart of its source).
    private func counter(_ name: String, _ total: Int) {
        let growth = reported.withLock { last -> Int in
            defer { last[name] = max(last[name] ?? 0, total) }
            return max(0, total - (last[name] ?? 0))
        }
        CoreMetrics.Counter(label: name).increment(by: growth)  // created (at 0) on the first scrape
    }
}
