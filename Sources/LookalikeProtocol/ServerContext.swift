// ServerContext: what every connection of one server shares.
//
// Owns: the engine (swappable by DEBUG RELOAD and FLUSHALL), the search thread pool, the
// options, the counters INFO reports, and the hook that stops the server.
// Threads: all members are safe to use from any event loop or pool thread.
import Foundation
import Logging
import LookalikeEngine
import NIOCore
import NIOPosix
import Synchronization

public struct ServerOptions: Sendable {
    public var host = "127.0.0.1"
    public var port = 6379
    public var dataDirectory = "./data"
    /// When set, every command but AUTH, HELLO and QUIT answers -NOAUTH until AUTH succeeds.
    public var password: String?
    public var protocolLimits = ProtocolLimits()
    /// Most simultaneous client connections.
    public var maxClients = 10_000
    /// Close a connection that has sent no complete command for this many seconds and is owed
    /// no reply (0: never). A client trickling a frame byte by byte is closed too.
    public var idleTimeoutSeconds = 0
    /// Commands one connection may have in flight (not yet written back to it) before the
    /// server stops reading from it.
    public var maxPipeline = 8192
    /// Bytes of replies a connection may leave unread before it is disconnected (0: no limit).
    /// Before AUTH the limit is at most `unauthenticatedOutputBytes`.
    public var clientOutputBufferLimit = 256 << 20
    public static let unauthenticatedOutputBytes = 1 << 20
    /// How long and how deep a FILTER expression may be.
    public var filterLimits = FilterLimits()
    /// Threads that run searches and reads (default: one per core).
    public var searchThreads = ProcessInfo.processInfo.activeProcessorCount
    /// Index spec and metric of a collection created by its first VADD.
    public var defaultIndex = "HNSW32"
    public var defaultMetric = Metric.cosine
    public var engine = EngineOptions()
    public init() {}
}

public final class ServerContext: @unchecked Sendable {
    public let options: ServerOptions
    public let logger: Logger
    public let pool: NIOThreadPool
    private let engineBox: Mutex<Engine>
    let startedAt = Date()
    let clientIds = Atomic<Int>(0)
    let connectedClients = Atomic<Int>(0)
    let totalConnections = Atomic<Int>(0)
    let totalCommands = Atomic<Int>(0)
    let rejectedConnections = Atomic<Int>(0)
    /// Clients closed for leaving more than their output-buffer limit unread.
    let outputLimitDisconnections = Atomic<Int>(0)
    /// Clients closed by the timeout (idle, or a frame trickled too slowly).
    let timedOutClients = Atomic<Int>(0)
    /// Connections closed for a malformed or oversized frame.
    let protocolErrors = Atomic<Int>(0)
    /// Called by SHUTDOWN; set by the executable.
    public let shutdownHook = Mutex<(@Sendable () -> Void)?>(nil)
    /// The port actually bound (when 0 was asked for).
    public let boundPort = Atomic<Int>(0)

    public init(options: ServerOptions, engine: Engine, logger: Logger) {
        self.options = options
        self.logger = logger
        engineBox = Mutex(engine)
        pool = NIOThreadPool(numberOfThreads: max(1, options.searchThreads))
        pool.start()
    }

    public var engine: Engine { engineBox.withLock { $0 } }

    /// Closes the engine, reopens the data folder, and swaps the new engine in (DEBUG RELOAD).
    /// Commands of other connections running meanwhile may fail with "shutting down".
    func reloadEngine() throws {
        try engineBox.withLock { engine in
            try? engine.persist()  // a failed seal is retried after the reload; its items are in LMDB
            engine.close()
            engine = try Engine(directory: options.dataDirectory, options: options.engine, logger: logger)
        }
    }

    /// The collection for a key, or nil when it does not exist.
    func collection(_ name: String) -> Collection? { engine.collection(name) }

    public func shutdown() {
        engine.close()
        try? pool.syncShutdownGracefully()
    }
}

/// Per-connection state. Threads: its connection's event loop only.
final class ConnectionState {
    let id: Int
    var protocolVersion = 2
    /// Shared with the connection's decoder, whose limits depend on it.
    let auth: ConnectionAuth
    var authenticated: Bool {
        get { auth.isAuthenticated }
        set { auth.isAuthenticated = newValue }
    }
    var name: String?
    var libraryName: String?
    var libraryVersion: String?
    let remote: String

    init(id: Int, auth: ConnectionAuth, remote: String) {
        self.id = id
        self.auth = auth
        self.remote = remote
    }
}
