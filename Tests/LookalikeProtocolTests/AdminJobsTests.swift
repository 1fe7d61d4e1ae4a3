// The admin executor's rules (AdminJobs.swift): long jobs hold at most all but one thread, so a
// control job runs while a long one runs and another waits; shutdown refuses what is queued,
// lets what runs finish, and refuses what comes after. Ordered by semaphores, never by time.
import Dispatch
@testable import LookalikeProtocol
import Synchronization
import LookalikeTestSupport
import XCTest

final class AdminJobsTests: XCTestCase {
    func testControlJobsDoNotWaitBehindLongJobs() {
        let jobs = AdminJobs(threads: 2)
        defer { jobs.shutdown() }
        let started = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        let done = DispatchSemaphore(value: 0), control = DispatchSemaphore(value: 0)
        jobs.submit(.long) { started.signal(); release.wait(); done.signal() }
        started.wait()
        jobs.submit(.long) { done.signal() }  // waits: one long job at a time with two threads
        jobs.submit(.control) { control.signal() }
        control.wait()  // ran while the first long job runs and the second waits
        XCTAssertEqual(jobs.counts.queued, 1)
        release.signal()
        done.wait()
        done.wait()
    }

    func testShutdownRefusesQueuedJobsAndLetsRunningOnesFinish() {
        let jobs = AdminJobs(threads: 1)
        let started = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        let ran = Mutex<[String]>([])
        jobs.submit(.long) { started.signal(); release.wait(); ran.withLock { $0.append("running") } }
        started.wait()
        jobs.submit(.control) { ran.withLock { $0.append("queued") } }  // one thread: it waits
        XCTAssertEqual(jobs.counts.queued, 1)
        let stopped = DispatchSemaphore(value: 0)
        DispatchQueue.global().async { jobs.shutdown(); stopped.signal() }
        // shutdown drops the queue at once, then waits for the running job.
        for _ in 0..<10_000 where jobs.counts.queued > 0 { usleep(1_000) }
        XCTAssertEqual(jobs.counts.queued, 0)
        release.signal()
        stopped.wait()
        jobs.submit(.control) { ran.withLock { $0.append("after") } }
        XCTAssertEqual(ran.withLock { $0 }, ["running"])
    }
}
