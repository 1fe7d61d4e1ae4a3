// ConnectionLimiter: the first handler of every connection's pipeline: counts connections
// (INFO's connected_clients, total_connections_received) and turns away the one over
// `--maxclients` with Redis's error, before any command is read.
// Invariants: a connection is counted once, and uncounted once when it goes.
// Threads: the connection's event loop.
import NIOCore

/// Counts connections and turns away the one over the limit with Redis's error.
public final class ConnectionLimiter: ChannelInboundHandler {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer
    private let server: ServerContext
    private var counted = false

    public init(server: ServerContext) { self.server = server }

    public func channelActive(context: ChannelHandlerContext) {
        server.totalConnections.wrappingAdd(1, ordering: .relaxed)
        let now = server.connectedClients.wrappingAdd(1, ordering: .relaxed).newValue
        counted = true
        if now > server.options.maxClients {
            server.rejectedConnections.wrappingAdd(1, ordering: .relaxed)
            var buffer = context.channel.allocator.buffer(capacity: 64)
            RESPValue.error("ERR max number of clients reached").write(to: &buffer, version: 2)
            context.writeAndFlush(wrapOutboundOut(buffer)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            return
        }
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        if counted { server.connectedClients.wrappingSubtract(1, ordering: .relaxed) }
        counted = false
        context.fireChannelInactive()
    }
}
