// MetaLayout: every key of the engine's meta table (MetaStore), in one place, and which of them
// belong to a collection (so a drop removes them all, and a new key cannot be forgotten there).
//
// Owns: the names and the layout of meta keys. The values' formats stay with their owners
// (StoredDefinition and Manifest in Engine, the replication position in ReplicationLog, …).
// Invariants: per-collection keys carry the collection's number, never its name (a name is
// reused after a drop; a number never is), except the definition, which is found by name.
// Every per-collection key is listed in `perCollection`. Changing a key's text is a format change:
// existing data folders would no longer find it.
// Threads: pure functions; any thread.
enum MetaLayout {
    /// The prefix of every collection's definition (StoredDefinition, JSON): listed at open.
    static let definitionPrefix = "collection:"
    static func definition(_ name: String) -> String { definitionPrefix + name }
    /// The collection's segments (Manifest, JSON).
    static func manifest(_ number: UInt32) -> String { "manifest:\(number)" }
    /// The next element id (UInt64).
    static func nextId(_ number: UInt32) -> String { "nextid:\(number)" }
    /// The last collection number handed out (UInt64).
    static let collectionCounter = "next-collection-number"
    /// The replication stream's position (ReplicationLog).
    static let replication = "replication"
    /// A collection's REDUCE projection matrix (Projection).
    static func projection(_ number: UInt32) -> String { "projection:\(number)" }
    /// A collection's fitted category model (StoredCategoryModel).
    static func categoryModel(_ number: UInt32) -> String { "category-model:\(number)" }
    /// The kinds of value each indexed attribute has held (AttributeKinds).
    static func attributeKinds(_ number: UInt32) -> String { "attrkinds:\(number)" }
    /// The version of a collection's attribute tables (AttributeIndexVersion): absent in folders
    /// written before empty, long and numeric-string values were indexed.
    static func attributeIndex(_ number: UInt32) -> String { "attrindex:\(number)" }
    /// The new-items batch job's (NewItems) last report.
    static func newItemsLastRun(_ number: UInt32) -> String { "newitems:\(number)" }
    /// Set while a job runs, in a transaction of its own: found at the next start, it means the
    /// process died during the job, which becomes the collection's aborted run.
    static func newItemsRunning(_ number: UInt32) -> String { "newitems-running:\(number)" }
    /// The last job that did not finish (killed, or failed), until a later job finishes.
    static func newItemsAborted(_ number: UInt32) -> String { "newitems-aborted:\(number)" }

    /// Every meta key of one collection: what a drop deletes.
    static func perCollection(name: String, number: UInt32) -> [String] {
        [definition(name), manifest(number), nextId(number), projection(number), categoryModel(number),
         attributeKinds(number), attributeIndex(number), newItemsLastRun(number), newItemsRunning(number), newItemsAborted(number)]
    }
}
