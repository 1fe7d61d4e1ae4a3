// AdminJobs: the one executor of administrative jobs (SAVE, BGSAVE, SHUTDOWN, DEBUG RELOAD,
// VCOMPACT, VNEWNEIGHBORS, REPLICAOF), on a small fixed set of threads of its own
// (--admin-threads, default 2), so the search pool only searches and the event loops only
// frame, dispatch and reply.
//
// Not here, by decision (issue 16): snapshots (SAVE TO, BGSAVE TO, the full syncs a primary
// writes for its replicas) keep a one-thread serial queue of their own (Snapshots.swift).
//   - As a long job, a full sync would wait behind a VCOMPACT or a VNEWNEIGHBORS (minutes):
//     with the default two threads, long jobs have one. The replica has no data until the
//     snapshot arrives, so it would wait as long.
//   - As a control job, a snapshot (minutes for a large folder, longer with --snapshot-rate-mb)
//     would take the thread kept for REPLICAOF and SHUTDOWN: a Sentinel failover would wait
//     behind a backup.
//   - A third kind with a thread kept for it is that same one thread under this type's name,
//     plus a third limit in `next`; with --admin-threads 1 it would either starve or exceed
//     the bound.
// So the bound on administrative work is --admin-threads threads plus one snapshot thread,
// each queue in arrival order (test_admin_executor.py: a SAVE TO is written while a
// VCOMPACT runs; REPLICAOF is not held up by one).
//
// Invariants:
//   - at most `threads` jobs run at once; the others wait, in arrival order within their kind;
//   - with two threads or more, long jobs (saves, reloads, compactions, the batch job) hold at
//     most threads - 1 of them, so a control job (REPLICAOF, SHUTDOWN) never waits behind a
//     compaction: a Sentinel failover is not held up for minutes. With one thread, it waits;
//   - a job's result completes a promise of the caller's event loop: replies go back there;
//   - `shutdown` fails the jobs still queued ("the server is shutting down"), waits for the
//     running ones, and ends the threads; jobs queued after it fail at once.
// Threads: `run`, `submit` and `counts` from any thread; jobs run on this executor's threads
// ("lookalike-admin-N"); `shutdown` from any thread but those.
import Foundation
import NIOCore
import NIOPosix

final class AdminJobs: @unchecked Sendable {
    enum Kind: Sendable { case long, control }

    private struct Job {
        let kind: Kind
        /// Runs the job, or (true) tells it that it will never run.
        let perform: @Sendable (_ cancelled: Bool) -> Void
    }

    let threads: Int
    private let longLimit: Int
    private let condition = NSCondition()
    private var queue: [Job] = []  // under `condition`, as are the three below
    private var running = 0
    private var runningLong = 0
    private var stopping = false
    private let finished = DispatchGroup()

    init(threads: Int) {
        self.threads = max(1, threads)
        longLimit = max(1, self.threads - 1)
        for i in 0..<self.threads {
            finished.enter()
            let t = Thread { [self] in
                work()
                finished.leave()
            }
            t.name = "lookalike-admin-\(i)"
            t.start()
        }
    }

    /// Runs `job` on an admin thread; the future completes on `loop`.
    func run<T: Sendable>(_ kind: Kind, on loop: EventLoop, _ job: @escaping @Sendable () throws -> T) -> EventLoopFuture<T> {
        let promise = loop.makePromise(of: T.self)
        enqueue(Job(kind: kind) { cancelled in
            if cancelled { promise.fail(NIOThreadPoolError.ThreadPoolInactive()) } else { promise.completeWith(Result { try job() }) }
        })
        return promise.futureResult
    }

    /// Runs `job` on an admin thread, nobody waiting for it (BGSAVE); skipped after `shutdown`.
    func submit(_ kind: Kind, _ job: @escaping @Sendable () -> Void) {
        enqueue(Job(kind: kind) { cancelled in if !cancelled { job() } })
    }

    /// INFO: jobs running and jobs waiting for a thread.
    var counts: (running: Int, queued: Int) {
        condition.lock()
        defer { condition.unlock() }
        return (running, queue.count)
    }

    func shutdown() {
        condition.lock()
        stopping = true
        let left = queue
        queue = []
        condition.broadcast()
        condition.unlock()
        for job in left { job.perform(true) }
        finished.wait()
    }

    private func enqueue(_ job: Job) {
        condition.lock()
        guard !stopping else {
            condition.unlock()
            return job.perform(true)
        }
        queue.append(job)
        condition.broadcast()
        condition.unlock()
    }

    /// One thread's loop: the first job it may take (see the invariants), until `shutdown`.
    private func work() {
        condition.lock()
        while let job = next() {
            running += 1
            if job.kind == .long { runningLong += 1 }
            condition.unlock()
            job.perform(false)
            condition.lock()
            running -= 1
            if job.kind == .long { runningLong -= 1 }
            condition.broadcast()  // a long job's place is free: a waiting thread may take one
        }
        condition.unlock()
    }

    /// Waits for a job this thread may take; nil once stopping. Called with `condition` held.
    private func next() -> Job? {
        while true {
            if let i = queue.firstIndex(where: { $0.kind == .control || runningLong < longLimit }) {
                return queue.remove(at: i)
            }
            if stopping { return nil }
            condition.wait()
        }
    }
}
