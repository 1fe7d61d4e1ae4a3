// FileCopy: durable, paced, counted file copies for snapshots (Snapshot.swift) and a
// replica's download. The primitives (write durably, fsync, rename) are SegmentFiles'.
// Errors are EngineError.storage naming the file. Threads: any; each call blocks its caller.
import Foundation
import LookalikeIndex

#if canImport(Glibc)
import Glibc
#endif

enum FileCopy {
    static let chunk = 1 << 20

    static func size(_ path: String) -> Int { SegmentFiles.fileSize(path) }
    static func errnoText() -> String { SegmentFiles.errnoText() }

    static func writeDurably(_ data: Data, to path: String) throws {
        do { try SegmentFiles.writeDurably(data, to: path) } catch { throw EngineError.storage("\(error)") }
    }

    static func fsyncPath(_ path: String) throws {
        do { try SegmentFiles.fsyncFile(path) } catch { throw EngineError.storage("\(error)") }
    }

    static func rename(_ from: String, _ to: String) throws {
        do { try SegmentFiles.rename(from, to) } catch { throw EngineError.storage("\(error)") }
    }

    /// Reads `fd` to its end into a new file (fsynced). On a write error it keeps draining, so
    /// the writer at the other end of a pipe never blocks, and returns the error.
    static func drain(_ fd: Int32, into path: String, throttle: inout Throttle, progress: JobProgress) -> Error? {
        let out = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        var failure: Error? = out < 0 ? EngineError.storage("cannot create \(path): \(errnoText())") : nil
        var buffer = [UInt8](repeating: 0, count: chunk)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, chunk) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 {
                failure = failure ?? EngineError.storage("cannot read the database copy: \(errnoText())")
                break
            }
            if n == 0 { break }
            if failure == nil {
                if let e = writeAll(out, buffer, count: n, path: path) { failure = e } else {
                    progress.advance(by: n)
                    throttle.account(n)
                }
            }
        }
        if out >= 0 {
            if failure == nil && fsync(out) != 0 { failure = EngineError.storage("cannot sync \(path): \(errnoText())") }
            close(out)
        }
        return failure
    }

    /// Copies a file into a new one (creating its folder), fsynced.
    static func copy(_ from: String, to path: String, throttle: inout Throttle, progress: JobProgress) throws {
        try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                 withIntermediateDirectories: true)
        let input = open(from, O_RDONLY)
        guard input >= 0 else { throw EngineError.storage("cannot open \(from): \(errnoText())") }
        defer { close(input) }
        if let e = drain(input, into: path, throttle: &throttle, progress: progress) { throw e }
    }

    static func writeAll(_ fd: Int32, _ buffer: [UInt8], count: Int, path: String) -> Error? {
        var done = 0
        while done < count {
            let n = buffer.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, count - done) }
            if n < 0 {
                if errno == EINTR { continue }
                return EngineError.storage("cannot write \(path): \(errnoText())")
            }
            done += n
        }
        return nil
    }

    /// fsyncs every folder that holds one of `files` (relative to `root`), and `root`.
    static func syncFolders(_ root: String, _ files: [String]) throws {
        var folders = Set(files.map { (($0 as NSString).deletingLastPathComponent) })
        folders.insert("segments")
        for f in folders.sorted(by: >) where FileManager.default.fileExists(atPath: root + "/" + f) {
            try fsyncPath(f.isEmpty ? root : root + "/" + f)
        }
        try fsyncPath(root)
    }
}
