// Faults: named points where the engine fails on purpose, so tests can see what a failure
// half-way leaves behind (Tests/LookalikeEngineTests/FaultTests.swift): a commit whose LMDB
// transaction aborts, a seal whose segment files are half written, a merge whose new segment
// is written but not yet named in the manifest, a manifest commit that aborts.
//
// Owns: how many more passes of each point fail.
// Invariants: a point fails only while armed, with `EngineError.storage("injected fault …")`
// (an error that aborts what it is in, as a full disk would), and disarms itself after `times`
// failures. Nothing in the server or the protocol arms a point: only code holding the Engine
// (XCTest), so a client can never make a server fail. An unarmed point costs one lock.
// Threads: any; `arm`/`disarm` from the test's thread, `check` on the commit thread, the
// sealer's and the merger's.
import Synchronization

/// Where a fault can be injected (`Engine.faults`).
public enum FaultPoint: String, CaseIterable, Sendable {
    /// The group commit: its writes staged in the LMDB transaction, which then aborts instead
    /// of committing (WriteQueue).
    case commit
    /// A new segment's files (seal, merge, compaction): the FAISS index written, its ids file
    /// not yet (SegmentFiles.write).
    case segmentWrite
    /// The LMDB transaction that names new segment files in a manifest (a seal's, a merge's, a
    /// compaction's) aborts (Engine.commitManifest).
    case manifestCommit
    /// A merge or compaction: its new segment written, the manifest not yet naming it in place
    /// of the run (Collection.publishMerged).
    case mergePublish
}

public final class FaultInjection: Sendable {
    private let armed = Mutex<[FaultPoint: Int]>([:])

    init() {}

    /// Makes the next `times` passes of `point` fail.
    public func arm(_ point: FaultPoint, times: Int = 1) {
        armed.withLock { $0[point] = times > 0 ? times : nil }
    }

    /// Lets every point pass again.
    public func disarmAll() { armed.withLock { $0.removeAll() } }

    /// How many more passes of `point` will fail.
    public func remaining(_ point: FaultPoint) -> Int { armed.withLock { $0[point] ?? 0 } }

    /// Throws when `point` is armed (and counts the failure).
    func check(_ point: FaultPoint) throws {
        let fail = armed.withLock { a -> Bool in
            guard let n = a[point] else { return false }
            a[point] = n > 1 ? n - 1 : nil
            return true
        }
        if fail { throw EngineError.storage("injected fault at \(point.rawValue) (a test armed Engine.faults)") }
    }
}
