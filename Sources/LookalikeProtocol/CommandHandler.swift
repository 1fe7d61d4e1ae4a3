// CommandHandler: one connection's commands in, replies out, in order.
//
// Owns: the connection's state, the futures that order its commands (see CommandTable), and
// the count of commands in flight.
// Invariants:
//   - replies are written in request order, each encoded with the protocol version that was
//     in force when its command was dispatched;
//   - memory per connection is bounded: a command counts as in flight until its reply has been
//     written to the socket, and reading pauses (no more bytes are taken from the socket) at
//     `maxPipeline` in flight or while the socket's write buffer is above its high-water mark
//     (the client is not reading). A pause is not a hard cap on commands: the input already
//     read is still decoded and dispatched, and one event-loop wakeup reads up to 16 times
//     (maxMessagesPerRead, as lookalike-server sets it) up to 64 KiB (NIO's adaptive
//     buffer), about 1 MiB, so up to that
//     much input's commands (some 75,000 PINGs) can follow the one that reached the cap
//     (CommandHandlerSocketTests). What is bounded hard is bytes: the input read, the frame
//     being assembled (--max-frame-bytes), and the replies unread: a connection with more
//     than its output-buffer limit of them is closed, as Redis's client-output-buffer-limit
//     does. Reading resumes at `maxPipeline / 2` in flight once the socket is writable again
//     (its write buffer below the low-water mark);
//   - with a timeout, a connection that completed no command for that long and is owed no
//     reply is closed: idle, or trickling a frame too slowly ever to finish it;
//   - nothing blocks the event loop: reads and searches run on the search pool, writes in the
//     engine's commit thread, administrative jobs on the admin executor (AdminJobs); this
//     handler only parses, orders and encodes;
//   - a protocol error answers "-ERR Protocol error: ..." after the replies already owed, then
//     closes this connection only.
// What the handler records of each command (CLIENT LIST, MONITOR, INFO commandstats, SLOWLOG,
// the operator log) is CommandObservation.swift; the connection limit is ConnectionLimiter.swift.
// Threads: the connection's event loop, always; future callbacks are `assumeIsolated()`,
// which checks that they run there.
import Foundation
import Logging
import LookalikeEngine
import NIOCore

public final class CommandHandler: ChannelInboundHandler {
    public typealias InboundIn = RESPCommand
    public typealias OutboundOut = ByteBuffer

    let server: ServerContext
    private let auth: ConnectionAuth
    private(set) var connection: ConnectionState!
    /// Bytes of replies handed to the channel and not yet written to the socket.
    private var unwrittenBytes = 0
    private var lastCommandAt = NIODeadline.now()
    private var timeoutTask: Scheduled<Void>?
    private var readsDone: EventLoopFuture<Void>!
    private var writesDone: EventLoopFuture<Void>!
    private var repliesDone: EventLoopFuture<Void>!
    private var inFlight = 0
    private var readingPaused = false
    private var flushScheduled = false
    private var closing = false

    /// `auth` is shared with this connection's RESPDecoder (its limits before AUTH).
    public init(server: ServerContext, auth: ConnectionAuth) {
        self.server = server
        self.auth = auth
    }

    public func channelActive(context: ChannelHandlerContext) {
        let id = server.clientIds.wrappingAdd(1, ordering: .relaxed).newValue
        let remote = Self.address(context.remoteAddress), local = Self.address(context.localAddress)
        connection = ConnectionState(id: id, auth: auth, remote: remote, registry: server.clients)
        server.clients.add(ClientRecord(id: id, address: remote, localAddress: local, channel: context.channel,
                                        createdAt: Date(), lastCommandAt: Date()))
        let done = context.eventLoop.makeSucceededVoidFuture()
        readsDone = done
        writesDone = done
        repliesDone = done
        startTimeout(context: context)
        context.fireChannelActive()
    }

    static func address(_ a: SocketAddress?) -> String {
        guard let a else { return "?" }
        return "\(a.ipAddress ?? "?"):\(a.port ?? 0)"
    }

    public func channelInactive(context: ChannelHandlerContext) {
        timeoutTask?.cancel()
        timeoutTask = nil
        if let connection { server.clients.remove(connection.id) }
        context.fireChannelInactive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        let command = unwrapInboundIn(data)
        lastCommandAt = .now()
        server.totalCommands.wrappingAdd(1, ordering: .relaxed)
        dispatch(command, context: context)
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { resumeReadingIfPossible(context: context) }
        context.fireChannelWritabilityChanged()
    }

    /// Checks twice per timeout period; see the invariants above.
    private func startTimeout(context: ChannelHandlerContext) {
        let seconds = Int64(server.options.idleTimeoutSeconds)
        guard seconds > 0 else { return }
        timeoutTask = context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(seconds * 500)) {
            guard !self.closing else { return }
            if self.inFlight == 0, NIODeadline.now() - self.lastCommandAt >= .seconds(seconds) {
                self.server.timedOutClients.wrappingAdd(1, ordering: .relaxed)
                self.closeAfterReplies(context: context)
            } else {
                self.startTimeout(context: context)
            }
        }
    }

    /// A command's name as the command table spells it (lower case).
    private static func name(of command: RESPCommand) -> String {
        Names.string(command.arguments.first?.readableBytesView ?? ByteBuffer().readableBytesView).lowercased()
    }

    private func dispatch(_ command: RESPCommand, context: ChannelHandlerContext) {
        let name = Self.name(of: command)
        noteCommand(command, name: name)
        if ReplicationCommands.takesOver(command, name: name, server: server, connection: connection, context: context) { return }
        if transaction != nil || name == "multi" {
            if let answer = transactionStep(command, name: name, context: context) {
                // Every answer here is recorded (commandstats, errorstats, SLOWLOG) as it would
                // be outside a transaction: MULTI, DISCARD, and a command refused while queueing
                // (a rejected call, as in Redis), but QUEUED: a queued command counts when EXEC
                // runs it.
                let r = Reply.now(answer)
                let counted = answer != Self.queued
                return reply(counted ? measured(command, name: name, r, context: context) : r, version: connection.protocolVersion, context: context)
            }
            if name == "exec" { return exec(command, context: context) }
        }
        let version = connection.protocolVersion
        let result = measured(command, name: name, submit(command, context: context), context: context)
        // HELLO changes the version of its own reply.
        let replyVersion = CommandTable.commands[name]?.ordering == .connection ? connection.protocolVersion : version
        reply(result, version: replyVersion, context: context)
        if name == "quit" { closeAfterReplies(context: context) }
    }

    /// Checks a command and starts it in its ordering class (see CommandTable); the reply is
    /// its result, or the error that refused it.
    private func submit(_ command: RESPCommand, context: ChannelHandlerContext) -> Reply {
        let inv = invocation(command, context)
        let spec: CommandSpec
        switch check(inv) {
        case .failure(let refusal): return .now(refusal.value)
        case .success(let s): spec = s
        }
        switch spec.ordering {
        case .connection:
            return run(spec, inv)
        case .read:
            let result = writesDone.assumeIsolated().flatMap { self.future(self.run(spec, inv), on: context.eventLoop) }.nonisolated()
            readsDone = readsDone.and(result).map { _ in }
            return .later(result)
        case .write:
            let result = readsDone.assumeIsolated().flatMap { self.future(self.run(spec, inv), on: context.eventLoop) }.nonisolated()
            writesDone = writesDone.and(result).map { _ in }
            return .later(result)
        case .exclusive:
            let result = readsDone.and(writesDone).assumeIsolated().flatMap { _ in self.future(self.run(spec, inv), on: context.eventLoop) }.nonisolated()
            let done = result.map { _ in }
            readsDone = done
            writesDone = done
            return .later(result)
        }
    }

    private func invocation(_ command: RESPCommand, _ context: ChannelHandlerContext) -> Invocation {
        Invocation(server: server, connection: connection, arguments: command.arguments,
                   eventLoop: context.eventLoop, channel: context.channel)
    }

    struct Refusal: Error { let value: RESPValue }

    /// The command's spec, or why it may not run: unknown, not authenticated, wrong arity.
    private func check(_ inv: Invocation) -> Result<CommandSpec, Refusal> {
        let name = inv.name
        guard let spec = CommandTable.commands[name] else { return .failure(Refusal(value: CommandTable.unknown(inv))) }
        if !connection.authenticated && !CommandTable.allowedWithoutAuth.contains(name) {
            return .failure(Refusal(value: .error("NOAUTH Authentication required.")))
        }
        guard spec.acceptsArity(inv.count) else {
            return .failure(Refusal(value: .error("ERR wrong number of arguments for '\(name)' command")))
        }
        if spec.flags.contains("write"), server.replication.isReplica {
            return .failure(Refusal(value: .error("READONLY You can't write against a read only replica.")))
        }
        return .success(spec)
    }

    // MARK: MULTI / EXEC / DISCARD

    /// Commands queued since MULTI (nil outside a transaction), and whether one was refused.
    private var transaction: [RESPCommand]?
    private var transactionRefused = false
    /// The answer to a command queued inside a transaction.
    private static let queued = RESPValue.simple("QUEUED")

    /// MULTI, DISCARD and the queueing of commands inside a transaction; the immediate answer,
    /// or nil when the command is EXEC (run by `exec`) or is not the transaction's business.
    private func transactionStep(_ command: RESPCommand, name: String, context: ChannelHandlerContext) -> RESPValue? {
        switch name {
        case "multi":
            guard transaction == nil else { return .error("ERR MULTI calls can not be nested") }
            guard connection.authenticated else { return .error("NOAUTH Authentication required.") }
            transaction = []
            transactionRefused = false
            return .ok
        case "discard":
            transaction = nil
            return .ok
        case "exec":
            return nil
        case "watch":
            return .error("ERR WATCH inside MULTI is not allowed")
        default:
            if case .failure(let refusal) = check(invocation(command, context)) {
                transactionRefused = true  // Redis: the whole transaction is refused at EXEC
                return refusal.value
            }
            transaction?.append(command)
            return Self.queued
        }
    }

    /// EXEC: runs the queued commands in order, back to back, and replies with their results
    /// as one array. Writes of one transaction are queued together, so they normally share one
    /// group commit; see Docs/protocol.md for what is and is not atomic.
    /// Each queued command is timed as if sent alone (commandstats, SLOWLOG), and EXEC as a
    /// whole, as Redis does.
    private func exec(_ command: RESPCommand, context: ChannelHandlerContext) {
        let version = connection.protocolVersion
        guard let queued = transaction else {
            return reply(measured(command, name: "exec", .now(.error("ERR EXEC without MULTI")), context: context), version: version, context: context)
        }
        transaction = nil
        guard !transactionRefused else {
            let refused = Reply.now(.error("EXECABORT Transaction discarded because of previous errors."))
            return reply(measured(command, name: "exec", refused, context: context), version: version, context: context)
        }
        let results = queued.map { q in
            future(measured(q, name: Self.name(of: q), submit(q, context: context), context: context), on: context.eventLoop)
        }
        let all = EventLoopFuture.whenAllComplete(results, on: context.eventLoop).map { outcomes in
            RESPValue.array(outcomes.map { (try? $0.get()) ?? .error("ERR the command failed") })
        }
        reply(measured(command, name: "exec", .later(all), context: context), version: connection.protocolVersion, context: context)
    }

    /// Runs a command; a thrown error becomes its error reply.
    private func run(_ spec: CommandSpec, _ inv: Invocation) -> Reply {
        do {
            switch try spec.run(inv) {
            case .now(let v): return .now(v)
            case .later(let f): return .later(f.recover { RESPValue.from($0) })
            }
        } catch {
            return .now(RESPValue.from(error))
        }
    }

    private func future(_ r: Reply, on loop: EventLoop) -> EventLoopFuture<RESPValue> {
        switch r {
        case .now(let v): return loop.makeSucceededFuture(v)
        case .later(let f): return f
        }
    }

    /// Queues a reply behind the ones already owed.
    private func reply(_ r: Reply, version: Int, context: ChannelHandlerContext) {
        inFlight += 1
        pauseReadingIfNeeded(context: context)
        let value = future(r, on: context.eventLoop)
        repliesDone = repliesDone.and(value).assumeIsolated().map { _, v in
            var buffer = context.channel.allocator.buffer(capacity: 64)
            v.write(to: &buffer, version: version)
            let bytes = buffer.readableBytes
            self.unwrittenBytes += bytes
            // In flight until the socket has taken it: a client that does not read holds
            // back its own pipeline, not the server's memory.
            context.write(self.wrapOutboundOut(buffer)).assumeIsolated().whenComplete { _ in
                self.unwrittenBytes -= bytes
                self.inFlight -= 1
                self.resumeReadingIfPossible(context: context)
            }
            self.scheduleFlush(context: context)
            self.enforceOutputLimit(context: context)
        }.nonisolated()
    }

    /// Closes a connection that leaves more replies unread than its limit allows.
    private func enforceOutputLimit(context: ChannelHandlerContext) {
        var limit = server.options.clientOutputBufferLimit
        if !auth.isAuthenticated { limit = min(limit > 0 ? limit : .max, ServerOptions.unauthenticatedOutputBytes) }
        guard limit > 0, unwrittenBytes > limit, !closing else {
            if !context.channel.isWritable { pauseReadingIfNeeded(context: context) }
            return
        }
        closing = true
        server.outputLimitDisconnections.wrappingAdd(1, ordering: .relaxed)
        server.logger.warning("closing a client over its output-buffer limit", metadata: [
            "client": "\(connection.remote)", "unread-bytes": "\(unwrittenBytes)", "limit": "\(limit)"])
        context.close(promise: nil)
    }

    /// One flush per event-loop turn, however many replies completed in it.
    private func scheduleFlush(context: ChannelHandlerContext) {
        guard !flushScheduled else { return }
        flushScheduled = true
        context.eventLoop.assumeIsolated().execute {
            self.flushScheduled = false
            context.flush()
        }
    }

    /// Stops asking the socket for bytes; the reads of the wakeup under way still arrive and
    /// their commands are dispatched (NIO's read loop does not look at autoRead): the header's
    /// "not a hard cap".
    private func pauseReadingIfNeeded(context: ChannelHandlerContext) {
        guard !readingPaused, inFlight >= server.options.maxPipeline || !context.channel.isWritable else { return }
        readingPaused = true
        context.channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
    }

    private func resumeReadingIfPossible(context: ChannelHandlerContext) {
        guard readingPaused, inFlight <= server.options.maxPipeline / 2, context.channel.isWritable,
              !closing else { return }
        readingPaused = false
        context.channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
        context.read()
    }

    private func closeAfterReplies(context: ChannelHandlerContext) {
        closing = true
        repliesDone.assumeIsolated().whenComplete { _ in
            context.writeAndFlush(self.wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)))
                .assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let protocolError = error as? RESPProtocolError {
            // Already closing (after QUIT, at shutdown or the timeout): the bytes that do not
            // parse came after the last command that counts; the replies owed still go out.
            guard !closing else { return }
            server.protocolErrors.wrappingAdd(1, ordering: .relaxed)
            // Answer after the replies already owed, then close this connection only.
            reply(.now(.error("ERR \(protocolError.description)")), version: connection?.protocolVersion ?? 2, context: context)
            closeAfterReplies(context: context)
            return
        }
        server.logger.debug("connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            // Shutdown: finish what was asked, then close.
            closeAfterReplies(context: context)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}
