// OperatorLog: the log lines that tell an operator what clients did to the server.
//
// Owns: the list of audited commands (destructive or administrative: one `notice` line each,
// after its reply is ready, with the client, the collections named and the outcome), and
// RateLimitedLog, which keeps noisy events (AUTH failures, slow commands) to one line per
// interval carrying the count since the last line.
// Invariants: an audited command is logged once, whether it succeeded or not; no line holds a
// password (AUTH and HELLO are never audited, CONFIG SET's values are shown except those of
// settings named *pass*); a rate-limited line is emitted at most once per interval, and
// every event is counted in some line (the next one carries the events suppressed meanwhile).
// Threads: any thread; RateLimitedLog takes one short lock per event.
import Foundation
import Logging
import LookalikeEngine
import Synchronization

enum OperatorLog {
    /// Commands logged on every call, and the subcommands that make CONFIG, CLIENT and DEBUG
    /// audited (CONFIG GET is not).
    static let audited: Set<String> = ["del", "unlink", "flushall", "flushdb", "vcompact", "save", "bgsave",
                                       "debug", "shutdown"]
    static let auditedSubcommands: [String: Set<String>] = ["config": ["SET", "REWRITE", "RESETSTAT"],
                                                            "client": ["KILL"]]

    /// Read-only forms of audited commands, by their second argument (VCOMPACT key STATUS,
    /// which a tool polls while a compaction runs).
    static let unauditedForms: [String: String] = ["vcompact": "STATUS"]

    /// `argument(i)` is read only for CONFIG, CLIENT and the forms above (never for AUTH,
    /// whose arguments are passwords).
    static func isAudited(_ name: String, argument: (Int) -> String) -> Bool {
        if audited.contains(name) {
            guard let form = unauditedForms[name] else { return true }
            return argument(2).uppercased() != form
        }
        guard let subcommands = auditedSubcommands[name] else { return false }
        return subcommands.contains(argument(1).uppercased())
    }

    /// One audit line: `command`, `client`, `arguments` (keys, subcommands, settings; each cut
    /// at 128 bytes, at most 32), `result` (ok, the integer, or the error).
    static func audit(_ name: String, arguments: [[UInt8]], client: String, clientName: String, result: RESPValue,
                      micros: Int, logger: Logger) {
        var words = arguments.dropFirst().prefix(32).map { Names.string($0.count > 128 ? Array($0.prefix(128)) : $0) }
        if name == "config", words.first?.uppercased() == "SET" {
            for i in stride(from: 2, to: words.count, by: 2) where words[i - 1].lowercased().contains("pass") { words[i] = "(hidden)" }
        }
        var metadata: Logger.Metadata = ["command": "\(name.uppercased())", "client": "\(client)",
                                         "arguments": "\(words.joined(separator: " "))",
                                         "result": "\(describe(result))", "micros": "\(micros)"]
        if !clientName.isEmpty { metadata["client-name"] = "\(clientName)" }
        logger.notice("administrative command", metadata: metadata)
    }

    static func describe(_ value: RESPValue) -> String {
        switch value {
        case .error(let e): return "error: " + e
        case .integer(let n): return String(n)
        case .simple(let s): return s.lowercased()
        default: return "ok"
        }
    }
}

/// At most one line per `interval` seconds for a kind of event, with the count of events since
/// the previous line (the first event is logged at once).
final class RateLimitedLog: Sendable {
    let interval: Double
    private let state = Mutex<(lastLine: Double, unlogged: Int)>((-Double.infinity, 0))

    init(interval: Double = 10) { self.interval = interval }

    /// Counts one event; calls `emit` with the events since the last line when a line is due.
    func note(_ emit: (_ events: Int) -> Void) {
        let now = Date().timeIntervalSince1970
        let due = state.withLock { s -> Int? in
            s.unlogged += 1
            guard now - s.lastLine >= interval else { return nil }
            defer { s = (now, 0) }
            return s.unlogged
        }
        if let due { emit(due) }
    }
}
