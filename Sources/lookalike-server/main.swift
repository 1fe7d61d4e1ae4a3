// lookalike-server: the TCP front door. Parses flags, opens the engine on a data folder, and
// serves Redis's protocol with SwiftNIO until SIGTERM, SIGINT or SHUTDOWN.
//
// Pipeline of a connection: ConnectionLimiter -> RESPDecoder -> CommandHandler (the decoder and
// the handler share the connection's AUTH state: the decoder's limits are smaller before AUTH).
// Start: the --config file's directives become flags the command line overrides
// (ConfigArguments.swift); with --metrics-port the metrics endpoint opens before the engine,
// so /healthz says `loading` meanwhile; READY=1 goes to systemd once the port listens.
// Shutdown: stop accepting, let every connection finish the commands it sent
// (ServerQuiescingHelper), close the engine (which commits queued writes), exit 0.
import ArgumentParser
import Dispatch
import Foundation
import Logging
import LookalikeEngine
import LookalikeProtocol
import NIOCore
import NIOExtras
import NIOPosix
import Synchronization

@main
struct LookalikeServer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lookalike-server",
        abstract: "Serves look-alike search over Redis's protocol (RESP2/RESP3, inline commands, vector-set commands).",
        discussion: "Every flag is described in Docs/server.md.")

    @Option(help: "Settings file in Redis's format, one `flag value` per line (Docs/operations.md); flags on the command line override it.") var config: String?
    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "TCP port (0 picks a free one).") var port = 6379
    @Option(help: "Data folder (LMDB and segment files); created if missing.") var data = "./data"
    @Option(help: "Require AUTH with this password (visible in ps: prefer --requirepass-file or LOOKALIKE_REQUIREPASS).") var requirepass: String?
    @Option(help: "Require AUTH with the password in this file (its first line).") var requirepassFile: String?
    @Option(help: "Folder of collection definitions (*.json) to create at start if missing.") var indexes: String?

    @Option(help: "Most client connections.") var maxClients = 10_000
    @Option(help: "Close connections that complete no command for this many seconds (0: never).") var timeout = 0
    @Option(help: "Largest argument (bulk string) in bytes.") var maxBulkBytes = 64 << 20
    @Option(help: "Most arguments in one command.") var maxArguments = 1 << 20
    @Option(help: "Longest inline command line in bytes.") var maxInlineBytes = 64 << 10
    @Option(help: "Largest command in bytes.") var maxFrameBytes = 256 << 20
    @Option(help: "Commands in flight on one connection at which reading from it pauses (the input already read, up to about 1 MiB, still runs).") var maxPipeline = 8192
    @Option(help: "Bytes of unread replies after which a client is disconnected (0: no limit).") var clientOutputBufferLimit = 256 << 20
    @Option(help: "Before AUTH: largest argument or inline line in bytes.") var maxUnauthenticatedBytes = 16 << 10
    @Option(help: "Before AUTH: most arguments in one command.") var maxUnauthenticatedArguments = 10
    @Option(help: "Longest FILTER expression in bytes.") var maxFilterBytes = 65_536
    @Option(help: "Deepest FILTER expression tree (a chain a + b + c is as deep as it is long).") var maxFilterDepth = 1_000
    @Option(help: "Threads for searches and reads (default: cores).") var threads = ProcessInfo.processInfo.activeProcessorCount
    @Option(help: "Threads for administrative jobs: SAVE, BGSAVE, DEBUG RELOAD, VCOMPACT, VNEWNEIGHBORS, REPLICAOF, SHUTDOWN (long jobs take at most all but one).") var adminThreads = 2
    @Option(help: "Index spec of a collection created by its first VADD.") var defaultIndex = "HNSW32"
    @Option(help: "Metric of a collection created by its first VADD: cosine, l2, ip.") var defaultMetric = "cosine"

    @Option(help: "LMDB map size in GiB (the most the database may hold).") var mapSizeGib = 64
    @Option(help: "Durability: full (fsync each commit), nometasync, none.") var sync = "full"
    @Option(help: "LMDB reader slots.") var maxReaders = 254
    @Option(help: "Items in a collection's mutable segment (its live HNSW graph, or an exact segment for other index types) before it is sealed.") var sealThreshold = 100_000
    @Option(help: "HNSW efConstruction of collections that set none (VADD ... EF).") var efConstruction = 200
    @Option(help: "MiB of written vectors not yet linked into a graph above which writes are acknowledged later (backpressure).") var maxUnindexedMb = 1
    @Option(help: "Nice value of the threads that link new items, seal and merge segments (0-19; higher yields more to searches).") var buildNice = 10
    @Option(help: "HNSW efConstruction for linking while writers wait for the indexer and searches are being served (writes keep their rate; 0: always the collection's own).") var catchUpEfConstruction = 64
    @Option(help: "Scheduling policy of those threads: idle (SCHED_IDLE: a waking search preempts them at once, but they get no CPU while the machine is busy) or normal (the nice value alone).") var buildPolicy = "normal"
    @Option(help: "Sealed segments of one size tier merged into one in the background (0: no merging).") var mergeFactor = 8
    @Option(help: "Most writes per group commit.") var maxBatch = 8192
    @Option(help: "Longest element name in bytes (at most 511).") var maxKeyBytes = 511
    @Option(help: "Longest attributes JSON in bytes.") var maxAttributeBytes = 65_536
    @Option(help: "Largest vector dimension.") var maxDimension = 65_536
    @Option(help: "Largest COUNT of a query.") var maxCount = 10_000
    @Option(help: "Largest HNSW efSearch.") var maxEfSearch = 4096
    @Option(help: "Filters with at most this many members in a segment are scanned exactly there; above, a cost model chooses.") var exactFilterLimit = 1_000
    @Option(help: "A post-filtered query (a large filter) searches unfiltered at efSearch this many times the candidates it needs (1-64).") var postFilterDepth = 6
    @Option(help: "Compressed HNSW collections (Q8, HNSWn,SQ8, HNSWn,SQfp16) without their own rescore re-rank COUNT × this many candidates with the exact vectors; 0 = off.") var rescoreOversampling = 4
    @Option(help: "MiB of resolved filters kept per collection for the next query with the same filter.") var filterCacheMb = 64
    @Option(help: "OpenMP threads for sealing (building indexes); 0: all cores.") var buildThreads = 0
    @Option(help: "Memory-map sealed IVF segments (true) or read them into memory (false).") var mmapIvf = true
    @Option(help: "Threads for the new-items batch job (VNEWNEIGHBORS); 0: all cores.") var batchJobThreads = 0
    @Option(help: "MiB of new items' vectors the batch job holds at once (more take several passes).") var batchJobMemoryMb = 1024
    @Option(help: "Seconds a cascade's TOP ranking is kept before it is rebuilt.") var rankingRefreshSeconds = 60.0
    @Option(help: "Train a per-collection category model for VPREDICT and CATEGORY AUTO (false: the neighbour vote alone).") var categoryModel = true
    @Option(help: "Items with a category a collection needs before its category model is trained.") var categoryModelMinItems = 200
    @Option(help: "The category model is retrained once new vectors reach this fraction of the items it was trained on.") var categoryModelRetrainFraction = 0.1
    @Option(help: "Most items a category model fit reads (a seeded sample above it).") var categoryModelMaxItems = 200_000
    @Option(help: "SLOWLOG keeps commands taking at least this many microseconds (negative: none).") var slowlogLogSlowerThan = 10_000
    @Option(help: "SLOWLOG entries kept.") var slowlogMaxLen = 128
    @Option(help: "Follow this primary: \"host port\" (REPLICAOF at runtime; Docs/replication.md).") var replicaof: String?
    @Option(help: "A replica authenticates to its primary with the first line of this file (or LOOKALIKE_MASTERAUTH).") var masterauthFile: String?
    @Option(help: "MiB of the latest write stream kept so a replica that lost its link briefly resumes without a full sync.") var replBacklogMb = 64
    @Option(help: "INFO slave_priority: Sentinel promotes the replica with the lowest non-zero value; 0: never.") var replicaPriority = 100
    @Option(help: "MiB per second a snapshot (SAVE TO, BGSAVE TO, a replica's full sync) may write; 0: no limit.") var snapshotRateMb = 0
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.") var logLevel = "info"
    @Option(help: "Log line format: text, logfmt, json.") var logFormat = "text"
    @Option(help: "HTTP port of the Prometheus metrics and /healthz (0: off).") var metricsPort = 0
    @Option(help: "Address the metrics port listens on.") var metricsHost = "127.0.0.1"
    @Option(help: "Distinct collections with metrics of their own; the others share the label _other.") var metricsMaxCollections = 100

    func validate() throws {
        guard SyncMode(rawValue: sync) != nil else { throw ValidationError("--sync must be full, nometasync or none") }
        guard Metric(rawValue: defaultMetric) != nil else { throw ValidationError("--default-metric must be cosine, l2 or ip") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0 to 65535") }
        guard (0...65535).contains(metricsPort) else { throw ValidationError("--metrics-port must be 0 to 65535") }
        guard LogFormat(rawValue: logFormat) != nil else { throw ValidationError("--log-format must be text, logfmt or json") }
        guard metricsMaxCollections >= 0 else { throw ValidationError("--metrics-max-collections must be zero or more") }
        guard maxKeyBytes >= 1 && maxKeyBytes <= 511 else { throw ValidationError("--max-key-bytes must be 1 to 511") }
        for (name, v) in [("--max-clients", maxClients), ("--max-pipeline", maxPipeline), ("--threads", threads),
                          ("--admin-threads", adminThreads),
                          ("--map-size-gib", mapSizeGib), ("--seal-threshold", sealThreshold), ("--max-batch", maxBatch),
                          ("--max-count", maxCount), ("--max-ef-search", maxEfSearch), ("--max-bulk-bytes", maxBulkBytes),
                          ("--max-arguments", maxArguments), ("--max-inline-bytes", maxInlineBytes),
                          ("--max-unauthenticated-bytes", maxUnauthenticatedBytes),
                          ("--max-unauthenticated-arguments", maxUnauthenticatedArguments),
                          ("--max-filter-bytes", maxFilterBytes), ("--max-filter-depth", maxFilterDepth),
                          ("--ef-construction", efConstruction), ("--max-unindexed-mb", maxUnindexedMb)] where v < 1 {
            throw ValidationError("\(name) must be positive")
        }
        guard clientOutputBufferLimit >= 0 else { throw ValidationError("--client-output-buffer-limit must be zero or more") }
        guard requirepass == nil || requirepassFile == nil else {
            throw ValidationError("give --requirepass or --requirepass-file, not both")
        }
        guard mergeFactor == 0 || mergeFactor >= 2 else { throw ValidationError("--merge-factor must be 0 (off) or at least 2") }
        guard (0...19).contains(buildNice) else { throw ValidationError("--build-nice must be 0 to 19") }
        guard ["idle", "normal"].contains(buildPolicy) else { throw ValidationError("--build-policy must be idle or normal") }
        guard efConstruction <= 4096 else { throw ValidationError("--ef-construction must be at most 4096") }
        guard (0...4096).contains(catchUpEfConstruction) else { throw ValidationError("--catch-up-ef-construction must be 0 (off) to 4096") }
        guard categoryModelRetrainFraction >= 0 && categoryModelRetrainFraction.isFinite else {
            throw ValidationError("--category-model-retrain-fraction must be zero or more")
        }
        guard categoryModelMinItems >= 2, categoryModelMaxItems >= categoryModelMinItems else {
            throw ValidationError("--category-model-min-items must be at least 2 and --category-model-max-items at least that")
        }
        guard batchJobMemoryMb >= 1 else { throw ValidationError("--batch-job-memory-mb must be positive") }
        guard rankingRefreshSeconds >= 0 && rankingRefreshSeconds.isFinite else {
            throw ValidationError("--ranking-refresh-seconds must be zero or more")
        }
        guard (1...64).contains(postFilterDepth) else { throw ValidationError("--post-filter-depth must be from 1 to 64") }
        guard (0...100).contains(rescoreOversampling) else { throw ValidationError("--rescore-oversampling must be from 0 (off) to 100") }
        for (name, v) in [("--exact-filter-limit", exactFilterLimit), ("--filter-cache-mb", filterCacheMb),
                          ("--build-threads", buildThreads), ("--batch-job-threads", batchJobThreads),
                          ("--snapshot-rate-mb", snapshotRateMb), ("--repl-backlog-mb", replBacklogMb),
                          ("--replica-priority", replicaPriority)] where v < 0 {
            throw ValidationError("\(name) must be zero or more")
        }
    }

    /// The password: --requirepass, else the first line of --requirepass-file, else the
    /// LOOKALIKE_REQUIREPASS environment variable; the last two keep it out of `ps`.
    func password() throws -> String? {
        if let requirepass { return requirepass }
        if let fromFile = try firstLine(of: requirepassFile, flag: "--requirepass-file") { return fromFile }
        if let fromEnvironment = ProcessInfo.processInfo.environment["LOOKALIKE_REQUIREPASS"], !fromEnvironment.isEmpty {
            return fromEnvironment
        }
        return nil
    }

    /// The first line of a password file (nil without a file).
    func firstLine(of file: String?, flag: String) throws -> String? {
        guard let file else { return nil }
        guard let text = try? String(contentsOfFile: file, encoding: .utf8),
              let line = text.split(separator: "\n", omittingEmptySubsequences: false).first,
              !line.isEmpty else {
            throw ValidationError("\(flag) \(file): cannot read a password from its first line")
        }
        return String(line.hasSuffix("\r") ? line.dropLast() : line)
    }

    /// --replicaof "host port" (or "host:port").
    func replicaOfAddress() throws -> (host: String, port: Int)? {
        guard let replicaof else { return nil }
        let words = replicaof.split(whereSeparator: { $0 == " " || $0 == ":" }).map(String.init)
        guard words.count == 2, let port = Int(words[1]), (1...65535).contains(port) else {
            throw ValidationError("--replicaof must be \"host port\", e.g. --replicaof \"10.0.0.5 6379\"")
        }
        return (words[0], port)
    }

    func options() throws -> ServerOptions {
        var o = ServerOptions()
        o.host = host
        o.port = port
        o.dataDirectory = data
        o.configFile = config
        o.password = try password()
        o.clientOutputBufferLimit = clientOutputBufferLimit
        o.protocolLimits.unauthenticatedBytes = maxUnauthenticatedBytes
        o.protocolLimits.unauthenticatedArguments = maxUnauthenticatedArguments
        o.filterLimits.maxBytes = maxFilterBytes
        o.filterLimits.maxDepth = maxFilterDepth
        o.slowlogLogSlowerThan = slowlogLogSlowerThan
        o.slowlogMaxLen = max(0, slowlogMaxLen)
        o.snapshotBytesPerSecond = snapshotRateMb << 20
        o.replicaOf = try replicaOfAddress()
        o.replicaPriority = replicaPriority
        o.masterPassword = try firstLine(of: masterauthFile, flag: "--masterauth-file")
            ?? ProcessInfo.processInfo.environment["LOOKALIKE_MASTERAUTH"].flatMap { $0.isEmpty ? nil : $0 }
        o.engine.replicationBacklogBytes = replBacklogMb << 20
        o.maxClients = maxClients
        o.idleTimeoutSeconds = timeout
        o.maxPipeline = maxPipeline
        o.searchThreads = threads
        o.adminThreads = adminThreads
        o.defaultIndex = defaultIndex
        o.defaultMetric = Metric(rawValue: defaultMetric)!
        o.protocolLimits.maxBulkBytes = maxBulkBytes
        o.protocolLimits.maxArguments = maxArguments
        o.protocolLimits.maxInlineBytes = maxInlineBytes
        o.protocolLimits.maxFrameBytes = maxFrameBytes
        o.engine.storage.mapSize = mapSizeGib << 30
        o.engine.storage.sync = SyncMode(rawValue: sync)!
        o.engine.storage.maxReaders = maxReaders
        o.engine.sealThreshold = sealThreshold
        o.engine.efConstruction = efConstruction
        o.engine.maxUnindexedBytes = maxUnindexedMb << 20
        o.engine.buildNice = buildNice
        o.engine.buildIdle = buildPolicy == "idle"
        o.engine.catchUpEfConstruction = catchUpEfConstruction
        o.engine.mergeFactor = mergeFactor
        o.engine.maxBatch = maxBatch
        o.engine.maxKeyBytes = maxKeyBytes
        o.engine.maxAttributeBytes = maxAttributeBytes
        o.engine.maxDimension = maxDimension
        o.engine.maxK = maxCount
        o.engine.maxEfSearch = maxEfSearch
        o.engine.exactFilterLimit = exactFilterLimit
        o.engine.postFilterDepth = postFilterDepth
        o.engine.rescoreOversampling = rescoreOversampling
        o.engine.filterCacheBytes = filterCacheMb << 20
        o.engine.buildThreads = buildThreads
        o.engine.mmapIVF = mmapIvf
        o.engine.batchJobThreads = batchJobThreads
        o.engine.batchJobMemory = batchJobMemoryMb << 20
        o.engine.rankingRefreshSeconds = rankingRefreshSeconds
        o.engine.categoryModel = categoryModel
        o.engine.categoryModelMinItems = categoryModelMinItems
        o.engine.categoryModelRetrainFraction = categoryModelRetrainFraction
        o.engine.categoryModelMaxItems = categoryModelMaxItems
        return o
    }

    func run() throws {
        let (level, format) = (Logger.Level(rawValue: logLevel)!, LogFormat(rawValue: logFormat)!)
        LoggingSystem.bootstrap { LineLogHandler(label: $0, format: format, level: level) }
        let logger = Logger(label: "lookalike.server")
        let options = try options()
        if options.password == nil && !Self.isLoopback(options.host) {
            logger.warning("listening on \(options.host) without a password: anyone who can reach this port can read and delete every collection; set --requirepass-file or LOOKALIKE_REQUIREPASS")
        }
        // Before the engine opens: its metrics bind to the backend on first use, and /healthz
        // answers `loading` meanwhile.
        let metrics = try startMetrics(logger: logger)
        let engine: Engine
        do {
            engine = try Engine(directory: options.dataDirectory, options: options.engine,
                                logger: Logger(label: "lookalike.engine"))
        } catch {
            logger.critical("cannot open the data folder \(options.dataDirectory): \(error)")
            throw ExitCode(1)
        }
        if let indexes { try createPresets(from: indexes, in: engine, logger: logger) }

        let server = ServerContext(options: options, engine: engine, logger: logger, metrics: metrics?.metrics)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, min(options.searchThreads, System.coreCount)))
        let quiesce = ServerQuiescingHelper(group: group)
        let limits = options.protocolLimits
        let requiresAuth = options.password != nil
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(ChannelOptions.maxMessagesPerRead, value: 16)
            // Reading pauses while more than this many reply bytes wait for a slow reader.
            .childChannelOption(ChannelOptions.writeBufferWaterMark, value: .init(low: 256 << 10, high: 1 << 20))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    let auth = ConnectionAuth(isAuthenticated: !requiresAuth)
                    try sync.addHandler(ConnectionLimiter(server: server))
                    try sync.addHandler(ByteToMessageHandler(RESPDecoder(limits: limits, auth: auth)))
                    try sync.addHandler(CommandHandler(server: server, auth: auth))
                }
            }

        // Signals are handled before the port opens: a SIGTERM that arrives as soon as a client
        // can connect must stop the server, never be ignored.
        let stopped = DispatchSemaphore(value: 0)
        let stopOnce = Mutex(false)
        let stop: @Sendable () -> Void = {
            let first = stopOnce.withLock { done -> Bool in
                defer { done = true }
                return !done
            }
            guard first else { return }
            logger.info("shutting down: finishing in-flight commands")
            SystemdNotify.send("STOPPING=1")
            metrics?.setHealth(.stopping)
            let promise = group.next().makePromise(of: Void.self)
            quiesce.initiateShutdown(promise: promise)
            promise.futureResult.whenComplete { _ in stopped.signal() }
        }
        server.shutdownHook.withLock { $0 = stop }
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        signal(SIGPIPE, SIG_IGN)
        let signals = [SIGTERM, SIGINT].map { sig -> DispatchSourceSignal in
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { stop() }
            source.resume()
            return source
        }
        let channel: Channel
        do {
            channel = try bootstrap.bind(host: options.host, port: options.port).wait()
        } catch {
            logger.critical("cannot listen on \(options.host):\(options.port): \(error)")
            engine.close()
            throw ExitCode(1)
        }
        let boundPort = channel.localAddress?.port ?? options.port
        server.boundPort.store(boundPort, ordering: .relaxed)
        server.startReplication()
        let collections = engine.collectionNames().map { name in
            "\(name) (\((try? engine.collection(name)?.itemCount()) ?? 0) items)"
        }
        logger.info("lookalike-server listening on \(options.host):\(boundPort), data \(options.dataDirectory), collections: \(collections.isEmpty ? "none" : collections.joined(separator: ", "))")
        metrics?.attach(server)
        SystemdNotify.send("READY=1\nMAINPID=\(getpid())")

        // The signal sources must outlive the wait: `_ = signals` would not keep them alive in a
        // release build, and SIGTERM would then be ignored.
        withExtendedLifetime(signals) { stopped.wait() }
        // The listening channel closes on its event loop; wait for it before stopping the loops.
        try? channel.closeFuture.wait()
        server.shutdown()
        metrics?.close()
        // The event loops are left to the process exit: every channel is closed and the engine
        // is closed by now, and shutting the group down here races a late task of the
        // quiescing helper onto a closed loop (NIO then reports a scheduling error).
        logger.info("stopped; every acknowledged write is on disk")
    }

    /// The metrics endpoint, when --metrics-port is set: swift-metrics bootstrapped with
    /// Prometheus, and the HTTP port open (on one event loop of its own).
    func startMetrics(logger: Logger) throws -> MetricsEndpoint? {
        guard metricsPort > 0 else { return nil }
        do {
            let endpoint = try MetricsEndpoint.bootstrap(host: metricsHost, port: metricsPort, maxCollections: metricsMaxCollections)
            logger.info("metrics on http://\(metricsHost):\(endpoint.port)/metrics, health on /healthz")
            return endpoint
        } catch {
            logger.critical("cannot listen on \(metricsHost):\(metricsPort) for metrics: \(error)")
            throw ExitCode(1)
        }
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    func createPresets(from folder: String, in engine: Engine, logger: Logger) throws {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: folder))?.filter { $0.hasSuffix(".json") }.sorted() ?? []
        for file in files {
            let definition = try CollectionDefinition.load(path: "\(folder)/\(file)")
            if engine.collection(definition.name) == nil {
                try engine.createCollection(definition)
                logger.info("created collection \(definition.name) from \(folder)/\(file)")
            }
        }
    }
}
