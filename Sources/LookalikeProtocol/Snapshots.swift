// Snapshots: the administrative executor that writes consistent snapshots (Engine.writeSnapshot)
// for SAVE TO / BGSAVE TO (backups) and for replicas' full syncs, and what INFO shows of them.
//
// Invariants: one snapshot runs at a time, in arrival order, on this executor's own thread
// (never on an event loop or the search pool, which keep serving); BGSAVE TO is refused while
// one runs or waits; a snapshot's folder appears only when it is complete (Snapshot.swift).
// INFO's persistence section shows the bytes written so far.
// Why not the admin executor (AdminJobs, which runs SAVE, BGSAVE, VCOMPACT…): there a full
// sync would wait behind a compaction, or hold the thread REPLICAOF and SHUTDOWN are kept;
// AdminJobs' header gives the whole reasoning.
// Threads: `run` from any thread; completions run on the executor's thread.
import Dispatch
import Foundation
import LookalikeEngine
import Synchronization

final class Snapshots: Sendable {
    private let queue = DispatchQueue(label: "lookalike.snapshots")
    /// Bytes of the running snapshot (Engine.writeSnapshot counts them).
    let progress = JobProgress()
    private let state = Mutex(State())

    struct State {
        var running = 0
        var current = ""
        var lastStatus = "ok"
        var lastPath = ""
        var lastTime = 0
        var lastBytes = 0
        var lastSeconds = 0.0
        var lastError = ""
    }

    var isRunning: Bool { state.withLock { $0.running > 0 } }

    /// Queues a snapshot of `engine` to `path`; `completion` gets its summary or error.
    func run(_ engine: Engine, to path: String, bytesPerSecond: Int,
             completion: @escaping @Sendable (Result<SnapshotSummary, Error>) -> Void) {
        state.withLock { $0.running += 1 }
        queue.async { [self] in
            state.withLock { $0.current = path }
            let started = Date()
            let result = Result { try engine.writeSnapshot(to: path, bytesPerSecond: bytesPerSecond, progress: progress) }
            state.withLock { s in
                s.running -= 1
                s.current = ""
                s.lastPath = path
                s.lastTime = Int(Date().timeIntervalSince1970)
                s.lastSeconds = Date().timeIntervalSince(started)
                switch result {
                case .success(let summary):
                    s.lastStatus = "ok"
                    s.lastBytes = summary.bytes
                    s.lastError = ""
                case .failure(let e):
                    s.lastStatus = "err"
                    s.lastError = "\(e)"
                }
            }
            completion(result)
        }
    }

    /// INFO persistence: Redis's bgsave fields and ours.
    func infoLines() -> [(String, String)] {
        let s = state.withLock { $0 }
        return [
            ("lookalike_snapshot_in_progress", s.running > 0 ? "1" : "0"),
            ("lookalike_snapshot_path", s.current),
            ("lookalike_snapshot_bytes_written", String(progress.isRunning ? progress.doneCount : 0)),
            ("lookalike_snapshot_bytes_expected", String(progress.isRunning ? progress.totalCount : 0)),
            ("lookalike_last_snapshot_status", s.lastStatus),
            ("lookalike_last_snapshot_path", s.lastPath),
            ("lookalike_last_snapshot_time", String(s.lastTime)),
            ("lookalike_last_snapshot_bytes", String(s.lastBytes)),
            ("lookalike_last_snapshot_seconds", String(format: "%.3f", s.lastSeconds)),
            ("lookalike_last_snapshot_error", RESPValue.oneLine(s.lastError)),
        ]
    }
}

/// SAVE TO path, BGSAVE TO path.
enum SnapshotCommands {
    /// The path after TO, or nil when the command has no TO (the classic SAVE/BGSAVE).
    static func target(_ inv: Invocation) throws -> String? {
        guard inv.count > 1 else { return nil }
        guard inv.count == 3, inv.keyword(1) == "TO", !inv.string(2).isEmpty else {
            if inv.count == 2, inv.keyword(1) == "SCHEDULE" { return nil }
            throw CommandError("syntax error: \(inv.name.uppercased()) [TO folder]")
        }
        return inv.string(2)
    }

    static func save(_ inv: Invocation, to path: String) -> Reply {
        let promise = inv.eventLoop.makePromise(of: RESPValue.self)
        inv.server.snapshots.run(inv.engine, to: path, bytesPerSecond: inv.server.options.snapshotBytesPerSecond) { result in
            promise.succeed(result.map { _ in RESPValue.ok }.mapErrorToReply())
        }
        return .later(promise.futureResult)
    }

    static func bgsave(_ inv: Invocation, to path: String) throws -> Reply {
        let server = inv.server
        guard !server.snapshots.isRunning else { throw CommandError("Background save already in progress") }
        server.snapshots.run(inv.engine, to: path, bytesPerSecond: server.options.snapshotBytesPerSecond) { result in
            if case .failure(let e) = result {
                server.logger.error("BGSAVE TO failed", metadata: ["path": "\(path)", "error": "\(e)"])
            } else {
                server.logger.info("BGSAVE TO done", metadata: ["path": "\(path)"])
            }
        }
        return .now(.simple("Background saving started"))
    }
}

extension Result where Success == RESPValue {
    func mapErrorToReply() -> RESPValue {
        switch self {
        case .success(let v): return v
        case .failure(let e): return RESPValue.from(e)
        }
    }
}
