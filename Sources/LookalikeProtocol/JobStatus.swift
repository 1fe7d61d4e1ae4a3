// JobStatus: the replies that report a long job of a collection (JobProgress): VCOMPACT key
// STATUS, VCOMPACT's own report, and the timing lines VNEWNEIGHBORS key STATUS shares.
// Threads: any (reads atomics and one short lock).
import LookalikeEngine

enum JobStatus {
    /// Seconds since the running job began and the estimate of those left; null when unknown
    /// (no job running, nothing counted yet, or a stage whose length is not known).
    static func timing(_ p: JobProgress) -> [(RESPValue, RESPValue)] {
        [(.simple("elapsed-seconds"), p.elapsedSeconds.map { .double($0) } ?? .null),
         (.simple("eta-seconds"), p.etaSeconds.map { .double($0) } ?? .null)]
    }

    /// VCOMPACT key STATUS: the running compaction's stage and counts, or the last one's report.
    static func compaction(_ c: Collection) -> RESPValue {
        let p = c.compactionProgress
        let running = p.isRunning
        return .map([
            (.simple("running"), .integer(running ? 1 : 0)),
            (.simple("stage"), running ? p.stage.map { .simple($0) } ?? .null : .null),
            (.simple("items-done"), .integer(p.doneCount)),
            (.simple("items-total"), .integer(p.totalCount)),
            (.simple("progress"), .double(p.fraction)),
        ] + timing(p) + [
            (.simple("last-run"), c.lastCompaction.withLock { $0 }.map(report) ?? .null),
        ])
    }

    /// What VCOMPACT answers when it is done (and STATUS's last-run).
    static func report(_ r: CompactionReport) -> RESPValue {
        .map([
            (.simple("items-kept"), .integer(r.itemsKept)),
            (.simple("items-dropped"), .integer(r.itemsDropped)),
            (.simple("segments-before"), .integer(r.segmentsBefore)),
            (.simple("segments-after"), .integer(r.segmentsAfter)),
            (.simple("bytes-before"), .integer(r.bytesBefore)),
            (.simple("bytes-after"), .integer(r.bytesAfter)),
            (.simple("retrained"), .integer(r.retrained ? 1 : 0)),
            (.simple("seconds"), .double(r.seconds)),
        ])
    }
}
