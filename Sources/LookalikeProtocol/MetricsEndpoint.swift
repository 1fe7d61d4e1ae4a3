// MetricsEndpoint: the HTTP/1 port of --metrics-port: `GET /metrics` (Prometheus text format)
// and `GET /healthz` (is the server ready?).
//
// Owns: its listening channel, the health state, and one pool thread that runs scrapes.
// /healthz answers 200 `serving` once the RESP port listens, 503 `loading` while the engine
// opens (the endpoint starts before it), 503 `stopping` once shutdown began, and 503
// `read-only: ...` while writes fail as a whole (a full disk or map: the last transaction
// failed and none has committed since, WriteQueue.swift). Reads go on meanwhile, and the
// state clears by itself at the next commit, so a probe sees the node recover.
// Invariants: a scrape never runs on the event loop (it reads LMDB for item counts); scrapes
// run one at a time on the endpoint's own pool thread, so the RESP search pool is never
// taken by monitoring. Anything but GET /metrics and GET /healthz answers 404 or 405.
// Threads: `start` and `attach` from the starting thread; the handler on its event loop.
import CoreMetrics
import Foundation
import LookalikeEngine
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import Synchronization

public final class MetricsEndpoint: Sendable {
    public enum Health: Int, Sendable {
        case loading, serving, stopping
        var text: String { ["loading", "serving", "stopping"][rawValue] }
    }

    let registry: PrometheusCollectorRegistry
    public let metrics: ServerMetrics
    private let health = Atomic<Int>(Health.loading.rawValue)
    private let server = Mutex<ServerContext?>(nil)
    private let pool = NIOThreadPool(numberOfThreads: 1)
    private let channel: Channel
    public var port: Int { channel.localAddress?.port ?? 0 }

    /// Binds host:port on `group` and serves at once (health `loading` until `attach`).
    public init(host: String, port: Int, group: EventLoopGroup, registry: PrometheusCollectorRegistry,
                metrics: ServerMetrics) throws {
        self.registry = registry
        self.metrics = metrics
        pool.start()
        let box = Box()
        channel = try ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(MetricsHTTPHandler(endpoint: box.endpoint!))
                }
            }
            .bind(host: host, port: port).wait()
        box.endpoint = self
    }

    /// The server's metrics: bootstraps swift-metrics (once per process) with the Prometheus
    /// factory of ServerMetrics, and opens the endpoint on an event loop of its own.
    public static func bootstrap(host: String, port: Int, maxCollections: Int) throws -> MetricsEndpoint {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(ServerMetrics.factory(registry: registry))
        return try MetricsEndpoint(host: host, port: port, group: MultiThreadedEventLoopGroup(numberOfThreads: 1),
                                   registry: registry, metrics: ServerMetrics(maxCollections: maxCollections))
    }

    /// The endpoint is created before the handlers can refer to it; they read it from here.
    private final class Box: @unchecked Sendable { var endpoint: MetricsEndpoint? }

    /// The server is listening: scrapes read it, and /healthz answers `serving`.
    public func attach(_ server: ServerContext) {
        self.server.withLock { $0 = server }
        health.store(Health.serving.rawValue, ordering: .relaxed)
    }

    public func setHealth(_ h: Health) { health.store(h.rawValue, ordering: .relaxed) }
    var currentHealth: Health { Health(rawValue: health.load(ordering: .relaxed)) ?? .loading }

    /// /healthz's answer: ready only while serving with writes committing; `read-only` while
    /// every write fails (a full disk or map: reads still answer, WriteQueue's `failure`).
    func healthReport() -> (ready: Bool, text: String) {
        let health = currentHealth
        guard health == .serving else { return (false, health.text) }
        guard let failure = server.withLock({ $0 })?.engine.writeFailure else { return (true, health.text) }
        let since = ISO8601DateFormatter().string(from: failure.since)
        return (false, RESPValue.oneLine("read-only: writes failing since \(since): \(failure.error.prefix(300))"))
    }

    /// The text of /metrics, gathered on the pool thread.
    func scrape(on loop: EventLoop) -> EventLoopFuture<[UInt8]> {
        pool.runIfActive(eventLoop: loop) { [self] in
            if let server = server.withLock({ $0 }), currentHealth == .serving { metrics.refresh(server) }
            return registry.emitToBuffer()
        }
    }

    public func close() {
        try? channel.close().wait()
        try? pool.syncShutdownGracefully()
    }
}

/// One HTTP connection of the metrics port. Threads: its event loop.
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    private let endpoint: MetricsEndpoint
    private var request: HTTPRequestHead?

    init(endpoint: MetricsEndpoint) { self.endpoint = endpoint }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): request = head
        case .body: break
        case .end:
            guard let head = request else { return }
            request = nil
            answer(head, context: context)
        }
    }

    private func answer(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        guard head.method == .GET || head.method == .HEAD else {
            return respond(.methodNotAllowed, Array("only GET\n".utf8), head: head, context: context)
        }
        switch path {
        case "/metrics":
            endpoint.scrape(on: context.eventLoop).assumeIsolated().whenComplete { result in
                switch result {
                case .success(let text):
                    self.respond(.ok, text, type: "text/plain; version=0.0.4; charset=utf-8", head: head, context: context)
                case .failure:
                    self.respond(.serviceUnavailable, Array("stopping\n".utf8), head: head, context: context)
                }
            }
        case "/healthz":
            let (ready, text) = endpoint.healthReport()
            respond(ready ? .ok : .serviceUnavailable, Array((text + "\n").utf8), head: head, context: context)
        default:
            respond(.notFound, Array("not found: try /metrics or /healthz\n".utf8), head: head, context: context)
        }
    }

    private func respond(_ status: HTTPResponseStatus, _ body: [UInt8], type: String = "text/plain; charset=utf-8",
                         head request: HTTPRequestHead, context: ChannelHandlerContext) {
        var headers = HTTPHeaders([("Content-Type", type), ("Content-Length", String(body.count))])
        let keepAlive = request.isKeepAlive
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))), promise: nil)
        if request.method != .HEAD {
            var buffer = context.channel.allocator.buffer(capacity: body.count)
            buffer.writeBytes(body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            if !keepAlive { context.close(promise: nil) }
        }
    }
}
