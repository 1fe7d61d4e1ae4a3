// LMDBCursor: positions in a table (Cursor), and the key encoding of ids (IdKey).
//
// Owns: one MDB_cursor each, opened by `Transaction.cursor` and closed by its transaction
// when that ends (LMDB.swift): a cursor never outlives its transaction.
// Invariants: entries are byte views into LMDB's map, valid only until the transaction ends;
// ids are 8 bytes big-endian, so LMDB's byte order is numeric order (and MDB_APPEND holds).
// Threads: a cursor belongs to its transaction's thread (a read transaction may move between
// threads between uses, never during one).
import CLMDB

/// A position in a table. Entries are (key, value) byte views valid for the transaction.
public final class Cursor {
    public typealias Entry = (key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)
    private var cursor: OpaquePointer?

    init(cursor: OpaquePointer) { self.cursor = cursor }

    func close() {
        if let c = cursor { mdb_cursor_close(c) }
        cursor = nil
    }

    private func step(_ op: MDB_cursor_op, key: UnsafeRawBufferPointer? = nil) -> Entry? {
        guard let cursor else { return nil }
        var k = MDB_val(mv_size: key?.count ?? 0,
                        mv_data: key.flatMap { UnsafeMutableRawPointer(mutating: $0.baseAddress) })
        var v = MDB_val()
        guard mdb_cursor_get(cursor, &k, &v, op) == MDB_SUCCESS else { return nil }
        return (UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size),
                UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
    }

    public func first() -> Entry? { step(MDB_FIRST) }
    public func last() -> Entry? { step(MDB_LAST) }
    public func next() -> Entry? { step(MDB_NEXT) }
    /// The first entry with a key >= `key`.
    public func seek(_ key: [UInt8]) -> Entry? { key.withUnsafeBytes { step(MDB_SET_RANGE, key: $0) } }
    /// Positions on `key` exactly (the first of its duplicates).
    public func find(_ key: [UInt8]) -> Entry? { key.withUnsafeBytes { step(MDB_SET_KEY, key: $0) } }
    public func nextDuplicate() -> Entry? { step(MDB_NEXT_DUP) }

    /// How many values the current key has (duplicates tables).
    public func duplicateCount() -> Int {
        guard let cursor else { return 0 }
        var n: Int = 0
        return mdb_cursor_count(cursor, &n) == MDB_SUCCESS ? n : 0
    }
}

/// Ids are stored big-endian so LMDB's byte order is numeric order.
public enum IdKey {
    public static func encode(_ id: UInt64) -> [UInt8] {
        withUnsafeBytes(of: id.bigEndian) { Array($0) }
    }
    /// `body` with the encoding of `id`, without allocating it (for reads per candidate).
    public static func withEncoded<T>(_ id: UInt64, _ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        try withUnsafeBytes(of: id.bigEndian, body)
    }
    public static func decode(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        precondition(bytes.count == 8)
        return UInt64(bigEndian: bytes.loadUnaligned(as: UInt64.self))
    }
}
