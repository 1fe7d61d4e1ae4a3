// InfoCommand: INFO [section …], with the sections and field names Redis tools parse
// (redis-cli --stat, redis_exporter, redis-py's info()), and ours prefixed `lookalike_`.
// Default sections as in Redis: all but commandstats, which `all` and `everything` add.
// Threads: runs on the search pool (it counts items in every collection).
import CLibc
import Foundation
import LookalikeEngine

#if canImport(Glibc)
import Glibc
#endif

enum InfoCommand {
    static let spec = CommandSpec(name: "info", arity: -1, ordering: .read, flags: [], firstKey: 0, lastKey: 0, run: info)
    static let defaultSections: Set<String> = ["server", "clients", "memory", "persistence", "stats", "replication",
                                               "cpu", "errorstats", "keyspace"]

    static func info(_ inv: Invocation) throws -> Reply {
        let wanted = Set((1..<inv.count).map { inv.string($0).lowercased() })
        let server = inv.server
        return inv.offload {
            let everything = wanted.contains("all") || wanted.contains("everything")
            let defaults = wanted.isEmpty || wanted.contains("default") || everything
            var text = ""
            for (name, lines) in try sections(server) {
                let key = name.lowercased()
                guard (defaults && defaultSections.contains(key)) || everything || wanted.contains(key) else { continue }
                text += "# \(name)\r\n" + lines.map { "\($0.0):\($0.1)" }.joined(separator: "\r\n") + "\r\n\r\n"
            }
            return .string(text)
        }
    }

    static func sections(_ server: ServerContext) throws -> [(String, [(String, String)])] {
        let engine = server.engine
        let names = engine.collectionNames()
        var items = 0
        for n in names { items += (try? engine.collection(n)?.itemCount()) ?? 0 }
        let rss = residentBytes()
        let indexing = engine.indexingStatistics()
        let heap = heapBytes()
        let peak = max(server.peakMemory.load(ordering: .relaxed), heap)
        server.peakMemory.store(peak, ordering: .relaxed)
        let stats = server.stats
        let uptime = Date().timeIntervalSince(server.startedAt)
        let adminJobs = server.admin.counts
        let writeFailure = engine.writeFailure  // read once: the three lines agree
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        func seconds(_ t: timeval) -> String { String(format: "%.6f", Double(t.tv_sec) + Double(t.tv_usec) / 1e6) }
        return [
            ("Server", [
                ("redis_version", ServerCommands.redisCompatibleVersion), ("lookalike_version", ServerCommands.version),
                ("redis_mode", "standalone"), ("os", "Linux"), ("arch_bits", "64"), ("multiplexing_api", "epoll"),
                ("process_id", String(getpid())), ("run_id", server.runId),
                ("tcp_port", String(server.boundPort.load(ordering: .relaxed))),
                ("uptime_in_seconds", String(Int(uptime))), ("uptime_in_days", String(Int(uptime / 86400))),
                ("hz", "10"), ("executable", CommandLine.arguments.first ?? ""), ("config_file", server.options.configFile.map { URL(fileURLWithPath: $0).standardizedFileURL.path } ?? ""),
                ("lookalike_search_threads", String(server.options.searchThreads)),
                ("lookalike_admin_threads", String(server.admin.threads)),
                ("lookalike_admin_jobs_running", String(adminJobs.running)),
                ("lookalike_admin_jobs_queued", String(adminJobs.queued)),
            ]),
            ("Clients", [
                ("connected_clients", String(server.connectedClients.load(ordering: .relaxed))),
                ("maxclients", String(server.options.maxClients)),
                ("blocked_clients", "0"), ("tracking_clients", "0"), ("pubsub_clients", String(server.pubsub.counts.clients)), ("watching_clients", "0"),
                ("clients_in_timeout_table", "0"),
            ]),
            ("Memory", [
                ("used_memory", String(heap)), ("used_memory_human", ServerCommands.human(heap)),
                ("used_memory_rss", String(rss)), ("used_memory_rss_human", ServerCommands.human(rss)),
                ("used_memory_peak", String(peak)), ("used_memory_peak_human", ServerCommands.human(peak)),
                ("maxmemory", "0"), ("maxmemory_human", "0B"), ("maxmemory_policy", "noeviction"),
                ("mem_fragmentation_ratio", heap > 0 ? String(format: "%.2f", Double(rss) / Double(heap)) : "0"),
                ("mem_allocator", "libc"), ("lmdb_used_bytes", String(engine.storageBytes())),
            ] + ServerCommands.memoryInfoLines(engine.memoryTotals())),
            ("Persistence", [
                ("loading", "0"), ("async_loading", "0"), ("rdb_changes_since_last_save", "0"),
                ("rdb_bgsave_in_progress", server.snapshots.isRunning ? "1" : "0"), ("rdb_last_save_time", String(server.lastSave.load(ordering: .relaxed))),
                ("rdb_last_bgsave_status", "ok"), ("aof_enabled", "0"), ("aof_rewrite_in_progress", "0"),
                ("lookalike_sync", server.options.engine.storage.sync.rawValue),
                ("lookalike_data_dir", server.options.dataDirectory),
                ("lookalike_seal_threshold", String(server.options.engine.sealThreshold)),
                ("lookalike_unindexed_items", String(indexing.unindexed)),
                ("lookalike_linked_items", String(indexing.linked)),
                ("lookalike_linked_items_drained", String(indexing.drained)),
                ("lookalike_linked_items_caught_up", String(indexing.caughtUp)),
                ("lookalike_write_throttled_seconds", String(format: "%.3f", indexing.throttledSeconds)),
                ("lookalike_write_throttled_batches", String(indexing.throttledBatches)),
                ("lookalike_writes_failing", writeFailure == nil ? "0" : "1"),
                ("lookalike_write_failure_since", writeFailure.map { String(Int($0.since.timeIntervalSince1970)) } ?? "0"),
                ("lookalike_write_failure", writeFailure.map { RESPValue.oneLine(String($0.error.prefix(300))) } ?? ""),
            ] + server.snapshots.infoLines()),
            ("Stats", [
                ("total_connections_received", String(server.totalConnections.load(ordering: .relaxed))),
                ("total_commands_processed", String(server.totalCommands.load(ordering: .relaxed))),
                ("instantaneous_ops_per_sec", String(stats.opsPerSecond)),
                ("rejected_connections", String(server.rejectedConnections.load(ordering: .relaxed))),
                ("expired_keys", "0"), ("evicted_keys", "0"),
                ("keyspace_hits", String(stats.keyspaceHits.load(ordering: .relaxed))),
                ("keyspace_misses", String(stats.keyspaceMisses.load(ordering: .relaxed))),
                ("pubsub_channels", String(server.pubsub.counts.channels)), ("pubsub_patterns", String(server.pubsub.counts.patterns)),
                ("total_error_replies", String(stats.totalErrors)),
                ("acl_access_denied_auth", String(stats.authFailures.load(ordering: .relaxed))),
                ("client_output_buffer_limit_disconnections", String(server.outputLimitDisconnections.load(ordering: .relaxed))),
                ("client_timeout_disconnections", String(server.timedOutClients.load(ordering: .relaxed))),
                ("client_protocol_errors", String(server.protocolErrors.load(ordering: .relaxed))),
                ("sync_full", String(server.replication.replicas.fullSyncs.load(ordering: .relaxed))),
                ("sync_partial_ok", String(server.replication.replicas.partialSyncs.load(ordering: .relaxed))),
                ("sync_partial_err", String(server.replication.replicas.refusedPartialSyncs.load(ordering: .relaxed))),
                ("lookalike_items", String(items)),
            ]),
            ("Replication", server.replication.infoLines(server: server)),
            ("CPU", [
                ("used_cpu_sys", seconds(usage.ru_stime)), ("used_cpu_user", seconds(usage.ru_utime)),
            ]),
            ("Commandstats", stats.commandLines()),
            ("Errorstats", stats.errorLines()),
            ("Keyspace", names.isEmpty ? [] : [("db0", "keys=\(names.count),expires=0,avg_ttl=0")]),
        ]
    }

    static func residentBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Bytes the allocator has handed out (Redis's used_memory), distinct from RSS.
    static func heapBytes() -> Int {
        let m = mallinfo2()
        return Int(m.uordblks) + Int(m.hblkhd)
    }
}
