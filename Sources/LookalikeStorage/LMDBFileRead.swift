// LMDBFileRead: reading one stored value with pread(2) into a caller's buffer instead of through
// LMDB's memory map, so that reading it does not make the data file's pages resident in the process.
//
// Why: on every fault of a file map Linux maps up to 16 neighbouring page-cache pages
// ("fault-around"), so random reads through the map make most of the data file resident: rescoring
// (the engine's Rescoring.swift) reads 40 random vectors a query, and 16,000 queries mapped 231 MiB
// of a 50,000 × 512 collection into the server (Docs/benchmarks.md, "Compressed HNSW"). pread
// copies the same bytes from the same page cache and maps nothing.
//
// How: for a value too big for its leaf page (kept on overflow pages), LMDB 0.9's mdb_get
// (mdb_node_read → mdb_page_get) returns `map + pgno × psize + 16`, computed from the leaf alone:
// the overflow page itself is not touched. Its file offset is that pointer minus the map's base,
// and `mv_size` bytes pread there from the environment's descriptor (mdb_env_get_fd) are the
// value. The base is found once, at open, in /proc/self/maps (this file's shared mapping at
// offset 0): mdb_env_info's `me_mapaddr` is the address recorded in the meta page, which is NULL
// unless MDB_FIXEDMAP, so it cannot serve.
//
// Why the bytes are the snapshot's: a page a live read transaction can reach is never rewritten
// (LMDB's MVCC reuses a freed page only once no reader holds an older snapshot), and Linux has one
// page cache for a file's maps and its read/write calls. Lookalike opens LMDB with MDB_NOTLS and
// at most NOMETASYNC/NOSYNC (LMDB.swift): no MDB_WRITEMAP, so the map is read-only and commits
// write pages with pwrite/writev through that same page cache (a WRITEMAP store would be in it
// too); no MDB_NORDAHEAD, which only changes the map's readahead (pread uses the descriptor's own;
// a cold read may bring neighbouring pages into the page cache, not into the process).
//
// Which values: only read-only transactions' values on overflow pages (over about 2 KB under an
// 8-byte key at 4 KiB pages: vectors of 506-d and more) are pread. A value inline in its leaf page
// (128- or 384-d vectors) is returned as the map's view: mdb_get has already faulted that leaf
// in to find the key, so a pread would cost a system call and save nothing. Writable
// transactions (whose dirty pages are in the heap), a pointer outside the map, and a process
// whose map was not found are served from the view too: the bytes are right either way.
// Invariants: the map never moves while the environment is open (its size is set once, before
// mdb_env_open, and one process holds the folder: DirectoryLock).
// Threads: pread does not move the descriptor's offset, so any number of threads read at once; a
// ReadBuffer has one user at a time.
import CLMDB
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The data file of an open environment, and where it is mapped: what a pread of a value needs.
struct DataFile: Sendable {
    let fd: Int32
    /// `<folder>/data.mdb`, for error messages.
    let path: String
    /// The map's first byte; nil when it was not found (values are then read through the map).
    let mapBase: UInt?
    let mapSize: Int
    /// LMDB's largest inline leaf node (its me_nodemax): a node of an 8-byte header, the key and
    /// the value that is larger goes to overflow pages (mdb_leaf_size).
    let nodeMax: Int

    init(env: OpaquePointer, folder: String) {
        var fd: Int32 = -1
        mdb_env_get_fd(env, &fd)
        var info = MDB_envinfo()
        var stat = MDB_stat()
        mdb_env_info(env, &info)
        mdb_env_stat(env, &stat)
        self.fd = fd
        path = folder + "/data.mdb"
        mapSize = info.me_mapsize
        // PAGEHDRSZ 16, MDB_MINKEYS 2, minus an indx_t (LMDB 0.9's mdb_env_open2).
        nodeMax = (((Int(stat.ms_psize) - 16) / 2) & ~1) - 2
        mapBase = fd >= 0 ? Self.mapBase(of: fd) : nil
    }

    /// Whether LMDB keeps a value under a key of these sizes on overflow pages.
    func isOverflow(keyCount: Int, valueCount: Int) -> Bool { 8 + keyCount + valueCount > nodeMax }

    /// The address at which `fd`'s file is mapped from offset 0, from /proc/self/maps; nil when
    /// it is not mapped exactly once (two maps of one file would make an offset ambiguous).
    static func mapBase(of fd: Int32) -> UInt? {
        var st = stat()
        guard fstat(fd, &st) == 0, let maps = procText("/proc/self/maps") else { return nil }
        return mapBase(in: maps, device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }

    /// A /proc file read to its end with read(2). (procfs reports size 0; reading it through
    /// Foundation's String(contentsOfFile:) lost this file's line once the process had many
    /// mappings, late in the test suite, and the map was then "not found".)
    static func procText(_ path: String) -> String? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return nil }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `mapBase(of:)` on the text of a maps file: the shared mappings of the file with this
    /// device and inode. A mapping of a deleted file is skipped: another environment's data.mdb
    /// removed while still mapped (a test's folder) can carry the same inode number, and was
    /// taken for a second map of this file, so pread was turned off.
    static func mapBase(in maps: String, device: UInt64, inode: UInt64) -> UInt? {
        // glibc's dev_t: major in bits 8-19 and 32-43, minor in bits 0-7 and 20-31.
        let major = ((device >> 8) & 0xfff) | ((device >> 32) & ~UInt64(0xfff))
        let minor = (device & 0xff) | ((device >> 12) & ~UInt64(0xff))
        var bases = Set<UInt>()
        // "start-end perms offset dev inode path": every piece of one mapping gives start − offset.
        for line in maps.split(separator: "\n") where !line.hasSuffix(" (deleted)") {
            let f = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard f.count >= 5, f[1].hasSuffix("s"), UInt64(f[4]) == inode,
                  let colon = f[3].firstIndex(of: ":"), UInt64(f[3][..<colon], radix: 16) == major,
                  UInt64(f[3][f[3].index(after: colon)...], radix: 16) == minor,
                  let dash = f[0].firstIndex(of: "-"), let start = UInt(f[0][..<dash], radix: 16),
                  let offset = UInt(f[2], radix: 16), offset <= start else { continue }
            bases.insert(start - offset)
        }
        return bases.count == 1 ? bases.first : nil
    }

    /// Reads `count` bytes at `offset` into `destination`, through interruptions and short reads.
    func read(into destination: UnsafeMutableRawPointer, count: Int, at offset: Int) throws {
        var done = 0
        while done < count {
            let n = pread(fd, destination + done, count - done, off_t(offset + done))
            if n > 0 { done += n; continue }
            if n < 0 && errno == EINTR { continue }
            if n == 0 {
                throw StorageError.corrupt(
                    "\(path) ends at byte \(offset + done), inside a value that runs to byte \(offset + count): restore the folder from a snapshot (SAVE TO) or resync it from its primary")
            }
            throw StorageError.io(
                "cannot read \(count) bytes at byte \(offset) of \(path): \(String(cString: strerror(errno))); check the disk (dmesg) and the file's permissions, then retry")
        }
    }
}

/// A caller's destination for `Transaction.read(_:_:into:)`: it grows to the largest value read
/// into it and is reused, so a search reading many values allocates once. One user at a time.
public final class ReadBuffer {
    private var storage: UnsafeMutableRawPointer
    private var capacity: Int

    public init(capacity: Int = 4096) {
        self.capacity = max(capacity, 1)
        storage = .allocate(byteCount: self.capacity, alignment: 16)
    }

    deinit { storage.deallocate() }

    /// Room for `count` bytes (what it held before is lost when it grows).
    func reserve(_ count: Int) -> UnsafeMutableRawPointer {
        if count > capacity {
            storage.deallocate()
            capacity = count
            storage = .allocate(byteCount: count, alignment: 16)
        }
        return storage
    }
}

extension Transaction {
    /// The value of `key`, pread into `buffer` when it is on overflow pages of a read-only
    /// transaction (its pages are then not mapped into the process: see the header), else the
    /// view `get` gives. Nil when absent. Valid until the next read into `buffer` or the end of
    /// the transaction, whichever comes first.
    public func read(_ table: Table, _ key: UnsafeRawBufferPointer, into buffer: ReadBuffer) throws
        -> UnsafeRawBufferPointer? {
        guard let mapped = try get(table, key) else { return nil }
        guard let file, let offset = fileOffset(of: mapped, keyCount: key.count) else { return mapped }
        let destination = buffer.reserve(mapped.count)
        try file.read(into: destination, count: mapped.count, at: offset)
        return UnsafeRawBufferPointer(start: destination, count: mapped.count)
    }

    /// The value of `key` copied into `destination` when it is exactly `destination.count`
    /// bytes: pread when `read(_:_:into:)` would pread it, else copied from the map. Returns the
    /// value's size (one of another size is not copied: the caller skips it), nil when absent.
    /// For callers that keep the bytes (rescoring's rows): one copy, where `read` and then a
    /// copy of its view are two.
    public func read(_ table: Table, _ key: UnsafeRawBufferPointer, copyingInto destination: UnsafeMutableRawBufferPointer) throws
        -> Int? {
        guard let mapped = try get(table, key) else { return nil }
        guard mapped.count == destination.count, let to = destination.baseAddress, let from = mapped.baseAddress else {
            return mapped.count
        }
        if let file, let offset = fileOffset(of: mapped, keyCount: key.count) {
            try file.read(into: to, count: mapped.count, at: offset)
        } else {
            to.copyMemory(from: from, byteCount: mapped.count)
        }
        return mapped.count
    }

    /// Whether `read` of this value would pread it (for tests and reports).
    func readsByFile(_ table: Table, _ key: UnsafeRawBufferPointer) throws -> Bool {
        guard let mapped = try get(table, key) else { return false }
        return fileOffset(of: mapped, keyCount: key.count) != nil
    }

    /// Where in the data file `mapped` (a value `get` returned under a key of `keyCount` bytes)
    /// starts, when it is to be pread: a read-only transaction's value on overflow pages, inside
    /// a map that was found. Nil: read it through the map.
    private func fileOffset(of mapped: UnsafeRawBufferPointer, keyCount: Int) -> Int? {
        guard !writable, let file, let base = file.mapBase, let start = mapped.baseAddress,
              file.isOverflow(keyCount: keyCount, valueCount: mapped.count) else { return nil }
        let address = UInt(bitPattern: start)
        guard address >= base, address - base + UInt(mapped.count) <= UInt(file.mapSize) else { return nil }
        return Int(address - base)
    }
}
