// Replication: this server's role (primary, or replica of a host and port), the replicas that
// follow it, and what ROLE and INFO replication show (the fields Sentinel and redis-py parse).
//
// A primary's replicas connect as clients and send PSYNC; from then on their connection carries
// the snapshot and the write stream (ReplicaFeeder) and they send REPLCONF ACK <offset>.
// A replica runs one ReplicaLink (a thread) to its primary and refuses clients' writes.
// Invariants: at most one link runs; `becomePrimary` returns only after the link's thread has
// stopped, so no replicated write lands after this node takes writes of its own.
// Threads: any; state under short locks. `replicaOf` and `becomePrimary` block (they stop a
// thread): call them off the event loop.
import Foundation
import LookalikeEngine
import NIOCore
import Synchronization

final class Replication: Sendable {
    let replicas = ReplicaRegistry()
    private let link = Mutex<ReplicaLink?>(nil)
    /// REPLICAOF and the link's start and stop, one at a time.
    private let changing = NSLock()
    /// INFO slave_priority: Sentinel promotes the lowest non-zero one first; 0 never.
    let priority: Int

    init(priority: Int) { self.priority = priority }

    var currentLink: ReplicaLink? { link.withLock { $0 } }
    var isReplica: Bool { currentLink != nil }

    /// Follows `host:port` (REPLICAOF host port, --replicaof). False when already following it.
    @discardableResult
    func replicaOf(host: String, port: Int, server: ServerContext) -> Bool {
        changing.lock()
        defer { changing.unlock() }
        if let l = currentLink, l.host == host, l.port == port { return false }
        currentLink?.stop()
        replicas.closeAll()  // they follow our old history; they reconnect and resync
        let l = ReplicaLink(host: host, port: port, server: server)
        link.withLock { $0 = l }
        l.start()
        server.logger.notice("following a primary", metadata: ["primary": "\(host):\(port)"])
        return true
    }

    /// REPLICAOF NO ONE: stops following and starts a history of this node's own.
    func becomePrimary(server: ServerContext) {
        changing.lock()
        defer { changing.unlock() }
        guard let l = currentLink else { return }
        l.stop()
        link.withLock { $0 = nil }
        server.engine.replication.startNewHistory()
        server.logger.notice("promoted to primary", metadata: ["replid": "\(server.engine.replication.position.replid)"])
    }

    // MARK: ROLE, INFO

    func role(server: ServerContext) -> RESPValue {
        let offset = Int(server.engine.replication.position.offset)
        if let l = currentLink {
            return .array([.string("slave"), .string(l.host), .integer(l.port), .string(l.status.withLock { $0.roleState }),
                           .integer(offset)])
        }
        return .array([.string("master"), .integer(offset), .array(replicas.online().map { r in
            .array([.string(r.ip), .string(String(r.port)), .string(String(r.ackOffset))])
        })])
    }

    func infoLines(server: ServerContext) -> [(String, String)] {
        let log = server.engine.replication
        let position = log.position, previous = log.previous, backlog = log.backlog
        var lines: [(String, String)] = []
        if let l = currentLink {
            let s = l.status.withLock { $0 }
            let now = Date()
            lines += [("role", "slave"), ("master_host", l.host), ("master_port", String(l.port)),
                      ("master_link_status", s.up ? "up" : "down"),
                      ("master_last_io_seconds_ago", s.up ? String(Int(now.timeIntervalSince(s.lastIO))) : "-1"),
                      ("master_sync_in_progress", s.syncing ? "1" : "0"),
                      ("slave_read_repl_offset", String(position.offset)), ("slave_repl_offset", String(position.offset))]
            if s.syncing {
                lines += [("master_sync_total_bytes", String(s.syncTotal)), ("master_sync_read_bytes", String(s.syncRead)),
                          ("master_sync_left_bytes", String(max(0, s.syncTotal - s.syncRead))),
                          ("master_sync_last_io_seconds_ago", String(Int(now.timeIntervalSince(s.lastIO))))]
            }
            if !s.up { lines.append(("master_link_down_since_seconds", String(Int(now.timeIntervalSince(s.downSince))))) }
            lines += [("slave_priority", String(priority)), ("slave_read_only", "1"), ("replica_announced", "1")]
        } else {
            lines.append(("role", "master"))
        }
        let online = replicas.online()
        lines.append(("connected_slaves", String(online.count)))
        for (i, r) in online.enumerated() {
            lines.append(("slave\(i)", "ip=\(r.ip),port=\(r.port),state=online,offset=\(r.ackOffset),lag=\(Int(Date().timeIntervalSince(r.lastAck)))"))
        }
        lines += [("master_failover_state", "no-failover"), ("master_replid", position.replid),
                  ("master_replid2", previous.replid), ("master_repl_offset", String(position.offset)),
                  ("second_repl_offset", previous.offset > 0 ? String(previous.offset + 1) : "-1"),
                  ("repl_backlog_active", "1"), ("repl_backlog_size", String(backlog.limit)),
                  ("repl_backlog_first_byte_offset", String(backlog.first + 1)),
                  ("repl_backlog_histlen", String(backlog.bytes))]
        return lines
    }
}

/// The replicas connected to this node. Threads: any (one lock).
final class ReplicaRegistry: Sendable {
    struct Replica: Sendable {
        let id: Int
        let ip: String
        var port: Int
        var online = false
        var ackOffset: UInt64 = 0
        var lastAck = Date()
        let channel: Channel
    }

    private let replicas = Mutex<[Int: Replica]>([:])
    /// INFO stats sync_full, sync_partial_ok, sync_partial_err (as Redis counts them).
    let fullSyncs = Atomic<Int>(0)
    let partialSyncs = Atomic<Int>(0)
    let refusedPartialSyncs = Atomic<Int>(0)
    /// REPLCONF listening-port, by connection, until its PSYNC.
    private let ports = Mutex<[Int: Int]>([:])

    func setListeningPort(_ port: Int, connection id: Int) { ports.withLock { $0[id] = port } }

    func add(id: Int, ip: String, channel: Channel) {
        let port = ports.withLock { $0.removeValue(forKey: id) } ?? 0
        replicas.withLock { $0[id] = Replica(id: id, ip: ip, port: port, channel: channel) }
    }

    func remove(_ id: Int) {
        _ = replicas.withLock { $0.removeValue(forKey: id) }
        _ = ports.withLock { $0.removeValue(forKey: id) }
    }

    func setOnline(_ id: Int, offset: UInt64) {
        replicas.withLock { r in
            guard var replica = r[id] else { return }
            replica.online = true
            replica.ackOffset = max(replica.ackOffset, offset)
            r[id] = replica
        }
    }

    func ack(_ id: Int, offset: UInt64) {
        replicas.withLock { r in
            r[id]?.ackOffset = offset
            r[id]?.lastAck = Date()
        }
    }

    func online() -> [Replica] { replicas.withLock { Array($0.values) }.filter(\.online).sorted { $0.id < $1.id } }
    func isReplica(_ id: Int) -> Bool { replicas.withLock { $0[id] != nil } }

    /// Replicas whose acknowledged offset is at least `offset` (WAIT).
    func acknowledged(atLeast offset: UInt64) -> Int { online().filter { $0.ackOffset >= offset }.count }

    func closeAll() {
        for r in replicas.withLock({ Array($0.values) }) { r.channel.close(promise: nil) }
    }
}
