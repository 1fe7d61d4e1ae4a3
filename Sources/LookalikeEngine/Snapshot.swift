// Snapshot: a consistent copy of a data folder, written while the engine serves and writes.
// Used twice: a backup to a folder (BGSAVE TO), and a replica's full sync.
//
// A snapshot folder holds what a data folder needs, and nothing that LMDB recreates:
//   data.mdb                       LMDB, copied with mdb_env_copyfd2 (one read transaction:
//                                  writers are blocked only while its two meta pages are copied)
//   segments/c<N>/*.faiss, *.ids   the sealed segment files that the copied manifests name
//   lookalike-snapshot.json        replication id and offset of the copy, its files and bytes
// Steps: pin segment files (a merge or a drop that replaces segments meanwhile defers deleting
// their files until the pin is released), copy LMDB, read the copy's manifests, copy the files
// they name, fsync everything, and rename `<path>.partial` to `<path>`. A snapshot cut short
// (error, kill -9) is only ever a `.partial` folder; the next snapshot to the same path
// removes it. Restoring is starting the server with `--data <path>` (Docs/backup.md).
// The copy knows its place in the replication stream: the offset is stored in the same LMDB
// transactions as the writes (ReplicationLog).
//
// Installing (a replica's full sync): the received snapshot is renamed to
// `<data>/replica-sync` when complete; with the engine closed, `finishInterruptedInstall`
// replaces data.mdb and segments/ with it. Engine.init runs that too, so a crash in between
// finishes the install at the next start (or drops an incomplete download).
// Threads: `writeSnapshot` blocks its caller for the whole copy (an administrative thread,
// never the event loop or the search pool); one snapshot of an engine at a time is the
// caller's business (concurrent ones are correct, only slower). The server calls it from a
// one-thread queue of its own (Snapshots.swift), not from the admin executor (AdminJobs), so a
// replica's full sync never waits behind a compaction and never takes the thread kept for
// REPLICAOF and SHUTDOWN (AdminJobs' header says why).
import Foundation
import Logging
import LookalikeIndex
import LookalikeStorage
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

public struct SnapshotSummary: Sendable {
    public let path: String
    /// Where in the replication stream the copy stands: it holds every change before `offset`.
    public let position: ReplicationLog.Position
    public let bytes: Int
    /// Paths relative to `path`, data.mdb first.
    public let files: [String]
}

/// Segment-file deletions wait while a snapshot is copying (see the header).
final class SegmentPins: Sendable {
    private let state = Mutex<(pins: Int, deferred: [@Sendable () -> Void])>((0, []))

    func pin() { state.withLock { $0.pins += 1 } }

    func unpin() {
        let run = state.withLock { s -> [@Sendable () -> Void] in
            s.pins -= 1
            guard s.pins == 0 else { return [] }
            defer { s.deferred = [] }
            return s.deferred
        }
        for r in run { r() }
    }

    private func whenUnpinned(_ work: @escaping @Sendable () -> Void) {
        let now = state.withLock { s -> Bool in
            if s.pins == 0 { return true }
            s.deferred.append(work)
            return false
        }
        if now { work() }
    }

    func remove(name: String, directory: String) {
        whenUnpinned { SegmentFiles.remove(name: name, directory: directory) }
    }

    func removeFolder(_ path: String) {
        whenUnpinned { try? FileManager.default.removeItem(atPath: path) }
    }
}

extension Engine {
    static let snapshotInfoFile = "lookalike-snapshot.json"
    /// Where a replica's complete full-sync download waits to be installed.
    public static let installFolder = "replica-sync"
    /// Where a primary writes the snapshots it sends to replicas (removed at start).
    public static let syncSnapshotFolder = "sync-snapshots"

    /// Writes a consistent snapshot of this engine's data to `path` (which must not exist),
    /// at most `bytesPerSecond` (0: no limit). Throws, leaving only `<path>.partial`, on error.
    /// `progress` counts bytes: written out of the size of data.mdb when the copy began, plus
    /// the segment files once they are known (stages "database", "segments").
    public func writeSnapshot(to path: String, bytesPerSecond: Int = 0,
                              progress: JobProgress = JobProgress()) throws -> SnapshotSummary {
        let fm = FileManager.default
        guard !fm.fileExists(atPath: path) else {
            throw EngineError.invalidArgument("\(path) exists: a snapshot goes to a new folder")
        }
        let partial = path + ".partial"
        try? fm.removeItem(atPath: partial)
        do {
            try fm.createDirectory(atPath: partial, withIntermediateDirectories: true)
        } catch {
            throw EngineError.storage("cannot create \(partial): \(error.localizedDescription)")
        }
        var throttle = Throttle(bytesPerSecond: bytesPerSecond)
        guard progress.begin(stage: "database") else {
            throw EngineError.invalidArgument("a snapshot is already counting into this progress: one at a time")
        }
        defer { progress.end() }
        progress.count(total: storageBytes())
        segmentPins.pin()
        defer { segmentPins.unpin() }
        try copyDatabase(to: partial + "/data.mdb", throttle: &throttle, progress: progress)
        let (position, segmentFiles) = try Self.describeCopy(partial, options: options.storage)
        unlink(partial + "/lock.mdb")
        let expected = segmentFiles.reduce(0) { $0 + FileCopy.size(directory + "/" + $1) }
        progress.enter("segments")
        progress.addToTotal(expected)
        for f in segmentFiles {
            try FileCopy.copy(directory + "/" + f, to: partial + "/" + f, throttle: &throttle, progress: progress)
        }
        let files = ["data.mdb"] + segmentFiles
        let bytes = progress.doneCount
        let info: [String: Any] = ["replid": position.replid, "offset": position.offset, "bytes": bytes,
                                   "files": files, "created": Int(Date().timeIntervalSince1970)]
        let json = try JSONSerialization.data(withJSONObject: info, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
        try FileCopy.writeDurably(json, to: partial + "/" + Self.snapshotInfoFile)
        try FileCopy.syncFolders(partial, files)
        try FileCopy.rename(partial, path)
        return SnapshotSummary(path: path, position: position, bytes: bytes, files: files)
    }

    /// mdb_env_copyfd2 into a pipe on a thread of its own; this thread drains the pipe into the
    /// file, so it can count and pace the bytes.
    private func copyDatabase(to file: String, throttle: inout Throttle, progress: JobProgress) throws {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw EngineError.storage("cannot make a pipe: \(FileCopy.errnoText())") }
        let copyError = Mutex<Error?>(nil)
        let done = DispatchSemaphore(value: 0)
        let environment = self.environment
        let writeEnd = fds[1]
        let copier = Thread {
            do { try environment.copy(to: writeEnd) } catch { copyError.withLock { $0 = error } }
            Glibc.close(writeEnd)
            done.signal()
        }
        copier.name = "lookalike-snapshot-copy"
        copier.start()
        let readError = FileCopy.drain(fds[0], into: file, throttle: &throttle, progress: progress)
        Glibc.close(fds[0])
        done.wait()
        if let e = copyError.withLock({ $0 }) { throw EngineError.wrap(e) }
        if let readError { throw readError }
    }

    /// The replication position and the segment files named by the copied meta table.
    private static func describeCopy(_ folder: String, options: StorageOptions) throws
        -> (ReplicationLog.Position, [String])
    {
        do {
            let env = try Environment(path: folder, options: options)
            let meta = try MetaStore(environment: env)
            return try env.read { txn in
                var files: [String] = []
                for (_, bytes) in try meta.entries(prefix: MetaLayout.definitionPrefix, txn) {
                    let s = try JSONDecoder().decode(StoredDefinition.self, from: Data(bytes))
                    guard let m = try meta.get(MetaLayout.manifest(s.number), txn) else { continue }
                    let manifest = try JSONDecoder().decode(Manifest.self, from: Data(m))
                    for name in manifest.segments.map(\.name) + (manifest.template.map { [$0] } ?? []) {
                        files += ["segments/c\(s.number)/\(name).faiss", "segments/c\(s.number)/\(name).ids"]
                    }
                }
                let position = try ReplicationLog.storedPosition(meta, txn)
                    ?? ReplicationLog.Position(replid: String(repeating: "0", count: 40), offset: 0)
                return (position, files)
            }
        } catch { throw EngineError.wrap(error) }
    }

    // MARK: - Installing a snapshot (replica full sync)

    /// Replaces the data of `directory` (whose engine is closed) with the snapshot `folder`
    /// (on the same file system).
    public static func installSnapshot(_ folder: String, into directory: String, logger: Logger) throws {
        let ready = directory + "/" + installFolder
        try? FileManager.default.removeItem(atPath: ready)
        try FileCopy.rename(folder, ready)
        try? FileCopy.fsyncPath(directory)
        finishInterruptedInstall(directory, logger: logger)
    }

    /// A complete download in `replica-sync` replaces the data; an incomplete one is dropped;
    /// leftover primary-side sync snapshots are removed. Runs before the folder is opened.
    static func finishInterruptedInstall(_ directory: String, logger: Logger) {
        let fm = FileManager.default
        try? fm.removeItem(atPath: directory + "/" + installFolder + ".partial")
        try? fm.removeItem(atPath: directory + "/" + syncSnapshotFolder)
        let ready = directory + "/" + installFolder
        guard fm.fileExists(atPath: ready + "/data.mdb") else {
            try? fm.removeItem(atPath: ready)
            return
        }
        unlink(directory + "/data.mdb")
        unlink(directory + "/lock.mdb")
        try? fm.removeItem(atPath: directory + "/segments")
        _ = Glibc.rename(ready + "/data.mdb", directory + "/data.mdb")
        if fm.fileExists(atPath: ready + "/segments") {
            _ = Glibc.rename(ready + "/segments", directory + "/segments")
        }
        try? fm.removeItem(atPath: ready)
        try? FileCopy.fsyncPath(directory)
        logger.info("installed a snapshot from the primary", metadata: ["data": "\(directory)"])
    }
}

/// Paces a copy to a byte rate (0: as fast as the disk goes).
struct Throttle {
    let bytesPerSecond: Int
    private let started = DispatchTime.now()
    private var total = 0

    init(bytesPerSecond: Int) { self.bytesPerSecond = max(0, bytesPerSecond) }

    mutating func account(_ bytes: Int) {
        total += bytes
        guard bytesPerSecond > 0 else { return }
        let due = Double(total) / Double(bytesPerSecond)
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
        if due > elapsed { usleep(UInt32(min(10.0, due - elapsed) * 1e6)) }
    }
}
