// Recovery: opening a collection from what is on disk.
//
//   1. load the sealed segments the manifest names (memory-mapped for IVF), and the template;
//      a damaged segment file is dropped together with every later one, and their items are
//      replayed instead (LMDB holds every vector: it is the source of truth);
//   2. apply the tombstones of sealed ids;
//   3. replay the live items at or after `sealedThrough` into flat segments;
//   4. remove segment files the manifest does not name (leftovers of an interrupted seal);
//      this comes before step 3, whose replay may start seals of its own.
// Time grows with what came after the last seal, not with the collection's size.
// Threads: runs in Engine.init, before the commit thread or any reader sees the collection.
import Foundation
import Logging
import LookalikeIndex
import LookalikeStorage

extension Collection {
    func open(manifest stored: Manifest, nextId storedNextId: UInt64) throws {
        var manifest = stored
        var changed = false
        let template: FaissIndex?
        if let t = manifest.template {
            do { template = try FaissIndex.read(path: SegmentFiles.indexPath(segmentDirectory, t), mmap: false) }
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
        nextId = storedNextId
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
                appendCommitted(id: id, vector: try indexVector(vector))
                nextId = max(nextId, id + 1)
                return true
            }
        }
        engine.merger.schedule(self)  // a merge the last run did not get to
    }
}
