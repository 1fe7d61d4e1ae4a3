// CommandObservation: what a connection's handler records of each command it dispatches: the
// client's last command (CLIENT LIST), MONITOR's line, the time from dispatch to reply (INFO
// commandstats, SLOWLOG, the per-collection metrics) and the operator log's audit line.
// Invariants: a command's arguments (perhaps megabytes of vectors) are copied only when a line
// is written (a slow or audited command, a MONITOR); AUTH and HELLO never show their arguments.
// Threads: the connection's event loop (CommandHandler); a `.later` reply is recorded where
// its future completes.
import Foundation
import LookalikeEngine
import NIOCore

extension CommandHandler {
    /// CLIENT LIST's last command, and MONITOR's line (AUTH and HELLO shown without arguments,
    /// as Redis hides them).
    func noteCommand(_ command: RESPCommand, name: String) {
        let now = Date()
        server.clients.update(connection.id) { $0.lastCommand = name; $0.lastCommandAt = now }
        guard server.clients.hasMonitors else { return }
        let secret = name == "auth" || name == "hello"
        let words = (secret ? Array(command.arguments.prefix(1)) : command.arguments).map { arg -> String in
            "\"" + Array(arg.readableBytesView).map(Self.monitorEscape).joined() + "\""
        }
        server.clients.broadcast(String(format: "%.6f", now.timeIntervalSince1970) + " [0 \(connection.remote)] " + words.joined(separator: " "))
    }

    static func monitorEscape(_ b: UInt8) -> String {
        switch b {
        case UInt8(ascii: "\""): return "\\\""
        case UInt8(ascii: "\\"): return "\\\\"
        case 32..<127: return String(UnicodeScalar(b))
        case 10: return "\\n"
        case 13: return "\\r"
        default: return String(format: "\\x%02x", b)
        }
    }

    /// Times a command from dispatch to its reply, for INFO commandstats and SLOWLOG.
    func measured(_ command: RESPCommand, name: String, _ r: Reply, context: ChannelHandlerContext) -> Reply {
        let started = NIODeadline.now()
        let (stats, client, clientName, logger) = (server.stats, connection.remote, connection.name ?? "", server.logger)
        let spec = CommandTable.commands[name]
        let known = spec != nil
        // The arguments (possibly megabytes of vectors) are copied only for a logged command.
        let arguments: @Sendable () -> [[UInt8]] = { command.arguments.map { Array($0.readableBytesView) } }
        // The first argument: a vector command's collection (its metrics label), or a subcommand.
        let argument = { (i: Int) in command.arguments.count > i ? Names.string(command.arguments[i].readableBytesView) : "" }
        let first = { argument(1) }
        let collection = spec.flatMap { stats.metrics?.collectionLabel(command: name, firstKey: $0.firstKey, key: first) }
        let audited = known && OperatorLog.isAudited(name, argument: argument)
        let record: @Sendable (RESPValue) -> Void = { value in
            let micros = Int((NIODeadline.now() - started).nanoseconds / 1000)
            var error: String?
            if case .error(let e) = value { error = e }
            let rejected = !known || (error?.hasPrefix("NOAUTH") ?? false) || (error?.hasPrefix("ERR wrong number") ?? false)
            stats.record(known ? name : "unknown", micros: micros, error: error, rejected: rejected, collection: collection)
            if known { stats.logIfSlow(name, micros: micros, arguments: arguments, client: client, clientName: clientName) }
            if audited && !rejected {
                OperatorLog.audit(name, arguments: arguments(), client: client, clientName: clientName, result: value, micros: micros, logger: logger)
            }
        }
        switch r {
        case .now(let v): record(v); return r
        case .later(let f): return .later(f.map { v in record(v); return v })
        }
    }
}
