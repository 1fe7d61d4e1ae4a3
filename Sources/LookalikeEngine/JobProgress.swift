// JobProgress: how far a long job is, for its STATUS commands and INFO: whether it runs, its
// stage, units done out of a total, the time since it started and an estimate of the time
// left. The units are the job's: items or rows (the new-items batch job, a compaction), bytes
// (a snapshot: Snapshot.swift, whose total grows once the segment files are known).
//
// The estimate is the rate since the counting began (`count(total:)`) applied to what is left:
// nil (unknown) before anything was counted, with nothing to count, or in a stage that does not
// count items (training, writing, publishing: their length is not known in advance).
// Invariants: one job at a time (`begin` refuses a second); `done` only grows within a count.
// Threads: the job's thread writes; any thread reads (each field is atomic, so a reader may see
// a stage with the previous one's counts for a moment, never a torn value).
import Dispatch
import Synchronization

public final class JobProgress: Sendable {
    /// Items (or rows) done so far, and how many the job will do in all.
    let done = Atomic<Int>(0)
    let total = Atomic<Int>(0)
    let running = Atomic<Bool>(false)
    /// Uptime nanoseconds when the job began, and when counting began (0: not yet).
    private let started = Atomic<UInt64>(0)
    private let countStarted = Atomic<UInt64>(0)
    private let stageName = Mutex<String?>(nil)
    private let stageCounts = Atomic<Bool>(true)

    public init() {}

    /// Starts a job; false when one is running. Counts start at 0, the stage at `stage`.
    func begin(stage: String? = nil) -> Bool {
        guard running.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else {
            return false
        }
        done.store(0, ordering: .relaxed)
        total.store(0, ordering: .relaxed)
        countStarted.store(0, ordering: .relaxed)
        started.store(Self.now(), ordering: .relaxed)
        enter(stage, counting: true)
        return true
    }

    /// Ends the job (done/total stay readable until the next one begins).
    func end() {
        stageName.withLock { $0 = nil }
        running.store(false, ordering: .releasing)
    }

    /// Starts counting toward `total`: the estimate's rate is measured from here.
    func count(total n: Int) {
        done.store(0, ordering: .relaxed)
        total.store(n, ordering: .relaxed)
        countStarted.store(Self.now(), ordering: .relaxed)
    }

    /// Counts `n` more items done.
    func advance(by n: Int) { done.add(n, ordering: .relaxed) }

    /// Adds `n` to the total: more work became known while counting (a snapshot's segment files).
    func addToTotal(_ n: Int) { total.add(n, ordering: .relaxed) }

    /// Moves to a stage; `counting` says whether items are counted in it (else no estimate).
    func enter(_ stage: String?, counting: Bool = true) {
        stageName.withLock { $0 = stage }
        stageCounts.store(counting, ordering: .relaxed)
    }

    public var isRunning: Bool { running.load(ordering: .acquiring) }
    public var doneCount: Int { done.load(ordering: .relaxed) }
    public var totalCount: Int { total.load(ordering: .relaxed) }
    public var stage: String? { stageName.withLock { $0 } }
    public var fraction: Double { totalCount == 0 ? 0 : min(1, Double(doneCount) / Double(totalCount)) }

    /// Seconds since the running job began; nil when none runs.
    public var elapsedSeconds: Double? {
        guard isRunning else { return nil }
        return Self.seconds(since: started.load(ordering: .relaxed))
    }

    /// Seconds left at the rate counted so far; nil when unknown (see the file's header).
    public var etaSeconds: Double? {
        let from = countStarted.load(ordering: .relaxed)
        let (d, t) = (doneCount, totalCount)
        guard isRunning, stageCounts.load(ordering: .relaxed), from > 0, d > 0, t > 0 else { return nil }
        guard d < t else { return 0 }
        return Self.seconds(since: from) * Double(t - d) / Double(d)
    }

    private static func now() -> UInt64 { max(1, DispatchTime.now().uptimeNanoseconds) }
    private static func seconds(since t: UInt64) -> Double { Double(now() &- t) / 1e9 }
}

/// The new-items batch job's progress: rows of existing items scored out of the rows all its
/// passes will score (NewItems.swift).
public typealias NewItemsProgress = JobProgress

extension JobProgress {
    public var rowsScored: Int { doneCount }
    public var rowsTotal: Int { totalCount }
}
