// CollectionCommit: a collection's part of the group commit — staging each write in the
// commit's LMDB transaction, then applying what committed to the in-memory segments (append,
// tombstone, freeze, a live IVF segment once trained), and the compaction and drop flags.
// Attributes are parsed here, once a write (Attributes.swift): the values they are indexed
// under go to storage with the record, and their kinds to the collection's record of them
// (AttributeKinds.swift); the old record's are parsed only when its index entries must go.
// Invariants: as Collection.swift's; an effect is applied only after its transaction committed
// (WriteQueue), and the mutable segment is appended to under the collection's lock, so a
// concurrent freeze (SAVE) never seals an item out of sight.
// Threads: the commit thread only (WriteQueue: `stage` takes the collection's writer, which
// only that thread holds: CollectionWriter.swift), except `freezeMutable` (the sealer and SAVE,
// under the lock) and `beginCompaction`/`endCompaction` (the compaction's caller).
import Foundation
import Logging
import LookalikeIndex
import LookalikeStorage
import Synchronization

extension Collection {
    // MARK: - Commit thread

    /// Writes one request into the open transaction. Throws a per-write error only before it
    /// has changed anything, so the rest of the batch can commit.
    func stage(_ write: PreparedWrite, _ txn: Transaction, _ writer: inout CollectionWriter,
               _ effects: inout [MemoryEffect]) throws -> WriteOutcome
    {
        // A drop staged earlier in this batch counts: a write after it would go into tables
        // the drop emptied, be acknowledged, and vanish with the collection.
        guard !writer.droppedInBatch, !state.withLock({ $0.dropped }) else { throw EngineError.unknownCollection(name) }
        switch write.request {
        case .upsert(let key, let vector, let attributes):
            // A view mirrors its item's attributes (Views.swift); checked before any change.
            let item = try itemOfView(key, attributes, txn)
            let oldId = try store.id(forKey: key, txn)
            let old = try oldId.flatMap { try store.item($0, txn) }
            var newAttributes = old?.attributes
            if case .set(let a) = attributes { newAttributes = (a?.isEmpty ?? true) ? nil : a }
            if let item { newAttributes = item.attributes }
            // Parsed once each: the new attributes (shared with the views), the old ones if needed.
            let changed = newAttributes != old?.attributes
            let newValues = changed ? indexedValues(staging: newAttributes) : nil
            if item == nil, let newValues { try setViewAttributes(of: key, newAttributes, newValues, txn, &effects) }
            if let oldId, let old, try sameVector(oldId, vector, txn) {
                // Same vector: only attributes may change, and the id stays (no tombstone churn
                // when a load is run again).
                guard let newValues else { return .unchanged }
                try setAttributes(oldId, old, newAttributes, newValues, txn, &effects)
                return .updated
            }
            let id = writer.allocateId()
            let oldValues = indexedValues(old?.attributes)
            var touched = newValues ?? oldValues
            if let oldId, let old {
                try store.removeItem(id: oldId, record: old, isView: item != nil, indexed: oldValues, txn)
                touched.formUnion(oldValues)
                effects.append(.tombstone(self, id: oldId))
            }
            try vector.withUnsafeBufferPointer {
                try store.insert(id: id, record: ItemRecord(key: key, attributes: newAttributes), vector: $0,
                                 isView: item != nil, indexed: newValues ?? oldValues, txn)
            }
            effects.append(.add(self, id: id, key: key, vector: write.preparedVector!))
            membersChanged(touched, &effects)
            return old == nil ? .added : .updated
        case .remove(let key):
            guard try store.id(forKey: key, txn) != nil else { return .notFound }
            // An item goes with its views; a view goes alone.
            let isView = Views.split(key).view != nil
            let members = isView ? [key] : [key] + (try viewKeys(of: key, txn))
            for member in members {
                guard let id = try store.id(forKey: member, txn), let record = try store.item(id, txn) else { continue }
                let touched = indexedValues(record.attributes)
                try store.removeItem(id: id, record: record, isView: member != key || isView, indexed: touched, txn)
                try store.deleteKey(member, txn)
                effects.append(.tombstone(self, id: id))
                membersChanged(touched, &effects)
            }
            // As in Redis, a set whose last element goes is deleted with it.
            if try store.vectorCount(txn) == 0 { try stageDrop(txn, &writer, &effects) }
            return .removed
        case .setAttributes(let key, let attributes):
            guard Views.split(key).view == nil else { throw Self.viewAttributesRefused(key) }
            guard let id = try store.id(forKey: key, txn), let old = try store.item(id, txn) else {
                return .notFound
            }
            let a = (attributes?.isEmpty ?? true) ? nil : attributes
            if a != old.attributes {
                let values = indexedValues(staging: a)
                try setAttributes(id, old, a, values, txn, &effects)
                try setViewAttributes(of: key, a, values, txn, &effects)
            }
            return .updated
        case .dropCollection:
            try stageDrop(txn, &writer, &effects)
            return .removed
        }
    }

    /// Deletes the collection's tables and meta keys in the open transaction.
    private func stageDrop(_ txn: Transaction, _ writer: inout CollectionWriter, _ effects: inout [MemoryEffect]) throws {
        try store.emptyAll(txn)
        for key in MetaLayout.perCollection(name: name, number: number) {
            try engine.meta.delete(key, txn)
        }
        writer.noteDrop()
        effects.append(.drop(self))
    }

    /// For a view (Views.swift): its item's record, whose attributes the view mirrors; nil for an
    /// item. Throws before any change when the item is missing or attributes are set on a view.
    private func itemOfView(_ key: String, _ update: AttributeUpdate, _ txn: Transaction) throws -> ItemRecord? {
        let (item, view) = Views.split(key)
        guard view != nil else { return nil }
        if case .set = update { throw Self.viewAttributesRefused(key) }
        guard let id = try store.id(forKey: item, txn), let record = try store.item(id, txn) else {
            throw EngineError.invalidArgument("no element named '\(item)': add the item itself before its views")
        }
        return record
    }

    static func viewAttributesRefused(_ key: String) -> EngineError {
        .invalidArgument("attributes belong to the item: set them on '\(Views.split(key).item)', not on one of its views")
    }

    /// Copies an item's new attributes (and their index values) to its views, so filters see
    /// every view as the item.
    private func setViewAttributes(of key: String, _ attributes: String?, _ values: IndexedValues, _ txn: Transaction,
                                   _ effects: inout [MemoryEffect]) throws {
        for member in try viewKeys(of: key, txn) {
            guard let id = try store.id(forKey: member, txn), let record = try store.item(id, txn),
                  record.attributes != attributes else { continue }
            try setAttributes(id, record, attributes, values, txn, &effects)
        }
    }

    /// Replaces one member's attributes, re-listing it in the attribute tables.
    private func setAttributes(_ id: UInt64, _ old: ItemRecord, _ attributes: String?, _ values: IndexedValues,
                               _ txn: Transaction, _ effects: inout [MemoryEffect]) throws {
        let leaving = indexedValues(old.attributes)
        try store.setAttributes(id: id, old: old, attributes: attributes, leaving: leaving, joining: values, txn)
        membersChanged(leaving.union(values), &effects)
    }

    private func viewKeys(of item: String, _ txn: Transaction) throws -> [String] {
        try store.viewKeys(withPrefix: Views.member(item: item, view: ""), txn)
    }

    /// The attribute-table entries of stored attributes (parsed only when the collection
    /// indexes some attribute).
    private func indexedValues(_ json: String?) -> IndexedValues {
        guard !definition.attributes.isEmpty, let parsed = Attributes(json) else { return [] }
        return parsed.indexedValues(definition.attributes)
    }

    /// The same for attributes a write brings: parsed once, their kinds noted (AttributeKinds).
    private func indexedValues(staging json: String?) -> IndexedValues {
        guard !definition.attributes.isEmpty, let parsed = Attributes(json) else { return [] }
        noteKinds(parsed)
        return parsed.indexedValues(definition.attributes)
    }

    /// Filters over these values must be resolved again once this write is applied: after
    /// the segment effects of the same write, so a resolution never misses an applied item.
    private func membersChanged(_ values: IndexedValues, _ effects: inout [MemoryEffect]) {
        if !values.isEmpty { effects.append(.membersChanged(self, values)) }
    }

    private func sameVector(_ id: UInt64, _ vector: [Float], _ txn: Transaction) throws -> Bool {
        guard let stored = try store.vectorBytes(id, txn), stored.count == vector.count * 4 else {
            return false
        }
        return vector.withUnsafeBytes { $0.elementsEqual(stored) }
    }

    /// Stores the id counter, and notes in the clock table when this batch's new ids (from
    /// the writer's `batchStart`) were allocated, so "added since a time" resolves to an id.
    func persistNextId(_ txn: Transaction, _ writer: CollectionWriter) throws {
        guard !writer.droppedInBatch else { return }  // its meta keys are gone with it
        try engine.meta.putUInt64(MetaLayout.nextId(number), writer.nextId, txn)
        try persistAttributeKinds(txn)
        if writer.nextId > writer.batchStart {
            try store.noteClock(second: UInt64(max(0, Date().timeIntervalSince1970)), firstId: writer.batchStart, txn)
        }
    }

    func appendCommitted(id: UInt64, key: String, vector: [Float]) {
        startLiveSegmentIfTrained()
        // The mutable segment is frozen as soon as it fills, so it always has room here. The
        // append is under the lock because SAVE freezes the mutable segment from another
        // thread: an item lands wholly before the freeze (and is sealed) or after it.
        let target = state.withLock { s in
            vector.withUnsafeBufferPointer { s.mutable.append(id: id, key: key, vector: $0.baseAddress!) }
            return s.mutable
        }
        if target is any LiveSegment { engine.indexer.wake() }
        if target.isFull { freezeMutable() }
    }

    /// Items an index that needs training waits for before its first seal: FAISS's k-means
    /// wants 39 points per centroid (or codebook entry). Until then the items are served by
    /// an exact scan, which is also the right answer for so few items. 0 when none are needed.
    /// Public: the ingest tool says so when a load ends below it.
    public var itemsToTrain: Int {
        state.withLock { s in s.template == nil && s.sealed.isEmpty ? trainHint : 0 }
    }

    /// Moves the mutable segment to the frozen list and schedules its sealing; an index that
    /// cannot be trained yet (too few items) keeps it mutable and exact instead.
    func freezeMutable() {
        let fresh = newGrowingSegment()
        let needed = itemsToTrain
        let full: (any GrowingSegment)? = state.withLock { s in
            // A full segment always has enough: flatCapacity waits for training's count.
            guard s.mutable.count > 0, s.mutable.count >= needed else { return nil }
            let f = s.mutable
            s.frozen.append(f)
            s.mutable = fresh
            return f
        }
        if let full { engine.sealer.schedule(self, full) }
    }

    /// Commit thread. The first seal of an IVF collection trains its quantizer while the next
    /// (flat, exact) segment already fills; from then on new items belong in the trained lists.
    /// So the flat segment gives way to a live IVF one at once: frozen and sealed early if it
    /// holds items, rather than scanned by every query until it is full.
    private func startLiveSegmentIfTrained() {
        guard !usesGraph else { return }
        let (template, isLive) = state.withLock { ($0.template, $0.mutable is any LiveSegment) }
        guard let template, !isLive, supportsLiveIVF(template) else { return }
        let fresh = newGrowingSegment()
        guard fresh is any LiveSegment else { return }
        let early: (any GrowingSegment)? = state.withLock { s in
            let old = s.mutable
            s.mutable = fresh
            guard old.count > 0 else { return nil }
            s.frozen.append(old)
            return old
        }
        if let early { engine.sealer.schedule(self, early) }
    }

    func supportsLiveIVF(_ template: FaissIndex) -> Bool {
        let key = ObjectIdentifier(template)
        if let known = liveIVFSupport.withLock({ $0 }), known.template == key { return known.supported }
        let supported = IVFSegment.supports(template)
        liveIVFSupport.withLock { $0 = (key, supported) }
        return supported
    }

    func tombstoneCommitted(id: UInt64) {
        state.withLock { s in
            for seg in s.all.reversed() {
                if let first = seg.firstId, first <= id, let last = seg.lastId, id <= last {
                    seg.markDeleted(id: id)
                    return
                }
            }
        }
    }

    /// False when a compaction of this collection is already running.
    func beginCompaction() -> Bool {
        state.withLock { s in
            guard !s.compacting else { return false }
            s.compacting = true
            return true
        }
    }

    func endCompaction() { state.withLock { $0.compacting = false } }

    func markDropped() {
        state.withLock { $0.dropped = true }
    }

    public var isDropped: Bool { state.withLock { $0.dropped } }
}
