// ReplicationCommands: REPLICAOF / SLAVEOF, REPLCONF, PSYNC, SYNC, WAIT and ROLE.
// The roles and their state are Replication's; the primary's side of a replica's connection is
// ReplicaFeeder's, the replica's side ReplicaLink's.
// Two commands are not answered in order like the others (`takesOver`, called by
// CommandHandler): REPLCONF ACK (never answered, as in Redis) and PSYNC (answered by the
// snapshot and the stream, which the connection carries from then on).
// Threads: parsing on the event loop; REPLICAOF stops and starts a thread, so it runs on the
// admin executor as a control job (never behind a compaction: AdminJobs); WAIT polls on the
// event loop.
import Foundation
import LookalikeEngine
import NIOCore

enum ReplicationCommands {
    static let specs: [CommandSpec] = [
        CommandSpec(name: "replicaof", arity: 3, ordering: .exclusive, flags: ["admin", "noscript"], firstKey: 0, lastKey: 0, run: replicaOf),
        CommandSpec(name: "slaveof", arity: 3, ordering: .exclusive, flags: ["admin", "noscript"], firstKey: 0, lastKey: 0, run: replicaOf),
        CommandSpec(name: "replconf", arity: -1, ordering: .connection, flags: ["admin", "noscript"], firstKey: 0, lastKey: 0, run: replconf),
        CommandSpec(name: "psync", arity: 3, ordering: .connection, flags: ["admin", "noscript"], firstKey: 0, lastKey: 0, run: { _ in
            throw CommandError("PSYNC is answered only on a replica's connection, after its handshake")
        }),
        CommandSpec(name: "sync", arity: 1, ordering: .connection, flags: ["admin", "noscript"], firstKey: 0, lastKey: 0, run: { _ in
            throw CommandError("SYNC is not supported: replicas send PSYNC <replid> <offset> (PSYNC ? -1 for a full sync)")
        }),
        CommandSpec(name: "wait", arity: 3, ordering: .exclusive, flags: [], firstKey: 0, lastKey: 0, run: wait),
        CommandSpec(name: "role", arity: 1, ordering: .connection, flags: ["fast"], firstKey: 0, lastKey: 0, run: { inv in
            .now(inv.server.replication.role(server: inv.server))
        }),
    ]

    /// REPLICAOF host port | REPLICAOF NO ONE
    static func replicaOf(_ inv: Invocation) throws -> Reply {
        let server = inv.server
        if inv.keyword(1) == "NO" && inv.keyword(2) == "ONE" {
            return inv.admin(.control) {
                server.replication.becomePrimary(server: server)
                return .ok
            }
        }
        guard let port = Int(inv.string(2)), (1...65535).contains(port) else { throw CommandError("Invalid master port") }
        let host = inv.string(1)
        let me = server.boundPort.load(ordering: .relaxed)
        if Self.isLocal(host), port == me { throw CommandError("a server cannot be a replica of itself") }
        return inv.admin(.control) {
            server.replication.replicaOf(host: host, port: port, server: server)
                ? .ok : .simple("OK Already connected to specified master")
        }
    }

    static func isLocal(_ host: String) -> Bool { ["127.0.0.1", "localhost", "::1"].contains(host) }

    /// REPLCONF listening-port <port> | capa … | ip-address … | getack …
    static func replconf(_ inv: Invocation) throws -> Reply {
        var i = 1
        while i + 1 < inv.count {
            switch inv.keyword(i) {
            case "LISTENING-PORT":
                guard let port = Int(inv.string(i + 1)), (0...65535).contains(port) else { throw CommandError.notInteger() }
                inv.server.replication.replicas.setListeningPort(port, connection: inv.connection.id)
            case "CAPA", "IP-ADDRESS", "GETACK", "RDB-ONLY", "RDB-FILTER-ONLY", "RDB-CHANNEL":
                break
            default:
                throw CommandError("Unrecognized REPLCONF option: \(inv.string(i).prefix(32))")
            }
            i += 2
        }
        guard i == inv.count else { throw CommandError.syntax() }
        return .now(.ok)
    }

    /// REPLCONF ACK and PSYNC: handled here, outside the connection's ordered replies.
    /// True when the command was taken over.
    static func takesOver(_ command: RESPCommand, name: String, server: ServerContext, connection: ConnectionState,
                          context: ChannelHandlerContext) -> Bool {
        guard name == "replconf" || name == "psync", connection.authenticated else { return false }
        let words = command.arguments.map { Names.string($0.readableBytesView) }
        if name == "replconf" {
            guard words.count == 3, words[1].uppercased() == "ACK", let offset = UInt64(words[2]) else { return false }
            server.replication.replicas.ack(connection.id, offset: offset)
            return true
        }
        guard words.count == 3, let offset = Int(words[2]) else { return false }
        let feeder = ReplicaFeeder(server: server, connection: connection.id)
        do { try context.pipeline.syncOperations.addHandler(feeder) } catch { return false }
        let ip = context.remoteAddress?.ipAddress ?? "?"
        server.replication.replicas.add(id: connection.id, ip: ip, channel: context.channel)
        server.clients.update(connection.id) { $0.kind = .replica }
        server.logger.info("replica connected", metadata: ["address": "\(connection.remote)", "psync": "\(words[1]) \(offset)"])
        feeder.start(replid: words[1], offset: offset)
        return true
    }

    /// WAIT numreplicas timeout: how many replicas acknowledged every write this connection
    /// had sent before it, once that many did or `timeout` ms passed (0: no timeout).
    static func wait(_ inv: Invocation) throws -> Reply {
        let wanted = try inv.integer(1), timeout = try inv.integer(2)
        guard wanted >= 0 else { throw CommandError.notInteger() }
        guard timeout >= 0 else { throw CommandError("timeout is negative") }
        let server = inv.server
        if server.replication.isReplica { throw CommandError("WAIT cannot be used with replica instances. Please also note that writes to replicas are just local and are not propagated.") }
        let target = server.engine.replication.position.offset
        let promise = inv.eventLoop.makePromise(of: RESPValue.self)
        let deadline = NIODeadline.now() + .milliseconds(Int64(timeout))
        let loop = inv.eventLoop, channel = inv.channel
        @Sendable func check() {
            let count = server.replication.replicas.acknowledged(atLeast: target)
            if count >= wanted || (timeout > 0 && NIODeadline.now() >= deadline) || !channel.isActive {
                promise.succeed(.integer(count))
            } else {
                loop.scheduleTask(in: .milliseconds(10)) { check() }
            }
        }
        check()
        return .later(promise.futureResult)
    }
}
