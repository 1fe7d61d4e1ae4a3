// ReplicaLink: a replica's connection to its primary, on a thread of its own.
//
// Handshake as Redis's: PING, AUTH (with --masterauth-file), REPLCONF listening-port <port>, REPLCONF capa eof capa psync2,
// PSYNC <replid> <offset+1> with this node's stream position (ReplicationLog). Then either
//   +FULLRESYNC <replid> <offset>: the snapshot files (ReplicaFeeder's framing) are written to
//     <data>/replica-sync.partial, installed in place of the data folder (the engine is
//     reopened on them: no index is rebuilt), and the stream follows from <offset>;
//   +CONTINUE [<replid>]: the stream follows from where this node stands.
// Stream entries are applied in order through the write queue (Engine.applyReplicated); after
// each applied chunk, and every second, REPLCONF ACK <offset> goes back (WAIT counts those).
// On any error (link lost, primary gone, a stream this node cannot apply) the link waits a
// second and starts over: PSYNC resumes from the backlog when it can, else a full sync.
// Invariants: this node's offset after applying is the primary's offset at the same entry
// (checked; a mismatch forces a full sync). `stop` returns after the thread has ended.
// Threads: its own thread; `status` is read by INFO and ROLE from any thread.
import Foundation
import LookalikeEngine
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

final class ReplicaLink: Sendable {
    struct Status: Sendable {
        var up = false
        var syncing = false
        var roleState = "connect"
        var lastIO = Date()
        var downSince = Date()
        var syncTotal = 0
        var syncRead = 0
    }

    let host: String
    let port: Int
    private let server: ServerContext
    let status = Mutex(Status())
    private let stopping = Atomic<Bool>(false)
    private let socket = Mutex<Int32>(-1)
    private let finished = DispatchSemaphore(value: 0)
    /// Without a byte (data or keepalive) for this long, the primary is taken for gone.
    static let timeoutSeconds = 30.0

    init(host: String, port: Int, server: ServerContext) {
        self.host = host
        self.port = port
        self.server = server
    }

    func start() {
        let t = Thread { [self] in run() }
        t.name = "lookalike-replica-link"
        t.start()
    }

    /// Stops the link and waits for its thread (a download or apply in progress is cut short).
    func stop() {
        stopping.store(true, ordering: .relaxed)
        socket.withLock { fd in if fd >= 0 { shutdown(fd, Int32(SHUT_RDWR)) } }
        finished.wait()
    }

    private var isStopping: Bool { stopping.load(ordering: .relaxed) }

    private func run() {
        var failures = 0
        while !isStopping {
            do {
                try session()
            } catch {
                // Every second while the primary is away: the first failure and one a minute.
                failures = status.withLock { $0.up } ? 1 : failures + 1
                if !isStopping && failures % 60 == 1 {
                    server.logger.warning("replication link to the primary lost; retrying", metadata: [
                        "primary": "\(host):\(port)", "error": "\(error)"])
                }
            }
            status.withLock { s in
                if s.up { s.downSince = Date() }
                s.up = false
                s.syncing = false
                s.roleState = "connect"
            }
            for _ in 0..<10 where !isStopping { usleep(100_000) }
        }
        finished.signal()
    }

    private func session() throws {
        status.withLock { $0.roleState = "connecting" }
        let conn = try LinkSocket(host: host, port: port)
        socket.withLock { $0 = conn.fd }
        defer {
            socket.withLock { $0 = -1 }
            conn.close()
        }
        if isStopping { return }
        try conn.command(["PING"], expect: "+PONG", or: "-NOAUTH")
        if let password = server.options.masterPassword { try conn.command(["AUTH", password], expect: "+OK") }
        try conn.command(["REPLCONF", "listening-port", String(server.boundPort.load(ordering: .relaxed))], expect: "+OK")
        try conn.command(["REPLCONF", "capa", "eof", "capa", "psync2"], expect: "+OK")
        let mine = server.engine.replication.position
        // An empty node has nothing to continue: it asks for a full sync, as a new Redis replica does.
        try conn.send(mine.offset == 0 ? ["PSYNC", "?", "-1"] : ["PSYNC", mine.replid, String(mine.offset + 1)])
        status.withLock { s in s.roleState = "sync"; s.syncing = true; s.syncRead = 0; s.syncTotal = 0 }
        let answer = try conn.line(timeout: 3600)  // the primary writes its snapshot first
        let words = answer.split(separator: " ").map(String.init)
        switch words.first {
        case "+FULLRESYNC":
            guard words.count == 3, let offset = UInt64(words[2]) else { throw LinkError("bad reply to PSYNC: \(answer.prefix(80))") }
            try receiveSnapshot(conn)
            guard !isStopping else { return }
            try server.replaceData(withSnapshot: server.options.dataDirectory + "/" + Engine.installFolder + ".partial")
            let now = server.engine.replication.position.offset
            guard now == offset else { throw LinkError("the snapshot stands at offset \(now), the primary said \(offset)") }
            server.engine.replication.adopt(replid: words[1])  // the copy may carry an id the primary has left
            server.logger.notice("full sync from the primary done", metadata: ["offset": "\(offset)"])
        case "+CONTINUE":
            if words.count > 1 { server.engine.replication.adopt(replid: words[1]) }
            server.logger.info("continuing from the primary's backlog", metadata: ["offset": "\(mine.offset)"])
        default:
            throw LinkError("the primary refused PSYNC: \(answer.prefix(120))")
        }
        status.withLock { s in
            s.up = true
            s.syncing = false
            s.roleState = "connected"
            s.lastIO = Date()
        }
        try follow(conn)
    }

    /// Receives the snapshot's files into <data>/replica-sync.partial.
    private func receiveSnapshot(_ conn: LinkSocket) throws {
        let folder = server.options.dataDirectory + "/" + Engine.installFolder + ".partial"
        try? FileManager.default.removeItem(atPath: folder)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        while true {
            let line = try conn.line(timeout: Self.timeoutSeconds)
            if line == "END" { break }
            let parts = line.split(separator: " ", maxSplits: 2).map(String.init)
            guard parts.count == 3, parts[0] == "FILE", let size = Int(parts[1]), size >= 0, Self.safe(parts[2]) else {
                throw LinkError("bad snapshot header: \(line.prefix(80))")
            }
            status.withLock { $0.syncTotal += size }
            let path = folder + "/" + parts[2]
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                    withIntermediateDirectories: true)
            try conn.receive(size, into: path) { n in
                self.status.withLock { s in s.syncRead += n; s.lastIO = Date() }
            }
        }
    }

    /// A relative path inside the snapshot: no "..", no absolute path, plain characters.
    static func safe(_ path: String) -> Bool {
        !path.hasPrefix("/") && !path.split(separator: "/").contains("..") && !path.isEmpty
            && path.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) || "._-/".unicodeScalars.contains($0) }
    }

    /// Applies the stream until the link fails or the link is stopped.
    private func follow(_ conn: LinkSocket) throws {
        var buffer: [UInt8] = []
        var lastAck = Date.distantPast
        var lastIO = Date()
        while !isStopping {
            let n = try conn.readAvailable(into: &buffer, timeout: 1)
            let now = Date()
            if n > 0 {
                lastIO = now
                status.withLock { $0.lastIO = now }
            } else if now.timeIntervalSince(lastIO) > Self.timeoutSeconds {
                throw LinkError("no data from the primary for \(Int(Self.timeoutSeconds)) s")
            }
            var consumed = 0
            var entries: [(entry: StreamEntry, bytes: [UInt8])] = []
            var expected = server.engine.replication.position.offset
            while consumed < buffer.count {
                if buffer[consumed] == 10 { consumed += 1; continue }  // keepalive
                guard let (entry, length) = try StreamEntry.decode(buffer[consumed...]) else { break }
                entries.append((entry, Array(buffer[consumed..<(consumed + length)])))
                consumed += length
                expected += UInt64(length)
            }
            buffer.removeFirst(consumed)
            if !entries.isEmpty {
                guard !isStopping else { return }
                try server.engine.applyReplicated(entries)
                let offset = server.engine.replication.position.offset
                guard offset == expected else {
                    throw LinkError("applied to offset \(offset), expected \(expected): resyncing")
                }
            }
            if !entries.isEmpty || now.timeIntervalSince(lastAck) >= 1 {
                try conn.send(["REPLCONF", "ACK", String(server.engine.replication.position.offset)])
                lastAck = now
            }
        }
    }
}

struct LinkError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
