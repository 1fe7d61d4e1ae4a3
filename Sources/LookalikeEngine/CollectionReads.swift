// CollectionReads: a collection's reads by element name and its counts (VCARD, VEMB, VGETATTR,
// VRANDMEMBER, VISMEMBER), each in one LMDB read transaction. Searches are QueryPlan.swift's.
// Threads: any thread, concurrently with writes.
import Foundation
import Logging
import LookalikeIndex
import LookalikeStorage
import Synchronization

extension Collection {
    // MARK: - Reads (any thread)

    /// Items, as VCARD counts them (an item's views are not counted: Views.swift).
    public func itemCount() throws -> Int {
        try wrapped { try engine.environment.read { try store.vectorCount($0) - store.viewCount($0) } }
    }

    /// Stored vectors: items and their views.
    public func vectorCount() throws -> Int {
        try wrapped { try engine.environment.read { try store.vectorCount($0) } }
    }

    public func contains(key: String) throws -> Bool {
        try wrapped { try engine.environment.read { try store.id(forKey: key, $0) != nil } }
    }

    /// The vector as it was given.
    public func vector(key: String) throws -> [Float]? {
        try wrapped {
            try engine.environment.read { txn in
                guard let id = try store.id(forKey: key, txn) else { return nil }
                return try store.vector(id, txn)
            }
        }
    }

    public func item(key: String) throws -> ItemRecord? {
        try wrapped {
            try engine.environment.read { txn in
                guard let id = try store.id(forKey: key, txn) else { return nil }
                return try store.item(id, txn)
            }
        }
    }

    /// Up to `count` random keys, without repeats unless `allowRepeats`.
    public func randomKeys(_ count: Int, allowRepeats: Bool = false) throws -> [String] {
        try wrapped {
            try engine.environment.read { txn in
                let total = try store.vectorCount(txn) - store.viewCount(txn)
                guard total > 0, count > 0 else { return [] }
                let upper = max(nextIdSnapshot, 1)
                let want = allowRepeats ? count : min(count, total)
                var out: [String] = []
                var seen = Set<String>()
                var attempts = 0
                while out.count < want {
                    attempts += 1
                    let probe = UInt64.random(in: 0..<upper)
                    guard let (_, r) = try store.itemAtOrAfter(probe, txn) else { break }
                    if Views.split(r.key).view != nil { continue }  // items, not their views
                    if allowRepeats { out.append(r.key); continue }
                    if seen.insert(r.key).inserted { out.append(r.key) }
                    if attempts > want * 20 { return try allKeys(txn, limit: want, except: seen, into: out) }
                }
                return out
            }
        }
    }

    private func allKeys(_ txn: Transaction, limit: Int, except: Set<String>, into start: [String])
        throws -> [String]
    {
        var out = start
        var probe: UInt64 = 0
        while out.count < limit, let (id, r) = try store.itemAtOrAfter(probe, txn), id >= probe {
            if !except.contains(r.key), Views.split(r.key).view == nil { out.append(r.key) }
            probe = id + 1
        }
        return out
    }

    /// The collection's internal number (its tables are c<N>/...).
    public var numberForInfo: UInt32 { number }
    /// One past the highest id allocated so far.
    public var idHighWaterMark: UInt64 { nextIdSnapshot }

    /// Readable from any thread (the id counter is the commit thread's: CollectionWriter): one
    /// past the last id any segment holds. Frozen segments count too, while the new mutable one
    /// is still empty.
    private var nextIdSnapshot: UInt64 {
        state.withLock { s in s.all.compactMap(\.lastId).max().map { $0 + 1 } ?? s.manifest.sealedThrough }
    }

    /// Live items whose indexed attribute has this value.
    public func count(attribute: String, value: String) throws -> Int {
        try wrapped { try engine.environment.read { try store.count(attribute: attribute, value: value, $0) } }
    }

    /// A description of the segments, for VINFO and tests.
}
