// MetaStore: the shared `meta` table of a data folder, a plain string-keyed map of small
// records: collection definitions, manifests, id counters, the replication position (what the
// keys are and which belong to a collection is the engine's MetaLayout; the values' formats
// stay with their owners). A file of its own: CollectionStore.swift holds one collection's
// tables, and this table belongs to no collection.
//
// Owns: the table's handle, and nothing else: no cache, no key names, no value formats.
// Invariants: keys are stored as their UTF-8 bytes, so `entries(prefix:)` visits them in byte
// order; a UInt64 value is 8 bytes big-endian (IdKey), as the collections' ids are.
// Threads: stateless over the Environment, like CollectionStore; callers supply the
// transaction (a write transaction for `put` and `delete`).

/// The shared `meta` table: collection definitions, manifests and counters, by string key.
public final class MetaStore: Sendable {
    let table: Table
    public init(environment env: Environment) throws { table = try env.table("meta") }

    public func get(_ key: String, _ txn: Transaction) throws -> [UInt8]? {
        try txn.get(table, Array(key.utf8)).map { Array($0) }
    }
    public func put(_ key: String, _ value: [UInt8], _ txn: Transaction) throws {
        try txn.put(table, Array(key.utf8), value)
    }
    public func delete(_ key: String, _ txn: Transaction) throws {
        try txn.delete(table, Array(key.utf8))
    }
    public func getUInt64(_ key: String, _ txn: Transaction) throws -> UInt64? {
        try txn.get(table, Array(key.utf8)).map(IdKey.decode)
    }
    public func putUInt64(_ key: String, _ value: UInt64, _ txn: Transaction) throws {
        try txn.put(table, Array(key.utf8), IdKey.encode(value))
    }
    /// Entries whose key starts with `prefix`, in key order.
    public func entries(prefix: String, _ txn: Transaction) throws -> [(String, [UInt8])] {
        let c = try txn.cursor(table)
        var out: [(String, [UInt8])] = []
        var entry = c.seek(Array(prefix.utf8))
        while let (k, v) = entry {
            let key = String(decoding: k, as: UTF8.self)
            guard key.hasPrefix(prefix) else { break }
            out.append((key, Array(v)))
            entry = c.next()
        }
        return out
    }
}
