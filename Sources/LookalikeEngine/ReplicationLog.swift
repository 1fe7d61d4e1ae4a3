// ReplicationLog: the write stream replicas follow, and the bounded backlog of its latest bytes.
//
// Owns: the replication id and offset of this data folder (Redis's master_replid and
// master_repl_offset), the previous id a promoted replica still answers to (replid2), and the
// backlog: the last `limit` bytes of the stream, kept in memory.
// The stream: every committed change, in commit order, encoded as one entry (StreamEntry):
// writes that changed something (WriteQueue.commit) and collection creations
// (Engine.createCollection). The offset counts the stream's bytes since the folder was created.
// Invariants:
//   - the offset and id are stored in LMDB's meta table in the same transaction as the changes
//     they count, so any LMDB snapshot (a backup, a replica's full sync) knows exactly where in
//     the stream it stands;
//   - entries reach the backlog in commit order: `transaction` holds `commitLock` from the
//     start of the LMDB write to the append, and every stream-producing write goes through it;
//   - on a replica, a write applied from its primary's stream is recorded with the primary's
//     bytes unchanged, so the replica's offset equals the primary's at the same point.
// Threads: `transaction` from the commit thread and the thread creating a collection; reads
// (`bytes`, `position`, `canContinue`) and listeners from any thread. Listeners are called
// after every append, outside the locks, and must not block (they schedule work).
import Foundation
import LookalikeStorage
import Synchronization

public final class ReplicationLog: @unchecked Sendable {
    public struct Position: Sendable, Equatable {
        public var replid: String
        public var offset: UInt64
    }

    /// Batches are appended to the last chunk until it holds this many bytes.
    static let chunkBytes = 256 << 10
    private let meta: MetaStore
    private let commitLock = NSLock()
    private let state: Mutex<State>
    private let listeners = Mutex<[Int: @Sendable () -> Void]>([:])
    private let nextListener = Atomic<Int>(0)

    struct State {
        var replid: String
        var offset: UInt64
        /// The id this node had before it was promoted (or restarted), and the first offset
        /// that history does not share with this one: PSYNC with it is accepted below that.
        var replid2 = String(repeating: "0", count: 40)
        var offset2: UInt64 = 0
        /// The backlog: chunks in stream order; `start` is the offset of the first byte kept.
        var chunks: [[UInt8]] = []
        var start: UInt64
        var bytes = 0
        var limit: Int
    }

    init(meta: MetaStore, environment: Environment, limit: Int) throws {
        self.meta = meta
        let stored = try environment.read { try meta.get(MetaLayout.replication, $0) }.flatMap(Self.decodePosition)
        let p = stored ?? Position(replid: Self.newId(), offset: 0)
        state = Mutex(State(replid: p.replid, offset: p.offset, start: p.offset, limit: max(0, limit)))
    }

    public static func newId() -> String {
        (0..<40).map { _ in String("0123456789abcdef".randomElement()!) }.joined()
    }

    public var position: Position { state.withLock { Position(replid: $0.replid, offset: $0.offset) } }
    /// The previous history (INFO master_replid2 and second_repl_offset).
    public var previous: Position { state.withLock { Position(replid: $0.replid2, offset: $0.offset2) } }
    /// First offset still in the backlog, and how many bytes it holds.
    public var backlog: (first: UInt64, bytes: Int, limit: Int) {
        state.withLock { ($0.start, $0.bytes, $0.limit) }
    }

    /// Runs `body` in one LMDB write transaction; the entries it emits are counted in the
    /// stored offset (same transaction) and appended to the backlog once it has committed.
    func transaction<T>(_ environment: Environment, _ body: (Transaction, (_ entry: [UInt8]) -> Void) throws -> T) throws -> T {
        commitLock.lock()
        defer { commitLock.unlock() }
        var pending: [UInt8] = []
        let result = try environment.write { txn -> T in
            let r = try body(txn) { pending.append(contentsOf: $0) }
            if !pending.isEmpty {
                let p = state.withLock { Position(replid: $0.replid, offset: $0.offset + UInt64(pending.count)) }
                try meta.put(MetaLayout.replication, Self.encode(p), txn)
            }
            return r
        }
        if !pending.isEmpty { append(pending) }
        return result
    }

    private func append(_ bytes: [UInt8]) {
        state.withLock { s in
            s.offset += UInt64(bytes.count)
            guard s.limit > 0 else { s.start = s.offset; return }
            // Small batches share a chunk: reads and trimming walk few chunks.
            if let last = s.chunks.indices.last, s.chunks[last].count < Self.chunkBytes {
                s.chunks[last].append(contentsOf: bytes)
            } else {
                s.chunks.append(bytes)
            }
            s.bytes += bytes.count
            while s.bytes > s.limit, s.chunks.count > 1 {
                let first = s.chunks.removeFirst()
                s.bytes -= first.count
                s.start += UInt64(first.count)
            }
        }
        for l in listeners.withLock({ Array($0.values) }) { l() }
    }

    /// Up to `max` bytes of the stream from `offset`; empty when `offset` is the end, nil when
    /// the backlog no longer (or not yet) holds it.
    public func bytes(from offset: UInt64, max: Int) -> [UInt8]? {
        state.withLock { s in
            guard offset >= s.start, offset <= s.offset else { return nil }
            var out: [UInt8] = []
            var chunkStart = s.start
            for c in s.chunks {
                let chunkEnd = chunkStart + UInt64(c.count)
                if chunkEnd > offset {
                    let from = Int(Swift.max(offset, chunkStart) - chunkStart)
                    out.append(contentsOf: c[from...])
                    if out.count >= max { break }
                }
                chunkStart = chunkEnd
            }
            return out.count > max ? Array(out.prefix(max)) : out
        }
    }

    /// PSYNC: whether a replica that holds `replid`'s stream up to `offset` can continue from
    /// the backlog (Redis's rule: the current id, or the previous one below where they part).
    public func canContinue(replid: String, from offset: UInt64) -> Bool {
        state.withLock { s in
            let sameHistory = replid == s.replid || (replid == s.replid2 && offset <= s.offset2)
            return sameHistory && offset >= s.start && offset <= s.offset
        }
    }

    /// A new history: this node now takes writes of its own (promoted, or started as a
    /// primary). Replicas of the old id may still continue up to here.
    public func startNewHistory() {
        commitLock.lock()
        defer { commitLock.unlock() }
        state.withLock { s in
            s.replid2 = s.replid
            s.offset2 = s.offset
            s.replid = Self.newId()
        }
    }

    /// A replica continuing (PSYNC +CONTINUE) under its primary's new id.
    public func adopt(replid: String) {
        commitLock.lock()
        defer { commitLock.unlock() }
        state.withLock { s in
            guard s.replid != replid else { return }
            s.replid2 = s.replid
            s.offset2 = s.offset
            s.replid = replid
        }
    }

    public func setBacklogLimit(_ bytes: Int) { state.withLock { $0.limit = max(0, bytes) } }

    /// Calls `listener` after every append, until removed.
    public func addListener(_ listener: @escaping @Sendable () -> Void) -> Int {
        let id = nextListener.wrappingAdd(1, ordering: .relaxed).newValue
        listeners.withLock { $0[id] = listener }
        return id
    }

    public func removeListener(_ id: Int) { _ = listeners.withLock { $0.removeValue(forKey: id) } }

    // MARK: - Stored position

    static func encode(_ p: Position) -> [UInt8] {
        IdKey.encode(p.offset) + Array(p.replid.utf8)
    }

    static func decodePosition(_ bytes: [UInt8]) -> Position? {
        guard bytes.count == 48 else { return nil }
        let offset = bytes.withUnsafeBytes { IdKey.decode(UnsafeRawBufferPointer(rebasing: $0[0..<8])) }
        return Position(replid: String(decoding: bytes[8...], as: UTF8.self), offset: offset)
    }

    /// The position stored in a (copied) data folder's meta table.
    static func storedPosition(_ meta: MetaStore, _ txn: Transaction) throws -> Position? {
        try meta.get(MetaLayout.replication, txn).flatMap(decodePosition)
    }
}
