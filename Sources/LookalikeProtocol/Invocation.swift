// Invocation: one command being executed: its arguments, its connection, and the helpers a
// command uses to read arguments and to run work off the event loop.
// Threads: created and read on the connection's event loop; the closures passed to `offload`
// run on the search pool, those passed to `admin` on the admin executor (AdminJobs); neither
// may touch connection state. Their replies complete on the connection's event loop.
import Foundation
import LookalikeEngine
import NIOCore
import NIOPosix

/// A command's "-ERR ..." (or other coded) reply.
struct CommandError: Error {
    let reply: String
    init(_ message: String) { reply = "ERR " + message }
    init(code: String, _ message: String) { reply = code + " " + message }

    static func syntax() -> CommandError { CommandError("syntax error") }
    static func notInteger() -> CommandError { CommandError("value is not an integer or out of range") }
    static func notFloat() -> CommandError { CommandError("value is not a valid float") }
}

enum Reply {
    case now(RESPValue)
    case later(EventLoopFuture<RESPValue>)
}

struct Invocation {
    let server: ServerContext
    let connection: ConnectionState
    let arguments: [ByteBuffer]
    let eventLoop: EventLoop
    /// The connection's channel: work queued for a connection that has gone is skipped.
    let channel: Channel

    var count: Int { arguments.count }
    var name: String { string(0).lowercased() }
    var engine: Engine { server.engine }

    // Out-of-range indexes read as empty: a parsing slip then becomes a syntax error, never a
    // trap that would take the whole server down.
    func bytes(_ i: Int) -> [UInt8] { i < count ? Array(arguments[i].readableBytesView) : [] }
    /// An argument as a String that keeps every byte (Names.swift): names are byte strings.
    func string(_ i: Int) -> String {
        i < count ? Names.string(arguments[i].readableBytesView) : ""
    }
    func keyword(_ i: Int) -> String { string(i).uppercased() }

    func integer(_ i: Int) throws -> Int {
        guard i < count, let n = Int(string(i)) else { throw CommandError.notInteger() }
        return n
    }

    func double(_ i: Int) throws -> Double {
        guard i < count, let d = Double(string(i)) else { throw CommandError.notFloat() }
        return d
    }

    /// Runs blocking work (engine reads, searches, disk) on the search pool. A read whose
    /// connection closed before it started is skipped: nobody is there for its reply, and a
    /// disconnected pipeline must not keep the pool busy for minutes.
    /// Administrative work goes to `admin` instead.
    func offload(_ work: @escaping @Sendable () throws -> RESPValue) -> Reply {
        let channel = self.channel
        return .later(server.pool.runIfActive(eventLoop: eventLoop) {
            guard channel.isActive else { throw ChannelError.ioOnClosedChannel }
            return try work()
        })
    }

    /// Queues a write in the engine's group commit; completes once it is durable and visible.
    /// Waits for this connection's collection creations still under way, so a pipeline's
    /// writes reach the commit queue in the order they were sent.
    func write(_ collection: Collection, _ request: WriteRequest) -> EventLoopFuture<WriteOutcome> {
        let promise = eventLoop.makePromise(of: WriteOutcome.self)
        let submit: @Sendable () -> Void = { collection.submit(request) { promise.completeWith($0.mapError { $0 as Error }) } }
        if let pending = connection.creationsDone {
            pending.whenComplete { _ in submit() }
        } else {
            submit()
        }
        return promise.futureResult
    }

    /// Creates the collection unless it exists, then queues the write. Creating commits (and
    /// fsyncs) an LMDB transaction, so it runs on the search pool, not on the event loop.
    /// Creations run one at a time in arrival order (a serial queue, not the pool, whose two
    /// threads once let a pipeline's second VADD create the set before its first).
    func write(creating definition: CollectionDefinition, _ request: WriteRequest) -> EventLoopFuture<WriteOutcome> {
        let promise = eventLoop.makePromise(of: WriteOutcome.self)
        let submitted = eventLoop.makePromise(of: Void.self)
        let engine = self.engine
        server.creations.async {
            do {
                try engine.createCollectionIfMissing(definition, firstWrite: request)
                    .submit(request) { promise.completeWith($0.mapError { $0 as Error }) }
            } catch {
                promise.fail(error)
            }
            submitted.succeed(())
        }
        connection.creationsDone = (connection.creationsDone ?? eventLoop.makeSucceededVoidFuture())
            .and(submitted.futureResult).map { _ in }
        return promise.futureResult
    }

    /// Runs an administrative job (a save, a reload, a compaction, the batch job, REPLICAOF) on
    /// the admin executor, never on the search pool, which keeps serving queries meanwhile.
    /// It runs even if the connection closes first: these jobs change the data or the role.
    func admin(_ kind: AdminJobs.Kind = .long, _ work: @escaping @Sendable () throws -> RESPValue) -> Reply {
        .later(server.admin.run(kind, on: eventLoop, work))
    }

    /// Runs an async engine call (drops, batch writes) and completes on the event loop.
    func task(_ work: @escaping @Sendable () async throws -> RESPValue) -> Reply {
        let promise = eventLoop.makePromise(of: RESPValue.self)
        promise.completeWithTask(work)
        return .later(promise.futureResult)
    }
}

extension RESPValue {
    /// The reply for an error thrown by a command.
    static func from(_ error: Error) -> RESPValue {
        switch error {
        case let e as CommandError: return .error(e.reply)
        case let e as EngineError: return .error("ERR " + e.description)
        case let e as RESPProtocolError: return .error("ERR " + e.description)
        case is NIOThreadPoolError.ThreadPoolInactive: return .error("ERR the server is shutting down")
        default: return .error("ERR \(error)")
        }
    }
}
