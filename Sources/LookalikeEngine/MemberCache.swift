// MemberCache: resolved filters (each segment's member positions and FAISS selector), reused
// by later queries while nothing they depend on has changed. Without it every filtered query
// reads its member ids from LMDB and looks each up in every segment: for a filter matching
// half of 63k items that is ~2 ms, several times the search itself.
//
// Owns: entries keyed by the filter's indexed set; generation counters for attribute values
// (hashed into a fixed table of slots, so memory does not grow with the number of values; a
// collision only costs an extra resolution).
// Invariants: an entry is used only when (1) every value it was resolved from still has the
// generation read before the resolution's LMDB snapshot began, and (2) the collection's
// segment list is the same objects. A write bumps its values' generations after its segment
// effects are applied (WriteQueue.apply), so a used entry never lacks an applied member.
// Members deleted since are skipped through the live bitmaps, as everywhere.
// Threads: any. One lock, held for lookups, stores and bumps, never while resolving.
import Foundation
import LookalikeIndex
import LookalikeStorage

final class MemberCache: @unchecked Sendable {
    private struct Entry {
        let generations: [UInt64]
        let segments: [WeakSegment]
        let parts: [MemberPositions]
        let bytes: Int
    }

    private struct WeakSegment {
        weak var segment: AnyObject?
    }

    private static let slotCount = 4096
    private let lock = NSLock()
    private var slots = [UInt64](repeating: 0, count: slotCount)
    private var entries: [FilterExpression.IndexedSet: Entry] = [:]
    private var bytes = 0
    /// Most bytes of positions and selectors kept (EngineOptions.filterCacheBytes).
    let budget: Int

    init(budget: Int) { self.budget = budget }

    /// The generations of the values `set` is made of, to read before resolving it.
    func generations(of set: FilterExpression.IndexedSet) -> [UInt64] {
        let s = Self.slots(of: set)
        return lock.withLock { s.map { slots[$0] } }
    }

    /// The cached resolution, if still valid for this segment list.
    func lookup(_ set: FilterExpression.IndexedSet, segments: [any Segment]) -> [MemberPositions]? {
        let s = Self.slots(of: set)
        return lock.withLock {
            guard let e = entries[set], e.generations == s.map({ slots[$0] }),
                  e.segments.count == segments.count,
                  zip(e.segments, segments).allSatisfy({ $0.segment === $1 }) else { return nil }
            return e.parts
        }
    }

    /// Keeps a resolution made after reading `generations`. Over budget, the cache starts over.
    func store(_ set: FilterExpression.IndexedSet, generations: [UInt64], segments: [any Segment],
               parts: [MemberPositions]) {
        let size = parts.reduce(64) { $0 + $1.bytes }
        guard size <= budget / 4 else { return }
        lock.withLock {
            if let old = entries[set] { bytes -= old.bytes }
            if bytes + size > budget {
                entries.removeAll()
                bytes = 0
            }
            entries[set] = Entry(generations: generations, segments: segments.map { WeakSegment(segment: $0) },
                                 parts: parts, bytes: size)
            bytes += size
        }
    }

    /// Member sets held (tests: equal sets share one entry).
    var count: Int { lock.withLock { entries.count } }

    /// Called by the commit thread once a write's effects are applied.
    func invalidate(_ values: IndexedValues) {
        let s = values.map { Self.slot($0.attribute, $0.value) }
        lock.withLock { for i in s { slots[i] &+= 1 } }
    }

    private static func slots(of set: FilterExpression.IndexedSet) -> [Int] {
        switch set {
        case .value(let attribute, let text): return [slot(attribute, text)]
        case .union(let parts), .intersection(let parts): return parts.flatMap(slots(of:))
        }
    }

    private static func slot(_ attribute: String, _ value: String) -> Int {
        var h = Hasher()
        h.combine(attribute)
        h.combine(value)
        return Int(UInt(bitPattern: h.finalize()) % UInt(slotCount))
    }
}
