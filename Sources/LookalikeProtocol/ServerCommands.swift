// ServerCommands: what clients send around the vector commands: connection setup (HELLO, AUTH,
// CLIENT, SELECT), introspection (COMMAND, INFO, TYPE, KEYS, SCAN, MEMORY), keyspace (DEL,
// FLUSHALL, EXISTS, DBSIZE), persistence (SAVE, BGSAVE [TO folder]: Snapshots.swift, DEBUG RELOAD) and SHUTDOWN/QUIT.
// Threads: parsing on the event loop; engine work through `offload` (the search pool) or
// `task`; SAVE, BGSAVE, DEBUG RELOAD and SHUTDOWN through `admin` (the admin executor).
import Foundation
import LookalikeEngine
import NIOCore

enum ServerCommands {
    static let version = "0.1.0"
    /// What HELLO and INFO report as the Redis version: the vector-set vocabulary of Redis 8.
    static let redisCompatibleVersion = "8.0.0"

    static let specs: [CommandSpec] = [
        CommandSpec(name: "ping", arity: -1, ordering: .connection, flags: ["fast"], firstKey: 0, lastKey: 0, run: ping),
        CommandSpec(name: "echo", arity: 2, ordering: .connection, flags: ["fast"], firstKey: 0, lastKey: 0, run: { .now(.bulk($0.bytes(1))) }),
        CommandSpec(name: "hello", arity: -1, ordering: .connection, flags: ["noauth", "fast"], firstKey: 0, lastKey: 0, run: hello),
        CommandSpec(name: "auth", arity: -2, ordering: .connection, flags: ["noauth", "fast"], firstKey: 0, lastKey: 0, run: auth),
        CommandSpec(name: "select", arity: 2, ordering: .connection, flags: ["fast"], firstKey: 0, lastKey: 0, run: select),
        CommandSpec(name: "command", arity: -1, ordering: .connection, flags: [], firstKey: 0, lastKey: 0, run: command),
        CommandSpec(name: "quit", arity: -1, ordering: .connection, flags: ["noauth", "fast"], firstKey: 0, lastKey: 0, run: { _ in .now(.ok) }),
        InfoCommand.spec,
        CommandSpec(name: "dbsize", arity: 1, ordering: .read, flags: ["readonly", "fast"], firstKey: 0, lastKey: 0, run: { .now(.integer($0.engine.collectionNames().count)) }),
        CommandSpec(name: "exists", arity: -2, ordering: .read, flags: ["readonly", "fast"], firstKey: 1, lastKey: -1, run: exists),
        CommandSpec(name: "type", arity: 2, ordering: .read, flags: ["readonly", "fast"], firstKey: 1, lastKey: 1, run: type),
        CommandSpec(name: "keys", arity: 2, ordering: .read, flags: ["readonly"], firstKey: 0, lastKey: 0, run: keys),
        CommandSpec(name: "scan", arity: -2, ordering: .read, flags: ["readonly"], firstKey: 0, lastKey: 0, run: scan),
        CommandSpec(name: "del", arity: -2, ordering: .exclusive, flags: ["write"], firstKey: 1, lastKey: -1, run: del),
        CommandSpec(name: "unlink", arity: -2, ordering: .exclusive, flags: ["write", "fast"], firstKey: 1, lastKey: -1, run: del),
        CommandSpec(name: "flushall", arity: -1, ordering: .exclusive, flags: ["write"], firstKey: 0, lastKey: 0, run: flushall),
        CommandSpec(name: "flushdb", arity: -1, ordering: .exclusive, flags: ["write"], firstKey: 0, lastKey: 0, run: flushall),
        CommandSpec(name: "save", arity: -1, ordering: .exclusive, flags: [], firstKey: 0, lastKey: 0, run: save),
        CommandSpec(name: "bgsave", arity: -1, ordering: .exclusive, flags: [], firstKey: 0, lastKey: 0, run: bgsave),
        CommandSpec(name: "debug", arity: -2, ordering: .exclusive, flags: [], firstKey: 0, lastKey: 0, run: debug),
        CommandSpec(name: "memory", arity: -2, ordering: .read, flags: ["readonly"], firstKey: 2, lastKey: 2, run: memory),
        CommandSpec(name: "shutdown", arity: -1, ordering: .exclusive, flags: [], firstKey: 0, lastKey: 0, run: shutdown),
        // Transactions: CommandHandler queues and runs them; these answer only when out of place.
        CommandSpec(name: "multi", arity: 1, ordering: .connection, flags: ["fast"], firstKey: 0, lastKey: 0, run: { _ in .now(.ok) }),
        CommandSpec(name: "exec", arity: 1, ordering: .connection, flags: [], firstKey: 0, lastKey: 0, run: { _ in throw CommandError("EXEC without MULTI") }),
        CommandSpec(name: "discard", arity: 1, ordering: .connection, flags: ["fast"], firstKey: 0, lastKey: 0, run: { _ in throw CommandError("DISCARD without MULTI") }),
        CommandSpec(name: "watch", arity: -2, ordering: .connection, flags: ["fast"], firstKey: 1, lastKey: -1, run: { _ in
            throw CommandError("WATCH is not supported: a transaction cannot be made conditional on keys (see Docs/protocol.md)")
        }),
        CommandSpec(name: "unwatch", arity: 1, ordering: .connection, flags: ["fast"], firstKey: 0, lastKey: 0, run: { _ in .now(.ok) }),
    ]

    static func ping(_ inv: Invocation) throws -> Reply {
        switch inv.count {
        case 1: return .now(.simple("PONG"))
        case 2: return .now(.bulk(inv.bytes(1)))
        default: throw CommandError("wrong number of arguments for 'ping' command")
        }
    }

    /// HELLO [protover [AUTH username password] [SETNAME clientname]]
    static func hello(_ inv: Invocation) throws -> Reply {
        var version = inv.connection.protocolVersion
        var i = 1
        if inv.count > 1 {
            guard let v = Int(inv.string(1)) else { throw CommandError("Protocol version is not an integer or out of range") }
            guard v == 2 || v == 3 else { throw CommandError(code: "NOPROTO", "unsupported protocol version") }
            version = v
            i = 2
        }
        // The whole command is parsed before AUTH is tried: a syntax error after AUTH must
        // leave the connection as it was.
        var name: String?
        var credentials: (user: String, password: String)?
        while i < inv.count {
            switch inv.keyword(i) {
            case "AUTH":
                guard i + 2 < inv.count else { throw CommandError.syntax() }
                credentials = (inv.string(i + 1), inv.string(i + 2))
                i += 3
            case "SETNAME":
                guard i + 1 < inv.count else { throw CommandError.syntax() }
                name = inv.string(i + 1)
                i += 2
            default:
                throw CommandError.syntax()
            }
        }
        if let credentials { try authenticate(inv, user: credentials.user, password: credentials.password) }
        if inv.server.options.password != nil && !inv.connection.authenticated {
            throw CommandError(code: "NOAUTH", "HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
        }
        if let name { inv.connection.name = name }
        inv.connection.protocolVersion = version
        return .now(.map([
            (.string("server"), .string("redis")),
            (.string("version"), .string(redisCompatibleVersion)),
            (.string("proto"), .integer(version)),
            (.string("id"), .integer(inv.connection.id)),
            (.string("mode"), .string("standalone")),
            (.string("role"), .string(inv.server.replication.isReplica ? "replica" : "master")),
            (.string("modules"), .array([])),
        ]))
    }

    static func auth(_ inv: Invocation) throws -> Reply {
        guard inv.count <= 3 else { throw CommandError.syntax() }
        let user = inv.count == 3 ? inv.string(1) : "default"
        try authenticate(inv, user: user, password: inv.string(inv.count - 1))
        return .now(.ok)
    }

    static func authenticate(_ inv: Invocation, user: String, password: String) throws {
        guard let expected = inv.server.options.password else {
            throw CommandError("AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
        }
        // Compare in constant time: the password is a secret.
        let a = Array(password.utf8), b = Array(expected.utf8)
        var diff = a.count ^ b.count
        for i in 0..<max(a.count, b.count) { diff |= Int((i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)) }
        guard user == "default", diff == 0 else {
            inv.server.stats.noteAuthFailure(client: inv.connection.remote)
            throw CommandError(code: "WRONGPASS", "invalid username-password pair or user is disabled.")
        }
        inv.connection.authenticated = true
    }

    static func select(_ inv: Invocation) throws -> Reply {
        guard let db = Int(inv.string(1)) else { throw CommandError.notInteger() }
        guard db == 0 else { throw CommandError("DB index is out of range") }
        return .now(.ok)
    }

    static func command(_ inv: Invocation) throws -> Reply {
        func entry(_ s: CommandSpec) -> RESPValue {
            .array([.string(s.name), .integer(s.arity), .array(s.flags.map { .simple($0) }),
                    .integer(s.firstKey), .integer(s.lastKey), .integer(s.firstKey > 0 ? 1 : 0)])
        }
        let all = CommandTable.commands.values.sorted { $0.name < $1.name }
        guard inv.count > 1 else { return .now(.array(all.map(entry))) }
        switch inv.keyword(1) {
        case "COUNT": return .now(.integer(all.count))
        case "DOCS":
            let wanted = inv.count > 2 ? (2..<inv.count).map { inv.string($0).lowercased() } : all.map(\.name)
            return .now(.map(wanted.compactMap { name in CommandDocs.entry(name).map { (.string(name), $0) } }))
        case "INFO":
            return .now(.array((2..<inv.count).map { i in
                CommandTable.commands[inv.string(i).lowercased()].map(entry) ?? .null
            }))
        case "LIST": return .now(.array(all.map { .string($0.name) }))
        default: throw CommandError("unknown subcommand '\(inv.string(1).prefix(32))'. Try COMMAND COUNT, DOCS, INFO, LIST.")
        }
    }

    static func exists(_ inv: Invocation) throws -> Reply {
        .now(.integer((1..<inv.count).filter { inv.server.collection(inv.string($0)) != nil }.count))
    }

    static func type(_ inv: Invocation) throws -> Reply {
        .now(.simple(inv.server.collection(inv.string(1)) == nil ? "none" : "vectorset"))
    }

    /// KEYS pattern: matched off the event loop (many names, long patterns).
    static func keys(_ inv: Invocation) throws -> Reply {
        let pattern = Glob(inv.bytes(1))
        let engine = inv.engine
        return inv.offload { .array(pattern.filter(engine.collectionNames()).map { .string($0) }) }
    }

    /// SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]: collections are few, so one pass
    /// returns them all with cursor 0.
    static func scan(_ inv: Invocation) throws -> Reply {
        guard Int(inv.string(1)) != nil else { throw CommandError("invalid cursor") }
        var pattern: [UInt8] = Array("*".utf8)
        var typeFilter: String?
        var i = 2
        while i < inv.count {
            guard i + 1 < inv.count else { throw CommandError.syntax() }
            switch inv.keyword(i) {
            case "MATCH": pattern = inv.bytes(i + 1)
            case "COUNT":
                guard try inv.integer(i + 1) >= 1 else { throw CommandError.syntax() }
            case "TYPE": typeFilter = inv.string(i + 1).lowercased()
            default: throw CommandError.syntax()
            }
            i += 2
        }
        let (glob, engine, vectorSets) = (Glob(pattern), inv.engine, typeFilter == nil || typeFilter == "vectorset")
        return inv.offload {
            let names = vectorSets ? glob.filter(engine.collectionNames()) : []
            return .array([.string("0"), .array(names.map { .string($0) })])
        }
    }

    static func del(_ inv: Invocation) throws -> Reply {
        let names = (1..<inv.count).map { inv.string($0) }
        let engine = inv.engine
        return inv.task {
            var dropped = 0
            for n in names where try await engine.dropCollection(n) { dropped += 1 }
            return .integer(dropped)
        }
    }

    /// FLUSHALL / FLUSHDB [ASYNC | SYNC]: anything else is refused before anything is dropped.
    static func flushall(_ inv: Invocation) throws -> Reply {
        guard inv.count == 1 || (inv.count == 2 && ["ASYNC", "SYNC"].contains(inv.keyword(1))) else {
            throw CommandError.syntax()
        }
        let engine = inv.engine
        return inv.task {
            for n in engine.collectionNames() { try await engine.dropCollection(n) }
            return .ok
        }
    }

    /// SAVE: seal every mutable segment, so a restart replays nothing.
    static func save(_ inv: Invocation) throws -> Reply {
        if let path = try SnapshotCommands.target(inv) { return SnapshotCommands.save(inv, to: path) }
        let engine = inv.engine
        let server = inv.server
        return inv.admin {
            try engine.persist()
            server.lastSave.store(Int(Date().timeIntervalSince1970), ordering: .relaxed)
            return .ok
        }
    }

    static func bgsave(_ inv: Invocation) throws -> Reply {
        if let path = try SnapshotCommands.target(inv) { return try SnapshotCommands.bgsave(inv, to: path) }
        let engine = inv.engine
        let server = inv.server
        server.admin.submit(.long) {
            guard (try? engine.persist()) != nil else { return }
            server.lastSave.store(Int(Date().timeIntervalSince1970), ordering: .relaxed)
        }
        return .now(.simple("Background saving started"))
    }

    static func debug(_ inv: Invocation) throws -> Reply {
        switch inv.keyword(1) {
        case "RELOAD":
            let server = inv.server
            return inv.admin {
                try server.reloadEngine()
                return .ok
            }
        default:
            throw CommandError("DEBUG supports only RELOAD")
        }
    }

    static func memory(_ inv: Invocation) throws -> Reply {
        switch inv.keyword(1) {
        case "USAGE":
            guard inv.count >= 3 else { throw CommandError.syntax() }
            guard let c = inv.server.collection(inv.string(2)) else { return .now(.null) }
            return inv.offload { .integer(try c.memoryUsage().total) }
        default:
            throw CommandError("MEMORY supports only USAGE")
        }
    }

    /// VINFO's memory lines: the total (MEMORY USAGE), its heap and memory-mapped parts, and
    /// each component's bytes (SegmentMemory.swift).
    static func memoryFields(_ m: MemoryUsage) -> [(RESPValue, RESPValue)] {
        [(.simple("memory-bytes"), .integer(m.total)), (.simple("memory-heap-bytes"), .integer(m.heapTotal)),
         (.simple("memory-mapped-bytes"), .integer(m.mappedTotal))]
            + MemoryComponent.allCases.map { (.simple("memory-\($0.rawValue)-bytes"), .integer(m[$0])) }
    }

    /// INFO memory's lines: the same over every collection, LMDB as the whole environment
    /// (`total`, not to be confused with `used_memory`, the allocator's whole heap).
    static func memoryInfoLines(_ m: MemoryUsage) -> [(String, String)] {
        [("lookalike_memory_total_bytes", String(m.total)), ("lookalike_memory_total_heap_bytes", String(m.heapTotal)),
         ("lookalike_memory_total_mapped_bytes", String(m.mappedTotal))]
            + MemoryComponent.allCases.map {
                ("lookalike_memory_\($0.rawValue.replacingOccurrences(of: "-", with: "_"))_bytes", String(m[$0]))
            }
    }

    static func shutdown(_ inv: Invocation) throws -> Reply {
        let words = (1..<max(1, inv.count)).map { inv.keyword($0) }
        guard words.allSatisfy({ ["SAVE", "NOSAVE", "NOW", "FORCE"].contains($0) }) else { throw CommandError.syntax() }
        let save = words.contains("SAVE")
        let server = inv.server
        // SAVE builds indexes: never on the event loop. A control job: it does not wait for a
        // compaction's place on the admin executor (AdminJobs).
        return inv.admin(.control) {
            if save { try server.engine.persist() }
            server.logger.info("SHUTDOWN requested by a client")
            server.shutdownHook.withLock { $0 }?()
            return .ok
        }
    }

    static func human(_ bytes: Int) -> String {
        let units = ["B", "K", "M", "G", "T"]
        var v = Double(bytes), u = 0
        while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
        return String(format: "%.2f%@", v, units[u])
    }
}
