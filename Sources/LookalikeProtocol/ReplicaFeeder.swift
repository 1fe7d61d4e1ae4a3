// ReplicaFeeder: the primary's side of one replica's connection, after its PSYNC.
//
// Full sync: a snapshot (Engine.writeSnapshot, on the snapshot executor) into
// <data>/sync-snapshots/, then on the socket
//   +FULLRESYNC <replid> <offset>\r\n
//   FILE <bytes> <relative path>\r\n <the file's bytes>      for data.mdb and each segment file
//   END\r\n
// and the write stream from <offset> on. Partial resync: +CONTINUE <replid>\r\n and the stream
// from the offset asked for, out of the backlog (ReplicationLog).
// The stream is pulled from the backlog while the socket is writable, so a slow replica holds
// back only itself; one that falls behind the backlog is disconnected (it resyncs). A lone
// "\n" is sent after a second without data: a keepalive the replica skips, outside the
// stream's offsets.
// Invariants: stream bytes go out in order, none twice, none skipped; nothing is sent before
// the snapshot's END; the snapshot folder is removed once sent or when the link drops.
// Threads: the connection's event loop (a ChannelHandler); the log's listener only schedules.
import Foundation
import LookalikeEngine
import NIOCore
import NIOPosix
import Synchronization

final class ReplicaFeeder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = IOData

    private let server: ServerContext
    private let id: Int
    private var context: ChannelHandlerContext?
    private var log: ReplicationLog
    private var listener: Int?
    private var position: UInt64 = 0
    private var online = false
    private var lastWrite = NIODeadline.now()
    private var keepalive: RepeatedTask?
    private var snapshotFolder: String?
    private let pumpScheduled = Flag()
    static let sequence = Atomic<Int>(0)

    init(server: ServerContext, connection id: Int) {
        self.server = server
        self.id = id
        self.log = server.engine.replication
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    /// Starts the sync PSYNC asked for: `replid` and `offset` as the replica sent them
    /// (offset: the first byte it lacks, counted from 1 as Redis does).
    func start(replid: String, offset: Int) {
        guard let context else { return }
        let from = UInt64(max(0, offset - 1))
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let flag = pumpScheduled
        let loop = context.eventLoop
        listener = log.addListener {
            if !flag.value.exchange(true, ordering: .acquiringAndReleasing) {
                loop.execute { flag.value.store(false, ordering: .releasing); bound.value.pump() }
            }
        }
        keepalive = context.eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            bound.value.keepAlive()
        }
        if offset > 0, log.canContinue(replid: replid, from: from) {
            server.logger.info("replica continues from the backlog", metadata: ["replica": "\(id)", "offset": "\(from)"])
            server.replication.replicas.partialSyncs.wrappingAdd(1, ordering: .relaxed)
            send("+CONTINUE \(log.position.replid)\r\n")
            goOnline(at: from)
        } else {
            if replid != "?" { server.replication.replicas.refusedPartialSyncs.wrappingAdd(1, ordering: .relaxed) }
            server.replication.replicas.fullSyncs.wrappingAdd(1, ordering: .relaxed)
            fullSync(bound: bound)
        }
    }

    private func fullSync(bound: NIOLoopBound<ReplicaFeeder>) {
        let n = Self.sequence.wrappingAdd(1, ordering: .relaxed).newValue
        let folder = "\(server.options.dataDirectory)/\(Engine.syncSnapshotFolder)/replica-\(id)-\(n)"
        try? FileManager.default.createDirectory(atPath: (folder as NSString).deletingLastPathComponent,
                                                 withIntermediateDirectories: true)
        snapshotFolder = folder
        let engine = server.engine
        let loop = context!.eventLoop
        server.logger.info("full sync of a replica: writing a snapshot", metadata: ["replica": "\(id)"])
        server.snapshots.run(engine, to: folder, bytesPerSecond: server.options.snapshotBytesPerSecond) { result in
            loop.execute { bound.value.sendSnapshot(result) }
        }
    }

    private func sendSnapshot(_ result: Result<SnapshotSummary, Error>) {
        guard let context, context.channel.isActive else { return removeSnapshot() }
        let summary: SnapshotSummary
        switch result {
        case .failure(let e):
            server.logger.error("full sync failed: no snapshot", metadata: ["replica": "\(id)", "error": "\(e)"])
            removeSnapshot()
            context.close(promise: nil)
            return
        case .success(let s): summary = s
        }
        send("+FULLRESYNC \(log.position.replid) \(summary.position.offset)\r\n")
        do {
            for file in summary.files {
                let path = summary.path + "/" + file
                let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
                send("FILE \(size) \(file)\r\n")
                let handle = try NIOFileHandle(_deprecatedPath: path)
                let region = FileRegion(fileHandle: handle, readerIndex: 0, endIndex: size)
                context.write(wrapOutboundOut(.fileRegion(region))).whenComplete { _ in try? handle.close() }
            }
        } catch {
            server.logger.error("full sync failed: cannot read the snapshot", metadata: ["replica": "\(id)", "error": "\(error)"])
            context.close(promise: nil)
            return
        }
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.byteBuffer(ByteBuffer(string: "END\r\n"))), promise: promise)
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        promise.futureResult.whenComplete { _ in bound.value.removeSnapshot() }
        server.logger.info("full sync sent", metadata: ["replica": "\(id)", "bytes": "\(summary.bytes)",
                                                        "offset": "\(summary.position.offset)"])
        goOnline(at: summary.position.offset)
    }

    private func goOnline(at offset: UInt64) {
        position = offset
        online = true
        server.replication.replicas.setOnline(id, offset: offset)
        pump()
    }

    /// Sends the stream from `position` while the socket takes it.
    func pump() {
        guard online, let context, context.channel.isActive else { return }
        guard server.engine.replication === log else {
            // The engine was replaced (DEBUG RELOAD, a full sync of our own): start over.
            context.close(promise: nil)
            return
        }
        var wrote = false
        while context.channel.isWritable {
            guard let bytes = log.bytes(from: position, max: 1 << 20) else {
                server.logger.warning("replica fell behind the replication backlog; it will resync (raise --repl-backlog-mb)",
                                      metadata: ["replica": "\(id)"])
                context.close(promise: nil)
                return
            }
            if bytes.isEmpty { break }
            position += UInt64(bytes.count)
            context.write(wrapOutboundOut(.byteBuffer(ByteBuffer(bytes: bytes))), promise: nil)
            wrote = true
        }
        if wrote {
            context.flush()
            lastWrite = .now()
        }
    }

    private func keepAlive() {
        guard online, let context, NIODeadline.now() - lastWrite >= .seconds(1) else { return }
        send("\n")
    }

    private func send(_ text: String) {
        guard let context else { return }
        context.writeAndFlush(wrapOutboundOut(.byteBuffer(ByteBuffer(string: text))), promise: nil)
        lastWrite = .now()
    }

    private func removeSnapshot() {
        if let folder = snapshotFolder { try? FileManager.default.removeItem(atPath: folder) }
        snapshotFolder = nil
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        pump()
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let listener { log.removeListener(listener) }
        listener = nil
        keepalive?.cancel()
        online = false
        server.replication.replicas.remove(id)
        removeSnapshot()
        server.logger.info("replica disconnected", metadata: ["replica": "\(id)"])
        context.fireChannelInactive()
    }
}

/// A flag shared with closures on other threads.
final class Flag: Sendable {
    let value = Atomic<Bool>(false)
}
