// ServerContext: what every connection of one server shares.
//
// Owns: the engine (swappable by DEBUG RELOAD and a replica's full sync), the search thread
// pool, the admin executor (AdminJobs), the options, the counters INFO reports, and the hook
// that stops the server.
// Invariants: the engine lock is held only to read the engine or to close and reopen it, never
// through a seal: connections touching a collection wait at most for a reopen.
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
    /// server stops reading from it. Not a hard cap: the commands in the input already read
    /// (up to 16 reads of 64 KiB in one wakeup) still run (CommandHandler's header).
    public var maxPipeline = 8192
    /// Bytes of replies a connection may leave unread before it is disconnected (0: no limit).
    /// Before AUTH the limit is at most `unauthenticatedOutputBytes`.
    public var clientOutputBufferLimit = 256 << 20
    public static let unauthenticatedOutputBytes = 1 << 20
    /// How long and how deep a FILTER expression may be.
    public var filterLimits = FilterLimits()
    /// SLOWLOG: commands taking at least this many microseconds are logged (negative: none).
    public var slowlogLogSlowerThan = 10_000
    /// SLOWLOG: entries kept.
    public var slowlogMaxLen = 128
    /// Threads that run searches and reads (default: one per core).
    public var searchThreads = ProcessInfo.processInfo.activeProcessorCount
    /// Threads of the admin executor: saves, reloads, compactions, the batch job, REPLICAOF.
    public var adminThreads = 2
    /// Index spec and metric of a collection created by its first VADD.
    public var defaultIndex = "HNSW32"
    public var defaultMetric = Metric.cosine
    public var engine = EngineOptions()
    /// SAVE TO / BGSAVE TO and full syncs write snapshots at most this fast (0: no limit).
    public var snapshotBytesPerSecond = 0
    /// Follow this primary from the start (--replicaof "host port").
    public var replicaOf: (host: String, port: Int)?
    /// INFO slave_priority: Sentinel promotes the replica with the lowest non-zero one.
    public var replicaPriority = 100
    /// The primary's password, for a replica's link (--masterauth-file, LOOKALIKE_MASTERAUTH).
    public var masterPassword: String?
    /// The --config file the settings came from; CONFIG REWRITE writes it (ConfigFile.swift).
    public var configFile: String?
    public init() {}
}

public final class ServerContext: @unchecked Sendable {
    public let options: ServerOptions
    public let logger: Logger
    public let pool: NIOThreadPool
    /// Administrative jobs, off the search pool and the event loops (AdminJobs.swift).
    let admin: AdminJobs
    private let engineBox: Mutex<Engine>
    /// Engine swaps (DEBUG RELOAD, a full sync's install) one at a time.
    private let swapping = NSLock()
    let startedAt = Date()
    /// A random 40-hex-digit id of this run (INFO run_id, master_replid).
    let runId = (0..<40).map { _ in String("0123456789abcdef".randomElement()!) }.joined()
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
    /// Collections created by a first VADD, one at a time, in arrival order (Invocation).
    let creations = DispatchQueue(label: "lookalike.create")
    /// Open connections (CLIENT LIST/KILL, MONITOR).
    let clients = ClientRegistry()
    /// Command counts and times, errors, the slow log (INFO, SLOWLOG).
    let stats: CommandStats
    /// Unix time of the last successful SAVE (or of the start), for LASTSAVE.
    let lastSave = Atomic<Int>(Int(Date().timeIntervalSince1970))
    /// The executor that writes snapshots (backups, replicas' full syncs).
    let snapshots = Snapshots()
    /// This server's role, its replicas, its link to its primary (Replication.swift).
    let replication: Replication
    /// PUBLISH / SUBSCRIBE (PubSub.swift).
    let pubsub = PubSub()
    /// Highest heap use INFO has seen.
    let peakMemory = Atomic<Int>(0)
    private let sampler: DispatchSourceTimer
    /// Called by SHUTDOWN; set by the executable.
    public let shutdownHook = Mutex<(@Sendable () -> Void)?>(nil)
    /// The port actually bound (when 0 was asked for).
    public let boundPort = Atomic<Int>(0)
    /// Settings CONFIG SET changed since the start, which CONFIG REWRITE writes.
    let changedSettings = Mutex<Set<String>>([])

    /// `metrics`: the Prometheus metrics commands feed (nil: no metrics port).
    public init(options: ServerOptions, engine: Engine, logger: Logger, metrics: ServerMetrics? = nil) {
        self.options = options
        self.logger = logger
        engineBox = Mutex(engine)
        replication = Replication(priority: options.replicaPriority)
        pool = NIOThreadPool(numberOfThreads: max(1, options.searchThreads))
        pool.start()
        admin = AdminJobs(threads: options.adminThreads)
        stats = CommandStats(slowerThanMicros: options.slowlogLogSlowerThan, maxLength: options.slowlogMaxLen,
                             metrics: metrics, logger: logger)
        sampler = DispatchSource.makeTimerSource(queue: .global(qos: .utility))
        sampler.schedule(deadline: .now() + .milliseconds(100), repeating: .milliseconds(100))
        sampler.setEventHandler { [weak self] in
            guard let self else { return }
            stats.sample(total: totalCommands.load(ordering: .relaxed))
        }
        sampler.resume()
    }

    public var engine: Engine { engineBox.withLock { $0 } }

    /// Seals, closes the engine, reopens the data folder, and swaps the new engine in (DEBUG
    /// RELOAD). The seal (minutes for a large unsealed tail) runs outside the engine lock, so
    /// every connection goes on meanwhile; only the close and reopen hold it (LMDB opens one
    /// environment once per process: the new engine cannot open before the old one closes).
    /// Writes made after the seal are replayed by the reopen. Commands of other connections
    /// running during the close may fail with "shutting down".
    func reloadEngine() throws {
        swapping.lock()
        defer { swapping.unlock() }
        let started = Date()
        try? engine.persist()  // a failed seal is retried after the reload; its items are in LMDB
        let sealed = Date()
        try engineBox.withLock { engine in
            engine.close()
            engine = try Engine(directory: options.dataDirectory, options: options.engine, logger: logger)
        }
        logger.info("DEBUG RELOAD done", metadata: [
            "seal-seconds": "\(String(format: "%.3f", sealed.timeIntervalSince(started)))",
            "reopen-seconds": "\(String(format: "%.3f", Date().timeIntervalSince(sealed)))"])  // commands waited this long
    }

    /// Replaces the data folder with a replica's full-sync download and reopens the engine on it
    /// (Engine.installSnapshot). Commands running meanwhile may fail with "shutting down"; new
    /// ones wait for the reopen (0.3 s for 100k × 384 with sealed segments) rather than see the
    /// closed engine's empty registry and answer that a collection does not exist.
    func replaceData(withSnapshot folder: String) throws {
        swapping.lock()
        defer { swapping.unlock() }
        try engineBox.withLock { engine in
            engine.close()
            try Engine.installSnapshot(folder, into: options.dataDirectory, logger: logger)
            engine = try Engine(directory: options.dataDirectory, options: options.engine, logger: logger)
        }
    }

    /// Starts as a primary (a history of its own) or follows the primary --replicaof names.
    public func startReplication() {
        if let p = options.replicaOf {
            replication.replicaOf(host: p.host, port: p.port, server: self)
        } else {
            engine.replication.startNewHistory()
        }
    }

    /// The collection for a key, or nil when it does not exist (counted as a keyspace hit or miss).
    func collection(_ name: String) -> Collection? {
        let c = engine.collection(name)
        if c == nil { stats.keyspaceMisses.wrappingAdd(1, ordering: .relaxed) } else { stats.keyspaceHits.wrappingAdd(1, ordering: .relaxed) }
        return c
    }

    /// Stops replication, lets running admin jobs finish (queued ones are refused), closes the
    /// engine and the search pool. Not from an admin job.
    public func shutdown() {
        sampler.cancel()
        admin.shutdown()  // first: a running REPLICAOF must not start a link after the stop below
        replication.currentLink?.stop()
        engine.close()
        try? pool.syncShutdownGracefully()
    }
}

/// Per-connection state. Threads: its connection's event loop only.
/// What CLIENT LIST shows is pushed to the server's ClientRegistry as it changes.
final class ConnectionState {
    let id: Int
    private let registry: ClientRegistry
    var protocolVersion = 2 { didSet { registry.update(id) { [protocolVersion] in $0.protocolVersion = protocolVersion } } }
    /// Shared with the connection's decoder, whose limits depend on it.
    let auth: ConnectionAuth
    var authenticated: Bool {
        get { auth.isAuthenticated }
        set { auth.isAuthenticated = newValue }
    }
    var name: String? { didSet { registry.update(id) { [name] in $0.name = name ?? "" } } }
    var libraryName: String? { didSet { registry.update(id) { [libraryName] in $0.libraryName = libraryName ?? "" } } }
    var libraryVersion: String? { didSet { registry.update(id) { [libraryVersion] in $0.libraryVersion = libraryVersion ?? "" } } }
    let remote: String
    /// Done when this connection's collection creations have queued their first writes.
    var creationsDone: EventLoopFuture<Void>?

    init(id: Int, auth: ConnectionAuth, remote: String, registry: ClientRegistry) {
        self.id = id
        self.auth = auth
        self.remote = remote
        self.registry = registry
    }
}
