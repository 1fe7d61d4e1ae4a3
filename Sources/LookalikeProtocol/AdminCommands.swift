// AdminCommands: what clients and tools send to look at and tune a server: CLIENT, CONFIG,
// SLOWLOG, LATENCY, MONITOR, TIME, LASTSAVE (ROLE: ReplicationCommands). Redis's syntax and reply shapes, so
// redis-cli, redis-benchmark, redis_exporter and client libraries work unchanged.
// Threads: all run on the connection's event loop (cheap); the registries they read are
// thread-safe (ClientRegistry, CommandStats).
import Foundation
import LookalikeEngine
import NIOCore

enum AdminCommands {
    static let specs: [CommandSpec] = [
        CommandSpec(name: "client", arity: -2, ordering: .connection, flags: ["fast"], firstKey: 0, lastKey: 0, run: client),
        CommandSpec(name: "config", arity: -2, ordering: .connection, flags: ["admin"], firstKey: 0, lastKey: 0, run: config),
        CommandSpec(name: "slowlog", arity: -2, ordering: .connection, flags: ["admin"], firstKey: 0, lastKey: 0, run: slowlog),
        CommandSpec(name: "latency", arity: -2, ordering: .connection, flags: ["admin"], firstKey: 0, lastKey: 0, run: latency),
        CommandSpec(name: "monitor", arity: 1, ordering: .connection, flags: ["admin"], firstKey: 0, lastKey: 0, run: monitor),
        CommandSpec(name: "time", arity: 1, ordering: .connection, flags: ["fast"], firstKey: 0, lastKey: 0, run: time),
        CommandSpec(name: "lastsave", arity: 1, ordering: .connection, flags: ["fast"], firstKey: 0, lastKey: 0, run: {
            .now(.integer($0.server.lastSave.load(ordering: .relaxed)))
        }),
    ]

    // MARK: CLIENT

    static func client(_ inv: Invocation) throws -> Reply {
        let c = inv.connection
        switch inv.keyword(1) {
        case "SETNAME":
            guard inv.count == 3 else { throw CommandError("wrong number of arguments for 'client|setname' command") }
            let name = inv.string(2)
            guard !name.unicodeScalars.contains(where: { $0.value <= 32 || $0.value == 127 }) else {
                throw CommandError("Client names cannot contain spaces, newlines or special characters.")
            }
            c.name = name.isEmpty ? nil : name
            return .now(.ok)
        case "GETNAME":
            return .now(c.name.map { .string($0) } ?? .null)
        case "ID":
            return .now(.integer(c.id))
        case "SETINFO":
            guard inv.count == 4 else { throw CommandError("wrong number of arguments for 'client|setinfo' command") }
            switch inv.keyword(2) {
            case "LIB-NAME": c.libraryName = inv.string(3)
            case "LIB-VER": c.libraryVersion = inv.string(3)
            default: throw CommandError("Unrecognized option '\(inv.string(2).prefix(32))'")
            }
            return .now(.ok)
        case "INFO":
            let line = inv.server.clients.record(c.id)?.line(now: Date()) ?? "id=\(c.id)"
            return .now(.string(line + "\n"))
        case "LIST":
            return .now(.string(try clientList(inv).map { $0.line(now: Date()) + "\n" }.joined()))
        case "KILL":
            return .now(try clientKill(inv))
        case "NO-EVICT", "NO-TOUCH":
            guard inv.count == 3, ["ON", "OFF"].contains(inv.keyword(2)) else { throw CommandError.syntax() }
            return .now(.ok)  // nothing is evicted, and keys have no access times
        case "REPLY":
            guard inv.count == 3, inv.keyword(2) == "ON" else {
                throw CommandError("CLIENT REPLY OFF and SKIP are not supported: every command is answered")
            }
            return .now(.ok)
        case "GETREDIR":
            return .now(.integer(-1))
        default:
            throw CommandError("unknown subcommand '\(inv.string(1).prefix(32))'. Try CLIENT LIST, KILL, INFO, ID, SETNAME, GETNAME, SETINFO, NO-EVICT, NO-TOUCH, REPLY, GETREDIR.")
        }
    }

    /// CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id …]
    static func clientList(_ inv: Invocation) throws -> [ClientRecord] {
        var records = inv.server.clients.all()
        var i = 2
        while i < inv.count {
            switch inv.keyword(i) {
            case "TYPE":
                guard let kind = ClientKind(typeName: inv.keyword(i + 1)) else {
                    throw CommandError("Unknown client type '\(inv.string(i + 1).prefix(32))'")
                }
                records = records.filter { $0.kind == kind }
                i += 2
            case "ID":
                let ids = try (i + 1..<inv.count).map { try inv.integer($0) }
                guard !ids.isEmpty else { throw CommandError.syntax() }
                records = records.filter { ids.contains($0.id) }
                i = inv.count
            default:
                throw CommandError.syntax()
            }
        }
        return records
    }

    /// CLIENT KILL addr:port (old form) or CLIENT KILL [ID id] [ADDR a] [LADDR a] [TYPE t]
    /// [USER u] [SKIPME yes|no] [MAXAGE s]: closes the matching connections.
    static func clientKill(_ inv: Invocation) throws -> RESPValue {
        let me = inv.connection.id
        let all = inv.server.clients.all()
        if inv.count == 3 {
            guard let target = all.first(where: { $0.address == inv.string(2) }) else { throw CommandError("No such client") }
            target.channel.close(promise: nil)
            return .ok
        }
        var matching = all
        var skipMe = true
        var i = 2
        while i < inv.count {
            guard i + 1 < inv.count else { throw CommandError.syntax() }
            let value = inv.string(i + 1)
            switch inv.keyword(i) {
            case "ID": let id = try inv.integer(i + 1); matching = matching.filter { $0.id == id }
            case "ADDR": matching = matching.filter { $0.address == value }
            case "LADDR": matching = matching.filter { $0.localAddress == value }
            case "USER": if value != "default" { matching = [] }
            case "TYPE":
                guard let kind = ClientKind(typeName: inv.keyword(i + 1)) else {
                    throw CommandError("Unknown client type '\(value.prefix(32))'")
                }
                matching = matching.filter { $0.kind == kind }
            case "SKIPME":
                guard ["YES", "NO"].contains(inv.keyword(i + 1)) else { throw CommandError.syntax() }
                skipMe = inv.keyword(i + 1) == "YES"
            case "MAXAGE":
                let age = try inv.integer(i + 1)
                let now = Date()
                matching = matching.filter { now.timeIntervalSince($0.createdAt) >= Double(age) }
            default: throw CommandError.syntax()
            }
            i += 2
        }
        if skipMe { matching = matching.filter { $0.id != me } }
        for r in matching { r.channel.close(promise: nil) }
        return .integer(matching.count)
    }

    // MARK: CONFIG

    /// One setting as CONFIG GET names it, and how CONFIG SET changes it (nil: only at start).
    struct Setting {
        let name: String
        let get: (ServerContext) -> String
        let set: ((ServerContext, String) throws -> Void)?
    }

    static func settings() -> [Setting] {
        func fixed(_ name: String, _ get: @escaping (ServerContext) -> String) -> Setting { Setting(name: name, get: get, set: nil) }
        func slowlog(_ name: String, _ key: WritableKeyPath<CommandStats.SlowLogSettings, Int>, minimum: Int) -> Setting {
            Setting(name: name, get: { s in String(s.stats.slowLogSettings.withLock { $0[keyPath: key] }) }, set: { s, v in
                guard let n = Int(v), n >= minimum else { throw CommandError("argument couldn't be parsed into an integer") }
                s.stats.slowLogSettings.withLock { $0[keyPath: key] = n }
            })
        }
        // Accepted so tools that set them work; Lookalike commits every write whatever they say.
        func noop(_ name: String, _ value: String, allowed: @escaping (String) -> Bool) -> Setting {
            Setting(name: name, get: { _ in value }, set: { _, v in
                guard allowed(v) else { throw CommandError("'\(name)' cannot be '\(v.prefix(32))' here: Lookalike commits every acknowledged write to LMDB") }
            })
        }
        return [
            fixed("port") { String($0.boundPort.load(ordering: .relaxed)) },
            fixed("bind") { $0.options.host },
            fixed("databases") { _ in "1" },
            fixed("maxclients") { String($0.options.maxClients) },
            fixed("timeout") { String($0.options.idleTimeoutSeconds) },
            fixed("maxmemory") { _ in "0" },
            fixed("maxmemory-policy") { _ in "noeviction" },
            noop("save", "", allowed: { _ in true }),
            noop("appendonly", "no", allowed: { ["yes", "no"].contains($0.lowercased()) }),
            fixed("appendfsync") { $0.options.engine.storage.sync == .full ? "always" : "no" },
            fixed("dir") { $0.options.dataDirectory },
            fixed("dbfilename") { _ in "data.mdb" },
            fixed("requirepass") { _ in "" },
            fixed("protected-mode") { _ in "no" },
            fixed("tcp-keepalive") { _ in "0" },
            fixed("loglevel") { _ in "notice" },
            fixed("proto-max-bulk-len") { String($0.options.protocolLimits.maxBulkBytes) },
            fixed("client-query-buffer-limit") { String($0.options.protocolLimits.maxFrameBytes) },
            fixed("client-output-buffer-limit") { "normal \($0.options.clientOutputBufferLimit) 0 0 replica 0 0 0 pubsub 0 0 0" },
            fixed("replica-read-only") { _ in "yes" },
            fixed("slave-read-only") { _ in "yes" },
            slowlog("slowlog-log-slower-than", \.slowerThanMicros, minimum: -1),
            slowlog("slowlog-max-len", \.maxLength, minimum: 0),
            fixed("lookalike-seal-threshold") { String($0.options.engine.sealThreshold) },
            fixed("lookalike-max-count") { String($0.options.engine.maxK) },
            fixed("lookalike-max-ef-search") { String($0.options.engine.maxEfSearch) },
            fixed("lookalike-default-index") { $0.options.defaultIndex },
            fixed("lookalike-default-metric") { $0.options.defaultMetric.rawValue },
            fixed("lookalike-sync") { $0.options.engine.storage.sync.rawValue },
            fixed("lookalike-max-pipeline") { String($0.options.maxPipeline) },
            fixed("lookalike-max-filter-bytes") { String($0.options.filterLimits.maxBytes) },
            fixed("lookalike-max-filter-depth") { String($0.options.filterLimits.maxDepth) },
            fixed("lookalike-threads") { String($0.options.searchThreads) },
            fixed("lookalike-admin-threads") { String($0.options.adminThreads) },
        ]
    }

    static func config(_ inv: Invocation) throws -> Reply {
        switch inv.keyword(1) {
        case "GET":
            guard inv.count >= 3 else { throw CommandError("wrong number of arguments for 'config|get' command") }
            let patterns = (2..<inv.count).map { Glob(Array(inv.string($0).lowercased().utf8)) }
            let found = settings().filter { s in patterns.contains { $0.matches(Array(s.name.utf8)) } }
            return .now(.map(found.map { (.string($0.name), .string($0.get(inv.server))) }))
        case "SET":
            guard inv.count >= 4, inv.count % 2 == 0 else { throw CommandError("wrong number of arguments for 'config|set' command") }
            let all = settings()
            // Every pair is checked before any is applied, as Redis does.
            var changes: [(Setting, String)] = []
            for i in stride(from: 2, to: inv.count, by: 2) {
                let name = inv.string(i).lowercased()
                guard let s = all.first(where: { $0.name == name }) else {
                    throw CommandError("Unknown option or number of arguments for CONFIG SET - '\(name.prefix(64))'")
                }
                guard s.set != nil else {
                    throw CommandError("CONFIG SET failed (possibly related to argument '\(name)') - it can be set only at start: use its flag (Docs/server.md)")
                }
                changes.append((s, inv.string(i + 1)))
            }
            for (s, value) in changes { try s.set!(inv.server, value) }
            // Remembered for CONFIG REWRITE; the settings accepted only for tools (save,
            // appendonly) are no flag of ours and are not written.
            inv.server.changedSettings.withLock { $0.formUnion(changes.map(\.0.name).filter { !["save", "appendonly"].contains($0) }) }
            return .now(.ok)
        case "RESETSTAT":
            return .now(.ok)
        case "REWRITE":
            return .now(try rewrite(inv.server))
        default:
            throw CommandError("unknown subcommand '\(inv.string(1).prefix(32))'. Try CONFIG GET, SET, RESETSTAT, REWRITE.")
        }
    }

    /// CONFIG REWRITE: the settings CONFIG SET changed, written into the --config file
    /// (ConfigFile.rewrite keeps its comments and order), as Redis does.
    static func rewrite(_ server: ServerContext) throws -> RESPValue {
        guard let path = server.options.configFile else { throw CommandError("The server is running without a config file") }
        let changed = server.changedSettings.withLock { $0 }
        let values = settings().filter { changed.contains($0.name) }.map { (flag: ConfigFile.flag(for: $0.name), value: $0.get(server)) }
        do { try ConfigFile.rewrite(path, values: values) } catch {
            throw CommandError("Rewriting config file: \(error)")
        }
        return .ok
    }

    // MARK: SLOWLOG, LATENCY, MONITOR, TIME

    static func slowlog(_ inv: Invocation) throws -> Reply {
        let stats = inv.server.stats
        switch inv.keyword(1) {
        case "GET":
            var count = 10
            if inv.count > 2 {
                count = try inv.integer(2)
                guard count >= -1 else { throw CommandError("count should be greater than or equal to -1") }
                if count == -1 { count = .max }
            }
            return .now(.array(stats.slowLogEntries(count).map { e in
                .array([.integer(e.id), .integer(e.timestamp), .integer(e.micros), .array(e.arguments.map { .bulk($0) }),
                        .string(e.client), .string(e.name)])
            }))
        case "LEN": return .now(.integer(stats.slowLogLength))
        case "RESET": stats.resetSlowLog(); return .now(.ok)
        case "HELP": return .now(.array(["SLOWLOG GET [count]", "SLOWLOG LEN", "SLOWLOG RESET"].map { .string($0) }))
        default: throw CommandError("unknown subcommand '\(inv.string(1).prefix(32))'. Try SLOWLOG HELP.")
        }
    }

    /// Latency monitoring is not kept (the slow log and INFO commandstats time every command):
    /// every event list is empty.
    static func latency(_ inv: Invocation) throws -> Reply {
        switch inv.keyword(1) {
        case "LATEST": return .now(.array([]))
        case "HISTORY": return .now(.array([]))
        case "RESET": return .now(.integer(0))
        case "DOCTOR": return .now(.string("Lookalike keeps no latency events; see SLOWLOG GET and INFO commandstats.\n"))
        case "HELP": return .now(.array(["LATENCY LATEST", "LATENCY HISTORY event", "LATENCY RESET", "LATENCY DOCTOR"].map { .string($0) }))
        default: throw CommandError("unknown subcommand '\(inv.string(1).prefix(32))'. Try LATENCY HELP.")
        }
    }

    /// MONITOR: from now on this connection receives every command the server gets.
    static func monitor(_ inv: Invocation) throws -> Reply {
        inv.server.clients.setMonitor(inv.connection.id)
        return .now(.ok)
    }

    static func time(_ inv: Invocation) throws -> Reply {
        var now = timeval()
        gettimeofday(&now, nil)
        return .now(.array([.string(String(now.tv_sec)), .string(String(now.tv_usec))]))
    }
}
