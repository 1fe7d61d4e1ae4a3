// Recovery: opening a collection from what is on disk.
//
//   0. bring attribute tables written by older rules up to the current ones, once
//      (AttributeIndexVersion.swift);
//   1. load the sealed segments the manifest names (memory-mapped for IVF), and the template;
//      a damaged segment file (a bad size, or contents that do not match the checksum its ids
//      file records: SegmentFiles) is dropped together with every later one, and their items are
//      replayed instead (LMDB holds every vector: it is the source of truth); a segment
//      without its keys file (a folder from before keys files: KeyTable.swift) gets one written
//      from LMDB, once (the format migration: no version bump, old folders open as they are);
//   2. apply the tombstones of sealed ids;
//   3. replay the live items at or after `sealedThrough` into flat segments;
//   4. remove segment files the manifest does not name (leftovers of an interrupted seal);
//      this comes before step 3, whose replay may start seals of its own.
// Time grows with what came after the last seal, not with the collection's size.
// Threads: runs in Engine.init, before the commit thread or any reader sees the collection (and
// in createCollection, before the registry does); it builds the collection's writer, which the
// engine then hands to the commit thread.
import Foundation
import Logging
import LookalikeIndex
import LookalikeStorage

extension Collection {
    /// Returns the collection's writer (CollectionWriter.swift), for the engine to hand to the
    /// write queue: its id counter is past every stored id.
    func open(manifest stored: Manifest, nextId storedNextId: UInt64) throws -> CollectionWriter {
        try reindexAttributesIfOld()
        var manifest = stored
        var changed = false
        let template: FaissIndex?
        if let t = manifest.template {
            do { template = try SegmentFiles.readIndex(name: t, directory: segmentDirectory, mmap: false) }
            catch {
                engine.logger.error("trained template unreadable; the next seal trains again",
                                    metadata: ["collection": "\(name)", "error": "\(error)"])
                template = nil
                manifest.template = nil
                changed = true
            }
        } else {
            template = nil
        }
        var sealed: [SealedSegment] = []
        for (i, entry) in manifest.segments.enumerated() {
            do {
                let seg = try SegmentFiles.read(name: entry.name, directory: segmentDirectory,
                                                mmap: engine.options.mmapIVF && specKind == .ivf,
                                                metric: definition.metric.faiss)
                if seg.info.kind == .hnsw { try seg.index.setHNSW(efConstruction: 0, efSearch: engine.options.maxEfSearch) }
                if seg.keys == nil { try migrateKeys(seg) }
                sealed.append(seg)
            } catch {
                engine.logger.error("segment unreadable; its items are replayed from LMDB", metadata: [
                    "collection": "\(name)", "segment": "\(entry.name)", "error": "\(error)"])
                manifest.segments = Array(manifest.segments.prefix(i))
                manifest.sealedThrough = entry.firstId
                changed = true
                break
            }
        }
        if changed { _ = try engine.commitManifest(manifest, for: self) }
        var nextId = storedNextId
        state.withLock { s in
            s.sealed = sealed
            s.manifest = manifest
            s.template = template
        }
        let fresh = newGrowingSegment()
        state.withLock { $0.mutable = fresh }

        // Before the replay: replaying more than a segment's worth starts seals, whose
        // temporary files no manifest names yet.
        var keep = Set(manifest.segments.map(\.name))
        if let t = manifest.template { keep.insert(t) }
        let removed = SegmentFiles.removeUnlisted(directory: segmentDirectory, keep: keep)
        if !removed.isEmpty {
            engine.logger.info("removed leftover segment files", metadata: [
                "collection": "\(name)", "files": "\(removed.joined(separator: ","))"])
        }
        try engine.environment.read { txn in
            try store.forEachTombstone(txn) { id in
                guard id < manifest.sealedThrough else { return }
                for seg in sealed where seg.firstId! <= id && id <= seg.lastId! {
                    seg.markDeleted(id: id)
                    return
                }
            }
            var vector = [Float](repeating: 0, count: definition.dimension)
            try store.forEachVector(from: manifest.sealedThrough, txn) { id, bytes in
                vector.withUnsafeMutableBytes { _ = bytes.copyBytes(to: $0) }
                guard let key = try store.key(id, txn) else { throw EngineError.storage("item \(id) has a vector and no key record") }
                appendCommitted(id: id, key: key, vector: try preparedVector(vector))
                nextId = max(nextId, id + 1)
                return true
            }
        }
        engine.merger.schedule(self)  // a merge the last run did not get to
        return CollectionWriter(collection: self, nextId: nextId)
    }

    /// Writes the keys file of a segment sealed before keys files existed (or whose keys file
    /// is damaged), from LMDB, and attaches it: a one-time migration per segment at open. (This
    /// open reads the segment's item records once; later hits never do.)
    private func migrateKeys(_ seg: SealedSegment) throws {
        let keys = try engine.environment.read { txn in
            try seg.idList.map { id -> String in
                // A removed item has no record; its position is dead (tombstone), never a hit.
                try store.key(id, txn) ?? ""
            }
        }
        let table = KeyTable(keys: keys)
        try SegmentFiles.writeKeys(table, name: seg.name, directory: segmentDirectory)
        seg.attach(keys: table)
        engine.logger.info("wrote the keys file of a segment from before keys files", metadata: [
            "collection": "\(name)", "segment": "\(seg.name)", "items": "\(keys.count)"])
    }
}
