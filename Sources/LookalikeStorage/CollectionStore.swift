// CollectionStore: the LMDB tables of one collection, and the only code that knows their layout.
//
//   c<N>/keys        key (UTF-8)            -> id (8 bytes, big-endian)
//   c<N>/items       id                     -> u32 key length, key, attributes JSON (may be empty)
//   c<N>/vectors     id                     -> the vector as given, float32 little-endian
//   c<N>/tombstones  id                     -> (empty) ids removed since they were sealed
//   c<N>/attr/<A>    attribute value (dup)  -> ids with that value, sorted (the value's UTF-8,
//                                              or for "" and long values a key no text has:
//                                              `tableKey`)
//   c<N>/clock       unix second (8 bytes)  -> the first id allocated in that second (so "items
//                                              added since a time" is an id range)
//   c<N>/neighbors   key (UTF-8)            -> the batch job's JSON line for that item (NewItems)
//   c<N>/views       key (UTF-8)            -> (empty) the keys holding an item's extra vectors
//                                              (how a view's key is spelt: the engine's Views.swift)
// N is the collection's number (names may hold any bytes; table names may not).
// Attributes are opaque text here: the caller (the engine, which parses them once) says which
// attribute values an item is indexed under and whether a key is a view.
//
// Invariants (hold at every commit): a key is in `keys` iff its id is in `items` and `vectors`;
// an id appears in an attribute table iff the item is live and has that value; ids ascend in
// the order items were written and are never reused; removing an id writes its tombstone.
// Threads: stateless over the Environment; callers supply the transaction.

public struct ItemRecord: Sendable, Equatable {
    public var key: String
    /// The attributes JSON object as the user gave it, or nil when the item has none.
    public var attributes: String?
    public init(key: String, attributes: String?) {
        self.key = key
        self.attributes = attributes
    }
}

public final class CollectionStore: Sendable {
    public let number: UInt32
    public let indexedAttributes: [String]
    let keys: Table
    let items: Table
    let vectors: Table
    let tombstones: Table
    let clock: Table
    let neighbors: Table
    let views: Table
    let attributeTables: [String: Table]

    public static func tablePrefix(_ number: UInt32) -> String { "c\(number)/" }

    public init(environment env: Environment, number: UInt32, indexedAttributes: [String]) throws {
        let p = Self.tablePrefix(number)
        self.number = number
        self.indexedAttributes = indexedAttributes
        keys = try env.table(p + "keys")
        items = try env.table(p + "items")
        vectors = try env.table(p + "vectors")
        tombstones = try env.table(p + "tombstones")
        clock = try env.table(p + "clock")
        neighbors = try env.table(p + "neighbors")
        views = try env.table(p + "views")
        var attrs: [String: Table] = [:]
        for a in indexedAttributes { attrs[a] = try env.table(p + "attr/" + a, duplicates: true) }
        attributeTables = attrs
    }

    // MARK: Reads

    public func id(forKey key: String, _ txn: Transaction) throws -> UInt64? {
        try txn.get(keys, Array(key.utf8)).map(IdKey.decode)
    }

    public func item(_ id: UInt64, _ txn: Transaction) throws -> ItemRecord? {
        guard let raw = try txn.get(items, IdKey.encode(id)) else { return nil }
        return try Self.decodeItem(raw)
    }

    /// Only the key of an item: what a search hit needs when no attributes are asked for (it
    /// skips making a String of the attributes).
    public func key(_ id: UInt64, _ txn: Transaction) throws -> String? {
        guard let raw = try txn.get(items, IdKey.encode(id)) else { return nil }
        return try Self.decodeKey(raw)
    }

    /// The stored vector's bytes (float32 LE), valid until the transaction ends.
    public func vectorBytes(_ id: UInt64, _ txn: Transaction) throws -> UnsafeRawBufferPointer? {
        try txn.get(vectors, IdKey.encode(id))
    }

    /// The stored vector's bytes copied into `destination` (a row of the caller's), by pread
    /// when the vector is on overflow pages (506-d and more at 4 KiB pages), so its pages are not
    /// mapped into the process (LMDBFileRead.swift): rescoring's reader, whose random reads
    /// through the map made most of the file resident. Returns the record's size (copied only
    /// when it is `destination.count`), nil when absent.
    public func readVector(_ id: UInt64, _ txn: Transaction, into destination: UnsafeMutableRawBufferPointer) throws -> Int? {
        try IdKey.withEncoded(id) { try txn.read(vectors, $0, copyingInto: destination) }
    }

    public func vector(_ id: UInt64, _ txn: Transaction) throws -> [Float]? {
        guard let raw = try vectorBytes(id, txn) else { return nil }
        return (0..<(raw.count / 4)).map {
            Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self)))
        }
    }

    /// Bytes of the data file's pages that hold this collection's tables (free pages and
    /// LMDB's meta pages belong to no collection).
    public func usedBytes(_ txn: Transaction) throws -> Int {
        var total = 0
        for t in [keys, items, vectors, tombstones, clock, neighbors, views] + Array(attributeTables.values) {
            total += try txn.usedBytes(t)
        }
        return total
    }

    /// Stored vectors: items and their views.
    public func vectorCount(_ txn: Transaction) throws -> Int { try txn.count(items) }

    /// Stored views (extra vectors of items).
    public func viewCount(_ txn: Transaction) throws -> Int { try txn.count(views) }

    /// The keys in the views table that start with `prefix` (an item's views), in key order.
    public func viewKeys(withPrefix prefix: String, _ txn: Transaction) throws -> [String] {
        let prefix = Array(prefix.utf8)
        let c = try txn.cursor(views)
        var out: [String] = []
        var entry = c.seek(prefix)
        while let (k, _) = entry, k.starts(with: prefix) {
            out.append(String(decoding: k, as: UTF8.self))
            entry = c.next()
        }
        return out
    }

    /// Visits keys in byte order (LMDB's order of the keys table), from the first at or after
    /// `start` (nil: the first of all), until `body` returns false. The bytes are valid only
    /// during the call.
    public func forEachKey(from start: [UInt8]?, _ txn: Transaction,
                           _ body: (UnsafeRawBufferPointer) throws -> Bool) throws {
        let c = try txn.cursor(keys)
        var entry = start == nil ? c.first() : c.seek(start!)
        while let (k, _) = entry {
            guard try body(k) else { return }
            entry = c.next()
        }
    }

    /// Visits live vectors with id >= `from`, in id order, until `body` returns false.
    public func forEachVector(from: UInt64, _ txn: Transaction,
                              _ body: (UInt64, UnsafeRawBufferPointer) throws -> Bool) throws {
        let c = try txn.cursor(vectors)
        var entry = c.seek(IdKey.encode(from))
        while let (k, v) = entry {
            guard try body(IdKey.decode(k), v) else { return }
            entry = c.next()
        }
    }

    /// Visits every live item, in id order.
    public func forEachItem(_ txn: Transaction, _ body: (UInt64, ItemRecord) throws -> Void) throws {
        let c = try txn.cursor(items)
        var entry = c.first()
        while let (k, v) = entry {
            try body(IdKey.decode(k), try Self.decodeItem(v))
            entry = c.next()
        }
    }

    /// The highest live id, or nil when the collection is empty.
    public func lastVectorId(_ txn: Transaction) throws -> UInt64? {
        try txn.cursor(vectors).last().map { IdKey.decode($0.key) }
    }

    /// Visits every tombstoned id.
    public func forEachTombstone(_ txn: Transaction, _ body: (UInt64) -> Void) throws {
        let c = try txn.cursor(tombstones)
        var entry = c.first()
        while let (k, _) = entry {
            body(IdKey.decode(k))
            entry = c.next()
        }
    }

    /// The first live item at or after `id`, wrapping to the start: for random sampling.
    public func itemAtOrAfter(_ id: UInt64, _ txn: Transaction) throws -> (UInt64, ItemRecord)? {
        let c = try txn.cursor(items)
        guard let (k, v) = c.seek(IdKey.encode(id)) ?? c.first() else { return nil }
        return (IdKey.decode(k), try Self.decodeItem(v))
    }

    /// Ids whose indexed attribute `attribute` has `value` (ascending).
    public func ids(attribute: String, value: String, _ txn: Transaction) throws -> [UInt64] {
        guard let t = attributeTables[attribute] else { return [] }
        let c = try txn.cursor(t)
        var out: [UInt64] = []
        var entry = c.find(Self.tableKey(value))
        while let (_, v) = entry {
            out.append(IdKey.decode(v))
            entry = c.nextDuplicate()
        }
        return out
    }

    /// How many live items have that value (LMDB counts duplicates without reading them).
    public func count(attribute: String, value: String, _ txn: Transaction) throws -> Int {
        guard let t = attributeTables[attribute] else { return 0 }
        let c = try txn.cursor(t)
        return c.find(Self.tableKey(value)) == nil ? 0 : c.duplicateCount()
    }

    // MARK: Writes (writable transaction)

    /// Stores a new item under a fresh id, listed under `indexed` in the attribute tables (and
    /// in the views table when `isView`). The key must not be live (remove its old id first).
    public func insert(id: UInt64, record: ItemRecord, vector: UnsafeBufferPointer<Float>, isView: Bool,
                       indexed: IndexedValues, _ txn: Transaction) throws {
        let idKey = IdKey.encode(id)
        try txn.put(keys, Array(record.key.utf8), idKey)
        // Ids ascend, so items and vectors are appended (pages filled, not split: Transaction.append).
        try Self.encodeItem(record).withUnsafeBytes { try txn.append(items, idKey, $0) }
        if isView { try txn.put(views, Array(record.key.utf8), []) }
        try vector.withMemoryRebound(to: UInt8.self) { bytes in
            // x86-64 and arm64 are little-endian: the floats' bytes are stored as they are.
            try txn.append(vectors, idKey, UnsafeRawBufferPointer(bytes))
        }
        try index(id: idKey, indexed, add: true, txn)
    }

    /// Removes an item's id everywhere but in `keys` (the caller re-points or deletes the key):
    /// `indexed` are the attribute values it was listed under.
    public func removeItem(id: UInt64, record: ItemRecord, isView: Bool, indexed: IndexedValues,
                           _ txn: Transaction) throws {
        let idKey = IdKey.encode(id)
        try index(id: idKey, indexed, add: false, txn)
        try txn.delete(items, idKey)
        try txn.delete(vectors, idKey)
        if isView { try txn.delete(views, Array(record.key.utf8)) }
        try txn.put(tombstones, idKey, [])
    }

    public func deleteKey(_ key: String, _ txn: Transaction) throws {
        try txn.delete(keys, Array(key.utf8))
    }

    /// Replaces an item's attributes, keeping its id and vector; it leaves the attribute values
    /// `leaving` and joins `joining`.
    public func setAttributes(id: UInt64, old: ItemRecord, attributes: String?, leaving: IndexedValues,
                              joining: IndexedValues, _ txn: Transaction) throws {
        let idKey = IdKey.encode(id)
        try index(id: idKey, leaving, add: false, txn)
        var record = old
        record.attributes = attributes
        try txn.put(items, idKey, Self.encodeItem(record))
        try index(id: idKey, joining, add: true, txn)
    }

    /// Forgets tombstones (after compaction has dropped those ids from every segment).
    public func clearTombstones(_ ids: [UInt64], _ txn: Transaction) throws {
        for id in ids { try txn.delete(tombstones, IdKey.encode(id)) }
    }

    /// Empties every table of the collection (used by DEL / drop).
    public func emptyAll(_ txn: Transaction) throws {
        for t in [keys, items, vectors, tombstones, clock, neighbors, views] + Array(attributeTables.values) {
            try txn.empty(t)
        }
    }

    // MARK: Clock and batch results

    /// Notes that ids from `firstId` on were allocated in `second` (the first note of a second
    /// wins, so the entry is the lowest id allocated in it).
    public func noteClock(second: UInt64, firstId: UInt64, _ txn: Transaction) throws {
        _ = try txn.put(clock, IdKey.encode(second), IdKey.encode(firstId), keepExisting: true)
    }

    /// The lowest id allocated at or after `second`, or nil when nothing was added since.
    public func firstId(since second: UInt64, _ txn: Transaction) throws -> UInt64? {
        try txn.cursor(clock).seek(IdKey.encode(second)).map { IdKey.decode($0.1) }
    }

    public func putNeighbors(key: String, _ line: [UInt8], _ txn: Transaction) throws {
        try txn.put(neighbors, Array(key.utf8), line)
    }

    public func neighbors(key: String, _ txn: Transaction) throws -> [UInt8]? {
        try txn.get(neighbors, Array(key.utf8)).map { Array($0) }
    }

    /// Attribute values longer than this are listed under a digest key (`tableKey`): LMDB keys
    /// are at most 511 bytes.
    public static let maxValueBytes = 480

    /// The attribute-table key of a value: its UTF-8 bytes, except for the two that LMDB cannot
    /// hold as they are. Both start with a byte no UTF-8 text starts with, so they never meet a
    /// plain value's key: the empty text is [0xFF]; a text over `maxValueBytes` is 0xFE, its
    /// first 400 bytes, its length and a 64-bit FNV-1a digest of all of it (two long values may
    /// share a key only with the same prefix, length and digest: a FILTER checks such hits).
    public static func tableKey(_ value: String) -> [UInt8] {
        let bytes = Array(value.utf8)
        if bytes.isEmpty { return [0xFF] }
        guard bytes.count > maxValueBytes else { return bytes }
        var digest: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { digest = (digest ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        var key: [UInt8] = [0xFE] + bytes.prefix(400)
        withUnsafeBytes(of: UInt32(bytes.count).bigEndian) { key.append(contentsOf: $0) }
        withUnsafeBytes(of: digest.bigEndian) { key.append(contentsOf: $0) }
        return key
    }

    /// Lists `id` under `values` if it is not listed already (re-indexing): true when it was not.
    public func addToIndex(id: UInt64, _ values: IndexedValues, _ txn: Transaction) throws -> Bool {
        var added = false
        for v in values {
            guard let table = attributeTables[v.attribute] else { continue }
            if try txn.put(table, Self.tableKey(v.value), IdKey.encode(id), noDuplicate: true) { added = true }
        }
        return added
    }

    private func index(id: [UInt8], _ values: IndexedValues, add: Bool, _ txn: Transaction) throws {
        for v in values {
            guard let table = attributeTables[v.attribute] else { continue }
            if add {
                try txn.put(table, Self.tableKey(v.value), id, noDuplicate: true)
            } else {
                try txn.delete(table, Self.tableKey(v.value), value: id)
            }
        }
    }

    // MARK: Encoding

    static func encodeItem(_ r: ItemRecord) -> [UInt8] {
        let key = Array(r.key.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(4 + key.count + (r.attributes?.utf8.count ?? 0))
        withUnsafeBytes(of: UInt32(key.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: key)
        if let a = r.attributes { out.append(contentsOf: a.utf8) }
        return out
    }

    static func decodeItem(_ raw: UnsafeRawBufferPointer) throws -> ItemRecord {
        let end = try keyEnd(raw)
        let rest = raw[end...]
        return ItemRecord(key: String(decoding: raw[4..<end], as: UTF8.self),
                          attributes: rest.isEmpty ? nil : String(decoding: rest, as: UTF8.self))
    }

    static func decodeKey(_ raw: UnsafeRawBufferPointer) throws -> String {
        String(decoding: raw[4..<(try keyEnd(raw))], as: UTF8.self)
    }

    /// Where the key ends in an item record (u32 length, key bytes, attributes).
    private static func keyEnd(_ raw: UnsafeRawBufferPointer) throws -> Int {
        guard raw.count >= 4 else { throw StorageError.corrupt("item record too short") }
        let n = Int(UInt32(littleEndian: raw.loadUnaligned(as: UInt32.self)))
        guard raw.count >= 4 + n else { throw StorageError.corrupt("item record truncated") }
        return 4 + n
    }
}

/// One entry of an attribute table: an indexed attribute and one of its values.
public struct IndexedValue: Hashable, Sendable {
    public var attribute: String
    public var value: String
    public init(attribute: String, value: String) {
        self.attribute = attribute
        self.value = value
    }
}

public typealias IndexedValues = Set<IndexedValue>
