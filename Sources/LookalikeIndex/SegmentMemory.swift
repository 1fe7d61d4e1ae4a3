// SegmentMemory: what a segment keeps in memory, by component, and whether the bytes are heap
// or a memory-mapped file (MEMORY USAGE, VINFO's memory-* fields, INFO memory, the metrics).
//
// Counts bytes in use (positions appended, list entries), never reserved capacity: a growing
// segment's buffers are allocated for its capacity, but untouched pages cost no memory. Mapped
// bytes are the size of what is mapped, not what is resident (the kernel pages it in and out).
// Invariants: every count is >= 0; `total` = heap + mapped = the sum over the components.
// Threads: any thread; each segment reads its own published counts, as a search does.
import Synchronization

/// The parts a collection's memory is reported in (the reply and label names are the raw values).
public enum MemoryComponent: String, CaseIterable, Sendable {
    /// Float rows or codes held by the segments' FAISS indexes (Flat, an HNSW's storage, SQ, PQ).
    case vectors
    /// HNSW neighbour lists, their offsets and the nodes' levels.
    case graphLinks = "graph-links"
    /// IVF inverted lists: codes and ids (mapped when the lists are read with mmap).
    case ivfLists = "ivf-lists"
    /// Trained tables: IVF centroids, SQ ranges, PQ codebooks, transforms, REDUCE's matrix.
    case indexTables = "index-tables"
    /// Growing segments (the mutable one, and frozen ones waiting for their seal): their exact
    /// rows, norms, ids and keys, which also hold items not yet in any index.
    case mutable
    /// Sealed segments' key tables (KeyTable.swift).
    case keyTables = "key-tables"
    /// Sealed segments' ids, squared norms and live bitmaps.
    case segmentIds = "segment-ids"
    /// LMDB pages holding the collection's records (mapped: LMDB is a memory-mapped file).
    case lmdb
}

public struct MemoryUsage: Sendable, Equatable {
    public private(set) var heap: [MemoryComponent: Int] = [:]
    public private(set) var mapped: [MemoryComponent: Int] = [:]

    public init() {}

    public mutating func add(_ component: MemoryComponent, _ bytes: Int, mapped isMapped: Bool = false) {
        if isMapped { mapped[component, default: 0] += max(0, bytes) } else { heap[component, default: 0] += max(0, bytes) }
    }

    public mutating func add(_ other: MemoryUsage) {
        for (c, b) in other.heap { add(c, b) }
        for (c, b) in other.mapped { add(c, b, mapped: true) }
    }

    /// An index's bytes: its vectors, links, lists (mapped or not) and trained tables.
    public mutating func add(index m: FaissMemory) {
        add(.vectors, m.vectors)
        add(.graphLinks, m.links)
        add(.ivfLists, m.lists, mapped: m.listsMapped)
        add(.indexTables, m.other)
    }

    /// All bytes of one component, heap and mapped.
    public subscript(_ component: MemoryComponent) -> Int {
        heap[component, default: 0] + mapped[component, default: 0]
    }

    public var heapTotal: Int { heap.values.reduce(0, +) }
    public var mappedTotal: Int { mapped.values.reduce(0, +) }
    public var total: Int { heapTotal + mappedTotal }
}

extension FlatSegment {
    public func memoryUsage() -> MemoryUsage {
        var m = MemoryUsage()
        // A row, its squared norm and its id per position; the bitmap is allocated whole.
        m.add(.mutable, count * (dimension * 4 + 4 + 8) + live.byteCount + keyBytes)
        return m
    }
}

extension SealedSegment {
    public func memoryUsage() -> MemoryUsage {
        var m = MemoryUsage()
        if let index = try? index.memory() { m.add(index: index) }
        m.add(.segmentIds, count * 8 + normsCount * 4 + live.byteCount)
        m.add(.keyTables, keys?.memoryBytes ?? 0)
        return m
    }
}

extension LiveSegment {
    /// The exact buffer (mutable) plus what the index holds so far.
    public func memoryUsage() -> MemoryUsage {
        var m = buffer.memoryUsage()
        m.add(index: indexMemory())
        return m
    }
}
