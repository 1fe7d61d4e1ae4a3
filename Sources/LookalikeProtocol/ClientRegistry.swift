// ClientRegistry: every open connection as CLIENT LIST, CLIENT KILL, INFO and MONITOR see it.
//
// Owns: one record per connection (address, name, library, age, last command, flags) and the
// connection's channel, so CLIENT KILL can close it and MONITOR can write to it.
// Invariants: a record exists from channelActive to channelInactive of its connection; the
// record is a copy of what the connection's handler last pushed (the handler's own state
// stays on its event loop).
// Threads: every method takes a short lock and may be called from any thread; closing and
// writing to a channel are thread-safe in NIO.
import Foundation
import NIOCore
import Synchronization

/// CLIENT LIST / KILL TYPE. `master` is a replica's own link to its primary, which is not a
/// connection this server accepted: no record has it.
enum ClientKind: Sendable {
    case normal, replica, pubsub, master

    init?(typeName: String) {
        switch typeName {
        case "NORMAL": self = .normal
        case "REPLICA", "SLAVE": self = .replica
        case "PUBSUB": self = .pubsub
        case "MASTER": self = .master
        default: return nil
        }
    }
}

struct ClientRecord: Sendable {
    let id: Int
    let address: String
    let localAddress: String
    let channel: Channel
    let createdAt: Date
    var name = ""
    var libraryName = ""
    var libraryVersion = ""
    var protocolVersion = 2
    var lastCommand = "NULL"
    var lastCommandAt: Date
    var inTransaction = false
    var isMonitor = false
    var kind = ClientKind.normal

    /// One line of CLIENT LIST / CLIENT INFO, with Redis's field names.
    func line(now: Date) -> String {
        let age = Int(now.timeIntervalSince(createdAt)), idle = Int(now.timeIntervalSince(lastCommandAt))
        let flags = (isMonitor ? "O" : "") + (inTransaction ? "x" : "") + (kind == .replica ? "S" : "") + (kind == .pubsub ? "P" : "")
        return "id=\(id) addr=\(address) laddr=\(localAddress) fd=-1 name=\(name) age=\(age) idle=\(idle) "
            + "flags=\(flags.isEmpty ? "N" : flags) db=0 sub=0 psub=0 ssub=0 multi=\(inTransaction ? 0 : -1) "
            + "watch=0 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 "
            + "events=r cmd=\(lastCommand) user=default redir=-1 resp=\(protocolVersion) "
            + "lib-name=\(libraryName) lib-ver=\(libraryVersion)"
    }
}

final class ClientRegistry: Sendable {
    private let records = Mutex<[Int: ClientRecord]>([:])

    func add(_ record: ClientRecord) { records.withLock { $0[record.id] = record } }
    func remove(_ id: Int) {
        let gone = records.withLock { $0.removeValue(forKey: id) }
        if gone?.isMonitor == true { monitorCount.wrappingSubtract(1, ordering: .relaxed) }
    }

    func update(_ id: Int, _ change: (inout ClientRecord) -> Void) {
        records.withLock { r in
            if var record = r[id] {
                change(&record)
                r[id] = record
            }
        }
    }

    func all() -> [ClientRecord] { records.withLock { Array($0.values) }.sorted { $0.id < $1.id } }
    func record(_ id: Int) -> ClientRecord? { records.withLock { $0[id] } }
    var count: Int { records.withLock { $0.count } }

    /// Channels of MONITOR connections; empty in the common case, checked per command.
    func monitors() -> [Channel] { records.withLock { $0.values.filter(\.isMonitor).map(\.channel) } }
    private let monitorCount = Atomic<Int>(0)
    var hasMonitors: Bool { monitorCount.load(ordering: .relaxed) > 0 }

    func setMonitor(_ id: Int) {
        update(id) { $0.isMonitor = true }
        monitorCount.wrappingAdd(1, ordering: .relaxed)
    }

    /// Writes one MONITOR line to every monitoring connection.
    func broadcast(_ line: String) {
        for channel in monitors() {
            var buffer = channel.allocator.buffer(capacity: line.utf8.count + 3)
            buffer.writeString("+" + line + "\r\n")
            channel.writeAndFlush(buffer, promise: nil)
        }
    }
}
