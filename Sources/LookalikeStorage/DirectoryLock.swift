// DirectoryLock: one process at a time per data folder.
//
// The server, the offline ingest and the offline compaction all open the same files; two of
// them at once would each keep its own segment list and overwrite the other's manifest. An
// advisory flock on `<folder>/lookalike.lock` is taken at open and released by the kernel when
// the process exits, even on kill -9, so a crash never leaves a stale lock behind.
// Threads: create and release from any thread; the lock belongs to the process.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public final class DirectoryLock: @unchecked Sendable {
    private var fd: Int32

    /// Takes the lock or throws, naming the process that holds it.
    public init(directory: String) throws {
        let path = directory + "/lookalike.lock"
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw StorageError.io("cannot open \(path): \(String(cString: strerror(errno)))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            var buffer = [UInt8](repeating: 0, count: 32)
            let n = pread(fd, &buffer, 31, 0)
            let holder = n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : "?"
            close(fd)
            throw StorageError.io("the data folder \(directory) is in use by another Lookalike process (pid \(holder)): stop it first, or work through it with --server")
        }
        let pid = "\(getpid())\n"
        _ = ftruncate(fd, 0)
        _ = pid.withCString { pwrite(fd, $0, strlen($0), 0) }
    }

    public func release() {
        guard fd >= 0 else { return }
        close(fd)  // closing the descriptor drops the flock
        fd = -1
    }

    deinit { release() }
}
