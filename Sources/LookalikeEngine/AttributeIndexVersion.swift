// AttributeIndexVersion: which rules a collection's attribute tables were written by, and the
// one-time re-index at open that brings older tables up to the current ones.
//
// Version 2 (this one) lists every value a FILTER can equal (Attributes.indexedTexts): the
// empty string and values over LMDB's key limit (under keys of their own, CollectionStore
// `tableKey`), and strings that read as numbers also under the number's text. Tables written
// before it lack those entries, so a member set would miss matches: at open, a collection
// without the record (`attrindex:<N>` in meta) has each live item's entries added where they
// are missing, in write transactions of a bounded size, and then gets the record. A new
// collection starts with it. Removing an item deletes its entries by the same rules, so an entry an old table
// never had is simply not found then.
// Threads: `reindexAttributesIfOld` runs in Engine.init (Recovery), before the commit thread
// or any reader sees the collection.
import LookalikeStorage

extension Collection {
    static let attributeIndexVersion: [UInt8] = [2]

    /// Adds the entries the current rules list and older tables lack; a no-op once recorded.
    /// Runs in write transactions of `batch` items each (so a large collection does not
    /// fill one transaction's dirty pages); the record is written with the last one, so an
    /// interrupted re-index starts again at the next open (adding an entry twice is a no-op).
    func reindexAttributesIfOld(batch: Int = 20_000) throws {
        let key = MetaLayout.attributeIndex(number)
        guard try engine.environment.read({ try engine.meta.get(key, $0) }) != Self.attributeIndexVersion else { return }
        var next: UInt64? = 0
        var items = 0, added = 0
        while let from = next {
            try engine.environment.write { txn in
                next = nil
                var inBatch = 0
                if !definition.attributes.isEmpty {
                    // Ids in order from the vectors table (every item has a vector).
                    try store.forEachVector(from: from, txn) { id, _ in
                        guard inBatch < batch else { next = id; return false }
                        inBatch += 1
                        guard let parsed = Attributes(try store.item(id, txn)?.attributes) else { return true }
                        items += 1
                        if try store.addToIndex(id: id, parsed.indexedValues(definition.attributes), txn) { added += 1 }
                        return true
                    }
                }
                if next == nil { try engine.meta.put(key, Self.attributeIndexVersion, txn) }
            }
        }
        if added > 0 {
            engine.logger.info("re-indexed the attribute tables (empty, long and numeric-string values)", metadata: [
                "collection": "\(name)", "items": "\(items)", "items-with-new-entries": "\(added)"])
        }
    }
}
