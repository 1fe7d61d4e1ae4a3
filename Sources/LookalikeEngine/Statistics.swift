// Statistics: what the engine tells operators about itself, for INFO and the metrics endpoint.
//
// Two kinds, kept apart:
//   - state (items, segments, backlogs, bytes) is read when asked (`collectionStatistics`,
//     `memoryUsage`): the numbers live in the collections already, nothing is counted twice;
//   - events (a group commit's size and time, the plan a filtered search chose) are emitted
//     as they happen through swift-metrics' API (`EngineMetrics`), as logs go through
//     swift-log's: the engine never knows the backend. Without a backend bootstrapped (tests,
//     tools, a server without --metrics-port) the handles are no-ops.
// Threads: any thread. The metric handles are created on first use, so a server bootstraps
// its backend before it opens the engine (lookalike-server does).
import CoreMetrics
import Foundation
import LookalikeIndex

/// The index layer's memory accounting, as the engine reports it (the server sees the engine only).
public typealias MemoryUsage = LookalikeIndex.MemoryUsage
public typealias MemoryComponent = LookalikeIndex.MemoryComponent

/// One collection as the metrics endpoint reports it.
public struct CollectionStatistics: Sendable {
    public let name: String
    /// Items (views not counted), as VCARD.
    public let items: Int
    /// Sealed segments a query visits.
    public let sealedSegments: Int
    /// Frozen segments waiting for (or in) their seal: the seal backlog.
    public let sealingSegments: Int
    /// Items in the mutable segment.
    public let mutableItems: Int
    /// Items written but not yet linked into a graph (searched exactly meanwhile).
    public let unindexedItems: Int
    /// Sealed segments the merge policy wants merged now: the merge backlog.
    public let segmentsDueToMerge: Int
    /// What it keeps in memory, by component (`Collection.memoryUsage`).
    public let memory: MemoryUsage
    /// MEMORY USAGE: the sum of `memory`.
    public var estimatedBytes: Int { memory.total }
}

extension Engine {
    /// Every open collection's state; reads each one's item count from LMDB (cheap: a table
    /// statistic). Off the event loop: the caller runs it on a pool.
    public func collectionStatistics() -> [CollectionStatistics] {
        collectionNames().compactMap { collection($0) }.map { c in
            let s = c.segmentSummary()
            return CollectionStatistics(
                name: c.name, items: (try? c.itemCount()) ?? 0, sealedSegments: s.sealed, sealingSegments: s.frozen,
                mutableItems: s.mutableCount, unindexedItems: c.unindexed.items,
                segmentsDueToMerge: c.mergeCandidate()?.count ?? 0, memory: (try? c.memoryUsage()) ?? MemoryUsage())
        }
    }

    /// Every collection's memory added up, for INFO: LMDB as the whole environment's pages in
    /// use (its free pages and meta pages too), not the collections' sum.
    public func memoryTotals() -> MemoryUsage {
        var total = MemoryUsage()
        for c in collectionNames().compactMap({ collection($0) }) {
            guard let m = try? c.memoryUsage() else { continue }
            for component in MemoryComponent.allCases where component != .lmdb {
                total.add(component, m.heap[component, default: 0])
                total.add(component, m.mapped[component, default: 0], mapped: true)
            }
        }
        total.add(.lmdb, storageBytes(), mapped: true)
        return total
    }
}

extension Collection {
    /// What the collection keeps in memory, by component (SegmentMemory.swift): its segments,
    /// its trained template and REDUCE matrix (heap), and the LMDB pages of its records
    /// (mapped). MEMORY USAGE is the total. Cheap: sizes and table statistics, no scan.
    public func memoryUsage() throws -> MemoryUsage {
        var m = MemoryUsage()
        for segment in segmentsSnapshot() { m.add(segment.memoryUsage()) }
        if let template = state.withLock({ $0.template }), let t = try? template.memory() {
            m.add(.indexTables, t.vectors + t.links + t.lists + t.other)
        }
        m.add(.indexTables, (projection?.matrix.count ?? 0) * 4)
        m.add(.lmdb, try wrapped { try engine.environment.read { try store.usedBytes($0) } }, mapped: true)
        return m
    }
}

/// The engine's events, through swift-metrics (see the file's header for names and units).
enum EngineMetrics {
    /// Writes per group commit (WriteQueue).
    static let commitBatchSize = Recorder(label: "lookalike_commit_batch_size")
    /// Time of one group commit's LMDB transaction, its fsync included (WriteQueue).
    static let commitDuration = CoreMetrics.Timer(label: "lookalike_commit_duration_seconds")
    /// How long a seal (building a segment's index and writing it) and a merge took.
    static let sealDuration = CoreMetrics.Timer(label: "lookalike_seal_duration_seconds")
    static let mergeDuration = CoreMetrics.Timer(label: "lookalike_merge_duration_seconds")
    /// The plan a filtered search chose per segment (FilteredSearch), and its fallbacks.
    static let filteredPlans: [FilteredPlanEvent: Counter] = Dictionary(uniqueKeysWithValues: FilteredPlanEvent.allCases.map {
        ($0, Counter(label: "lookalike_filtered_plans_total", dimensions: [("plan", $0.rawValue)]))
    })

    static func filtered(_ event: FilteredPlanEvent) { filteredPlans[event]?.increment() }
}

/// What a filtered search did in one segment (FilteredSearch.swift): the plan it chose, or the
/// fallback it took when that plan found too few members.
enum FilteredPlanEvent: String, CaseIterable, Sendable {
    /// Scanned the members exactly (few members, an exact segment, or the cheapest).
    case exact
    /// Searched unfiltered and kept the members.
    case postFilter = "post-filter"
    /// Walked the index with a selector of the members.
    case selector
    /// A plan found too few members and the members were scanned exactly.
    case fallbackExact = "fallback-exact"
    /// Post-filtering found too few members and a selector walk followed.
    case fallbackSelector = "fallback-selector"
}
