// BackgroundThread: a serial queue of jobs on one thread of its own, at a nice value, for
// CPU-heavy background work (merges) that must yield to searches.
//
// Why not a DispatchQueue: a nice value is per thread, and Dispatch runs every queue's jobs on
// shared pool threads, so niceness set inside a job would stay with a thread that later runs
// other work. This thread is the merger's alone.
// Invariants: jobs run one at a time, in submission order. `sync` waits for what was queued
// before it. After `stop`, queued jobs still run, then the thread ends; later jobs run at once
// on the caller's thread (there is no thread left to run them).
// Threads: `async` and `sync` from any thread (`sync` not from the job thread itself). The queue,
// its lock and the stop handshake are ThreadInbox's (shared with WriteQueue).
import Foundation
import LookalikeIndex

final class BackgroundThread: @unchecked Sendable {
    /// Jobs posted after `stop` still run on this thread until it has ended (the header).
    private let inbox = ThreadInbox<() -> Void>(late: .queued)

    /// Runs at the options' build priority (`buildNice`, `buildIdle`).
    init(name: String, options: EngineOptions) {
        let (nice, idle, inbox) = (options.buildNice, options.buildIdle, inbox)
        let t = Thread {
            FaissIndex.setBuildPriority(nice: nice, idle: idle)
            while let job = inbox.next() { job() }
        }
        t.name = name
        t.start()
    }

    func async(_ job: @escaping () -> Void) {
        if !inbox.post(job) { job() }
    }

    /// Lets the queued jobs run, then ends the thread, and waits for that.
    func stop() { inbox.stop() }

    /// Runs `body` after the jobs queued so far, on the caller's thread while this thread is
    /// parked (so it is still one job at a time), and returns when it is done.
    func sync(_ body: () -> Void) {
        let parked = DispatchSemaphore(value: 0), resume = DispatchSemaphore(value: 0)
        guard inbox.post({ parked.signal(); resume.wait() }) else { return body() }
        parked.wait()
        body()
        resume.signal()
    }
}
