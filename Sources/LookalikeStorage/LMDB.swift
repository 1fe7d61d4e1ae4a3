// LMDB: a thin, safe layer over liblmdb for the rest of Lookalike.
//
// Owns: the MDB_env of one data folder, and the table (dbi) handles opened in it.
// Invariants:
//   - A write transaction commits or aborts before `write` returns; a thrown error aborts it.
//   - Table handles are opened only under `tableLock` in a transaction of their own that
//     commits at once (LMDB forbids concurrent mdb_dbi_open), and stay open for the life of
//     the environment (a dropped collection's tables are emptied, never closed under a reader).
//   - Read transactions are reused: an ended one is reset (`mdb_txn_reset`: it pins no pages)
//     and kept, up to `maxIdleReaders`, for the next `read` to renew. mdb_txn_begin callocs
//     room for every possible table (maxTables × 49 bytes: 200 KB, 2 µs at 4,096 tables,
//     measured), which was the largest cost of a small filtered search; a renew is 0.02 µs.
//     The kept handles are aborted before the environment closes.
// Threads: read transactions are opened with MDB_NOTLS, so any thread may run any number of
// them, and a reset one may be renewed on another thread. Write transactions are serialised by LMDB's own writer lock; a write runs entirely on
// the calling thread (LMDB requires that), and must not start a second write inside it.
// Bytes handed out by a transaction (`get`, cursors) are valid only until it ends; `read`
// (LMDBFileRead.swift) copies a big value by pread instead, so its pages are never mapped in.
import CLMDB
import Foundation
import Synchronization

public enum SyncMode: String, Sendable, CaseIterable, Codable {
    /// fsync data and meta page at every commit: an acknowledged write survives power loss.
    case full
    /// fsync data but not the meta page: survives process crashes; a power loss may undo the
    /// last commit.
    case nometasync
    /// no fsync at all: survives process crashes (kill -9) but not power loss. For bulk loads.
    case none
}

public struct StorageOptions: Sendable {
    /// Upper bound of the database size (LMDB's map size). The file grows as data is written.
    public var mapSize: Int = 64 << 30
    public var sync: SyncMode = .full
    /// Concurrent read transactions (LMDB reader slots).
    public var maxReaders: Int = 254
    /// Named tables: each collection uses 4 plus one per indexed attribute.
    public var maxTables: Int = 4096
    public init() {}
}

public enum StorageError: Error, CustomStringConvertible, Equatable {
    case lmdb(code: Int32, operation: String)
    case full(String)
    case corrupt(String)
    /// A file operation outside LMDB failed, or the folder is in use (DirectoryLock).
    case io(String)

    public var description: String {
        switch self {
        case .lmdb(let code, let op):
            return "storage error in \(op): \(String(cString: mdb_strerror(code)))"
        case .full(let m): return m
        case .corrupt(let m): return "stored data is damaged: \(m)"
        case .io(let m): return m
        }
    }

    static func check(_ rc: Int32, _ operation: String) throws {
        guard rc != MDB_SUCCESS else { return }
        switch rc {
        case MDB_MAP_FULL:
            throw StorageError.full(
                "the database reached its map size: restart with a larger --map-size")
        case ENOSPC:
            throw StorageError.full("the disk is full: free space, then retry the write")
        default:
            throw StorageError.lmdb(code: rc, operation: operation)
        }
    }
}

public struct Table: Sendable, Hashable {
    public let name: String
    let dbi: MDB_dbi
}

public final class Environment: @unchecked Sendable {
    let env: OpaquePointer
    public let path: String
    public let options: StorageOptions
    /// The data file's descriptor and map, for reads by pread (LMDBFileRead.swift).
    let dataFile: DataFile
    private let tableLock = Mutex<[String: Table]>([:])
    /// Reset read transactions waiting to be renewed (see the header).
    private let idleReaders = Mutex<[IdleReader]>([])
    static let maxIdleReaders = 16
    /// A reset read transaction; only the mutex above hands it out.
    private struct IdleReader: @unchecked Sendable { let txn: OpaquePointer }

    public init(path: String, options: StorageOptions = StorageOptions()) throws {
        self.path = path
        self.options = options
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        var handle: OpaquePointer?
        try StorageError.check(mdb_env_create(&handle), "mdb_env_create")
        env = handle!
        do {
            try StorageError.check(mdb_env_set_mapsize(env, options.mapSize), "set map size")
            try StorageError.check(mdb_env_set_maxreaders(env, UInt32(options.maxReaders)),
                                   "set max readers")
            try StorageError.check(mdb_env_set_maxdbs(env, MDB_dbi(options.maxTables)),
                                   "set max tables")
            var flags = UInt32(MDB_NOTLS)
            switch options.sync {
            case .full: break
            case .nometasync: flags |= UInt32(MDB_NOMETASYNC)
            case .none: flags |= UInt32(MDB_NOSYNC)
            }
            let rc = mdb_env_open(env, path, flags, 0o644)
            if rc == EAGAIN || rc == EBUSY {
                throw StorageError.full("the data folder \(path) is in use by another process")
            }
            try StorageError.check(rc, "opening \(path)")
            // Clear reader slots left by processes that died (kill -9) holding them.
            var dead: Int32 = 0
            mdb_reader_check(env, &dead)
        } catch {
            mdb_env_close(env)
            throw error
        }
        dataFile = DataFile(env: env, folder: path)
    }

    deinit {
        for idle in idleReaders.withLock({ $0 }) { mdb_txn_abort(idle.txn) }
        mdb_env_close(env)
    }

    /// Opens (creating if needed) a named table.
    public func table(_ name: String, duplicates: Bool = false) throws -> Table {
        try tableLock.withLock { cache in
            if let t = cache[name] { return t }
            var txn: OpaquePointer?
            try StorageError.check(mdb_txn_begin(env, nil, 0, &txn), "begin (open table)")
            var dbi: MDB_dbi = 0
            var flags = UInt32(MDB_CREATE)
            if duplicates { flags |= UInt32(MDB_DUPSORT | MDB_DUPFIXED) }
            let rc = mdb_dbi_open(txn, name, flags, &dbi)
            if rc != MDB_SUCCESS {
                mdb_txn_abort(txn)
                try StorageError.check(rc, "opening table \(name)")
            }
            try StorageError.check(mdb_txn_commit(txn), "commit (open table)")
            let t = Table(name: name, dbi: dbi)
            cache[name] = t
            return t
        }
    }

    /// Deletes a named table from the file. Only while no transaction uses it (at open).
    public func deleteTable(_ name: String) throws {
        try tableLock.withLock { cache in
            var txn: OpaquePointer?
            try StorageError.check(mdb_txn_begin(env, nil, 0, &txn), "begin (delete table)")
            var dbi: MDB_dbi = 0
            var rc = mdb_dbi_open(txn, name, 0, &dbi)
            if rc == MDB_SUCCESS { rc = mdb_drop(txn, dbi, 1) }
            if rc != MDB_SUCCESS && rc != MDB_NOTFOUND {
                mdb_txn_abort(txn)
                try StorageError.check(rc, "deleting table \(name)")
            }
            try StorageError.check(mdb_txn_commit(txn), "commit (delete table)")
            cache[name] = nil
        }
    }

    /// Names of the named tables that exist in the file.
    public func tableNames() throws -> [String] {
        try read { txn in
            var names: [String] = []
            let main = Table(name: "", dbi: 0)
            let cursor = try txn.cursor(main)
            var entry = cursor.first()
            while let (key, _) = entry {
                names.append(String(decoding: key, as: UTF8.self))
                entry = cursor.next()
            }
            return names
        }
    }

    public func read<T>(_ body: (Transaction) throws -> T) throws -> T {
        let txn = try beginRead()
        let t = Transaction(txn: txn, writable: false, file: dataFile)
        defer { t.finish(); endRead(txn) }
        return try body(t)
    }

    /// A read transaction: a kept one renewed, else a new one.
    private func beginRead() throws -> OpaquePointer {
        while let idle = idleReaders.withLock({ $0.popLast() }) {
            if mdb_txn_renew(idle.txn) == MDB_SUCCESS { return idle.txn }
            mdb_txn_abort(idle.txn)  // cannot be renewed: drop it, try the next or a new one
        }
        var txn: OpaquePointer?
        try StorageError.check(mdb_txn_begin(env, nil, UInt32(MDB_RDONLY), &txn), "begin read")
        return txn!
    }

    /// Ends a read transaction: reset and kept for reuse, or aborted when enough are kept.
    private func endRead(_ txn: OpaquePointer) {
        mdb_txn_reset(txn)
        let kept = idleReaders.withLock { idle in
            guard idle.count < Self.maxIdleReaders else { return false }
            idle.append(IdleReader(txn: txn))
            return true
        }
        if !kept { mdb_txn_abort(txn) }
    }

    /// Runs body in a write transaction and commits it; any thrown error aborts it.
    public func write<T>(_ body: (Transaction) throws -> T) throws -> T {
        var txn: OpaquePointer?
        try StorageError.check(mdb_txn_begin(env, nil, 0, &txn), "begin write")
        let t = Transaction(txn: txn!, writable: true, file: dataFile)
        let result: T
        do {
            result = try body(t)
        } catch {
            t.finish()
            mdb_txn_abort(txn)
            throw error
        }
        t.finish()
        try StorageError.check(mdb_txn_commit(txn), "commit")
        return result
    }

    /// Forces data to disk (for sync modes that skip it at commit).
    public func sync() throws {
        try StorageError.check(mdb_env_sync(env, 1), "sync")
    }

    /// Writes a consistent copy of the whole environment to `fd` (mdb_env_copyfd2 without
    /// compaction): one read transaction for its duration, so writers are never blocked. The
    /// copy is what that transaction saw. Blocks the calling thread until everything is written.
    public func copy(to fd: Int32) throws {
        try StorageError.check(mdb_env_copyfd2(env, fd, 0), "copying the database")
    }

    /// Bytes the data file uses (last used page), for INFO and MEMORY reports.
    public func usedBytes() -> Int {
        var info = MDB_envinfo()
        var stat = MDB_stat()
        mdb_env_info(env, &info)
        mdb_env_stat(env, &stat)
        return (info.me_last_pgno + 1) * Int(stat.ms_psize)
    }
}

public final class Transaction {
    let txn: OpaquePointer
    public let writable: Bool
    /// The environment's data file (LMDBFileRead.swift).
    let file: DataFile?
    private var cursors: [Cursor] = []

    init(txn: OpaquePointer, writable: Bool, file: DataFile?) {
        self.txn = txn
        self.writable = writable
        self.file = file
    }

    /// Closes cursors before the transaction ends.
    func finish() {
        for c in cursors { c.close() }
        cursors.removeAll()
    }

    public func get(_ table: Table, _ key: UnsafeRawBufferPointer) throws -> UnsafeRawBufferPointer? {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var v = MDB_val()
        let rc = mdb_get(txn, table.dbi, &k, &v)
        if rc == MDB_NOTFOUND { return nil }
        try StorageError.check(rc, "get from \(table.name)")
        return UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size)
    }

    public func get(_ table: Table, _ key: [UInt8]) throws -> UnsafeRawBufferPointer? {
        try key.withUnsafeBytes { try get(table, $0) }
    }

    /// Stores a value. `noDuplicate` (duplicates tables): false, and nothing written, when the
    /// key already has this value. `keepExisting`: false, and nothing written, when the key
    /// already has any value (the first write wins).
    public func put(_ table: Table, _ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer,
                    noDuplicate: Bool = false, keepExisting: Bool = false) throws -> Bool {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var v = MDB_val(mv_size: value.count, mv_data: UnsafeMutableRawPointer(mutating: value.baseAddress))
        let flags = (noDuplicate ? UInt32(MDB_NODUPDATA) : 0) | (keepExisting ? UInt32(MDB_NOOVERWRITE) : 0)
        let rc = mdb_put(txn, table.dbi, &k, &v, flags)
        if rc == MDB_KEYEXIST { return false }
        try StorageError.check(rc, "put into \(table.name)")
        return true
    }

    /// Puts a key that sorts after every key of the table (ids as they are allocated) with
    /// MDB_APPEND, so pages fill up instead of splitting in half: at 384-d a page then holds
    /// two vectors instead of one (4,114 bytes a vector on disk without, 2,057 with:
    /// Docs/sizing.md). A key that does not sort last falls back to a plain put.
    public func append(_ table: Table, _ key: [UInt8], _ value: UnsafeRawBufferPointer) throws {
        let rc = key.withUnsafeBytes { kb -> Int32 in
            var k = MDB_val(mv_size: kb.count, mv_data: UnsafeMutableRawPointer(mutating: kb.baseAddress))
            var v = MDB_val(mv_size: value.count, mv_data: UnsafeMutableRawPointer(mutating: value.baseAddress))
            return mdb_put(txn, table.dbi, &k, &v, UInt32(MDB_APPEND))
        }
        if rc == MDB_KEYEXIST {  // not the last key: insert it where it sorts
            _ = try key.withUnsafeBytes { try put(table, $0, value) }
            return
        }
        try StorageError.check(rc, "append to \(table.name)")
    }

    @discardableResult
    public func put(_ table: Table, _ key: [UInt8], _ value: [UInt8], noDuplicate: Bool = false,
                    keepExisting: Bool = false) throws -> Bool {
        try key.withUnsafeBytes { k in
            try value.withUnsafeBytes { v in try put(table, k, v, noDuplicate: noDuplicate, keepExisting: keepExisting) }
        }
    }

    /// Deletes a key (all its values), or one value of a duplicates table. False if absent.
    @discardableResult
    public func delete(_ table: Table, _ key: [UInt8], value: [UInt8]? = nil) throws -> Bool {
        try key.withUnsafeBytes { kb in
            var k = MDB_val(mv_size: kb.count, mv_data: UnsafeMutableRawPointer(mutating: kb.baseAddress))
            let rc: Int32
            if let value {
                rc = value.withUnsafeBytes { vb in
                    var v = MDB_val(mv_size: vb.count, mv_data: UnsafeMutableRawPointer(mutating: vb.baseAddress))
                    return mdb_del(txn, table.dbi, &k, &v)
                }
            } else {
                rc = mdb_del(txn, table.dbi, &k, nil)
            }
            if rc == MDB_NOTFOUND { return false }
            try StorageError.check(rc, "delete from \(table.name)")
            return true
        }
    }

    /// Entries in a table (O(1): LMDB keeps the count).
    public func count(_ table: Table) throws -> Int {
        var stat = MDB_stat()
        try StorageError.check(mdb_stat(txn, table.dbi, &stat), "stat \(table.name)")
        return Int(stat.ms_entries)
    }

    /// Bytes of the data file's pages that hold a table (branch, leaf and overflow pages; O(1)).
    public func usedBytes(_ table: Table) throws -> Int {
        var stat = MDB_stat()
        try StorageError.check(mdb_stat(txn, table.dbi, &stat), "stat \(table.name)")
        return (Int(stat.ms_branch_pages) + Int(stat.ms_leaf_pages) + Int(stat.ms_overflow_pages)) * Int(stat.ms_psize)
    }

    /// Empties a table, keeping its handle open.
    public func empty(_ table: Table) throws {
        try StorageError.check(mdb_drop(txn, table.dbi, 0), "empty \(table.name)")
    }

    public func cursor(_ table: Table) throws -> Cursor {
        var c: OpaquePointer?
        try StorageError.check(mdb_cursor_open(txn, table.dbi, &c), "cursor on \(table.name)")
        let cursor = Cursor(cursor: c!)
        cursors.append(cursor)
        return cursor
    }
}
