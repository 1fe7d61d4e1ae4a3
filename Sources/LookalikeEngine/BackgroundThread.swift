// BackgroundThread: a serial queue of jobs on one thread of its own, at a nice value, for
// CPU-heavy background work (merges) that must yield to searches.
//
// Why not a DispatchQueue: a nice value is per thread, and Dispatch runs every queue's jobs on
// shared pool threads, so niceness set inside a job would stay with a thread that later runs
// other work. This thread is the merger's alone.
// Invariants: jobs run one at a time, in submission order. `sync` waits for what was queued
// before it. After `stop`, queued jobs still run, then the thread ends; later jobs run at once
// on the caller's thread (there is no thread left to run them).
// Threads: `async` and `sync` from any thread (`sync` not from the job thread itself).
import Foundation
import LookalikeIndex

final class BackgroundThread: @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [() -> Void] = []
    private var stopping = false
    private var finished = false

    /// Runs at the options' build priority (`buildNice`, `buildIdle`).
    init(name: String, options: EngineOptions) {
        let (nice, idle) = (options.buildNice, options.buildIdle)
        let t = Thread { [self] in
            FaissIndex.setBuildPriority(nice: nice, idle: idle)
            while true {
                condition.lock()
                while jobs.isEmpty && !stopping { condition.wait() }
                if jobs.isEmpty {
                    finished = true
                    condition.broadcast()
                    condition.unlock()
                    return
                }
                let job = jobs.removeFirst()
                condition.unlock()
                job()
            }
        }
        t.name = name
        t.start()
    }

    func async(_ job: @escaping () -> Void) {
        condition.lock()
        if finished {
            condition.unlock()
            job()
            return
        }
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Lets the queued jobs run, then ends the thread, and waits for that.
    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while !finished { condition.wait() }
        condition.unlock()
    }

    /// Runs `body` after the jobs queued so far, on the caller's thread while this thread is
    /// parked (so it is still one job at a time), and returns when it is done.
    func sync(_ body: () -> Void) {
        let parked = DispatchSemaphore(value: 0), resume = DispatchSemaphore(value: 0)
        condition.lock()
        let running = !finished
        if running {
            jobs.append { parked.signal(); resume.wait() }
            condition.signal()
        }
        condition.unlock()
        guard running else { return body() }
        parked.wait()
        body()
        resume.signal()
    }
}
