// Invocation: one command being executed: its arguments, its connection, and the helpers a
// command uses to read arguments and to run work off the event loop.
// Threads: created and read on the connection's event loop; the closures passed to `offload`
// run on the search pool and must not touch connection state.
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
    /// `evenIfDisconnected`: administrative work (SAVE, SHUTDOWN) runs all the same.
    func offload(evenIfDisconnected: Bool = false, _ work: @escaping @Sendable () throws -> RESPValue) -> Reply {
        let channel = self.channel
        return .later(server.pool.runIfActive(eventLoop: eventLoop) {
            guard evenIfDisconnected || channel.isActive else { throw ChannelError.ioOnClosedChannel }
            return try work()
        })
    }

    /// Queues a write in the engine's group commit; completes once it is durable and visible.
    func write(_ collection: Collection, _ request: WriteRequest) -> EventLoopFuture<WriteOutcome> {
        let promise = eventLoop.makePromise(of: WriteOutcome.self)
        collection.submit(request) { promise.completeWith($0.mapError { $0 as Error }) }
        return promise.futureResult
    }

    /// Creates the collection unless it exists, then queues the write. Creating commits (and
    /// fsyncs) an LMDB transaction, so it runs on the search pool, not on the event loop.
    func write(creating definition: CollectionDefinition, _ request: WriteRequest) -> EventLoopFuture<WriteOutcome> {
        let promise = eventLoop.makePromise(of: WriteOutcome.self)
        let engine = self.engine
        server.pool.submit { state in
            guard case .active = state else { return promise.fail(NIOThreadPoolError.ThreadPoolInactive()) }
            do {
                try engine.createCollectionIfMissing(definition, firstWrite: request)
                    .submit(request) { promise.completeWith($0.mapError { $0 as Error }) }
            } catch {
                promise.fail(error)
            }
        }
        return promise.futureResult
    }

    /// Runs long blocking work (compaction: minutes) on a thread of its own, so the search
    /// pool keeps serving queries meanwhile.
    func background(_ work: @escaping @Sendable () throws -> RESPValue) -> Reply {
        let promise = eventLoop.makePromise(of: RESPValue.self)
        let thread = Thread { promise.completeWith(Result { try work() }) }
        thread.name = "lookalike-background"
        thread.start()
        return .later(promise.futureResult)
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
