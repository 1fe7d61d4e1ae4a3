// AttributeIndexVersion: which rules a collection's attribute tables were written by, and the
// one-time re-index at open that brings older tables up to the current ones.
//
// Version 2 (this one) lists every value a FILTER can equal (Attributes.indexedTexts): the
// empty string and values over LMDB's key limit (under keys of their own, CollectionStore
// `tableKey`), and strings that read as numbers also under the number's text. Tables written
// before it lack those entries, so a member set would miss matches: at open, a collection
// without the record (`attrindex:<N>` in meta) has each live item's entries added where they
// are missing, in one write transaction, and then gets the record. A new collection starts
// with it. Removing an item deletes its entries by the same rules, so an entry an old table
// never had is simply not found then.
// Threads: `reindexAttributesIfOld` runs in Engine.init (Recovery), before the commit thread
// or any reader sees the collection.
import LookalikeStorage

extension Collection {
    static let attributeIndexVersion: [UInt8] = [2]

    static func attributeIndexKey(_ number: UInt32) -> String { "attrindex:\(number)" }

    /// Adds the entries the current rules list and older tables lack; a no-op once recorded.
    func reindexAttributesIfOld() throws {
        let key = Self.attributeIndexKey(number)
        guard try engine.environment.read({ try engine.meta.get(key, $0) }) != Self.attributeIndexVersion else { return }
        var items = 0, added = 0
        try engine.environment.write { txn in
            if !definition.attributes.isEmpty {
                try store.forEachItem(txn) { id, record in
                    guard let parsed = Attributes(record.attributes) else { return }
                    items += 1
                    if try store.addToIndex(id: id, parsed.indexedValues(definition.attributes), txn) { added += 1 }
                }
            }
            try engine.meta.put(key, Self.attributeIndexVersion, txn)
        }
        if added > 0 {
            engine.logger.info("re-indexed the attribute tables (empty, long and numeric-string values)", metadata: [
                "collection": "\(name)", "items": "\(items)", "items-with-new-entries": "\(added)"])
        }
    }
}
