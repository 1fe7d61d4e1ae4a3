// SegmentFiles: how a sealed segment is stored next to the LMDB files.
//
// A segment "seg-000042" is three files: seg-000042.faiss (FAISS's own format),
// seg-000042.ids (a header, the ascending ids as little-endian UInt64, the size and checksum
// of the .faiss file, and a checksum of all that: format 2; format 1, from before, has no
// .faiss check and still opens) and
// seg-000042.keys (its positions' keys: KeyTable.swift; absent in folders written before it,
// which recovery migrates by writing it from LMDB). All are written under a temporary name, fsynced, renamed, and the directory fsynced; only
// then does the engine name the segment in the LMDB manifest. A crash before the manifest
// commit leaves files no manifest names, which `removeUnlisted` deletes at the next start.
// Why the .faiss checksum: FAISS checks a file's sizes, not its contents; a damaged graph
// (neighbour lists pointing nowhere) would load, and lose items from every search, or worse.
// It is checked before FAISS reads the file, by one sequential pass (page cache, no copy).
// Threads: callers serialise writes to one segment name; reads are independent.
import Foundation

#if canImport(Glibc)
import Glibc
#endif

public enum SegmentFiles {
    static let idsMagicV1: UInt64 = 0x4C4B_4944_5331_0001  // "LKIDS1", version 1: no .faiss check
    static let idsMagic: UInt64 = 0x4C4B_4944_5331_0002  // version 2: with the .faiss size and checksum

    public static func indexPath(_ dir: String, _ name: String) -> String { "\(dir)/\(name).faiss" }
    public static func idsPath(_ dir: String, _ name: String) -> String { "\(dir)/\(name).ids" }
    public static func keysPath(_ dir: String, _ name: String) -> String { "\(dir)/\(name).keys" }

    /// Writes both files of a segment durably; returns the bytes written. `halfway` runs
    /// between the index file and the ids file (the engine's `segmentWrite` fault point): when
    /// it throws, nothing is left behind, as when a write fails there.
    @discardableResult
    public static func write(index: FaissIndex, ids: [UInt64], keys: KeyTable? = nil, name: String, directory: String,
                             halfway: () throws -> Void = {}) throws -> Int
    {
        try FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: true)
        let indexFinal = indexPath(directory, name)
        let idsFinal = idsPath(directory, name)
        let indexTemp = indexFinal + ".tmp"
        let idsTemp = idsFinal + ".tmp"
        // A failed write (a full disk) leaves nothing behind: the space goes back at once.
        let keysFinal = keysPath(directory, name)
        var published = false
        defer {
            if !published { for f in [indexTemp, idsTemp, indexFinal, idsFinal, keysFinal + ".tmp", keysFinal] { unlink(f) } }
        }
        try index.write(to: indexTemp)
        try fsyncFile(indexTemp)
        try halfway()
        try writeDurably(encodeIds(ids, index: try fileChecksum(indexTemp)), to: idsTemp)
        if let keys {
            require(keys.count == ids.count, "a key per id")
            try writeDurably(keys.encode(), to: keysFinal + ".tmp")
            try rename(keysFinal + ".tmp", keysFinal)
        }
        try rename(indexTemp, indexFinal)
        try rename(idsTemp, idsFinal)
        published = true
        try fsyncFile(directory)
        return bytes(name: name, directory: directory)
    }

    /// Writes (or replaces) a sealed segment's keys file durably (recovery's migration).
    public static func writeKeys(_ keys: KeyTable, name: String, directory: String) throws {
        let path = keysPath(directory, name)
        try writeDurably(keys.encode(), to: path + ".tmp")
        try rename(path + ".tmp", path)
        try fsyncFile(directory)
    }

    public static func read(name: String, directory: String, mmap: Bool, metric: FaissMetric)
        throws -> SealedSegment
    {
        let (ids, index) = try readChecked(name: name, directory: directory, mmap: mmap)
        let segment = try SealedSegment(name: name, index: index, ids: ids, metric: metric)
        // A missing keys file is a folder from before them (recovery writes it); a damaged
        // one is rebuilt the same way, from LMDB.
        let keysURL = URL(fileURLWithPath: keysPath(directory, name))
        if let data = try? Data(contentsOf: keysURL), let keys = try? KeyTable.decode(data, name: name),
           keys.count == ids.count {
            segment.attach(keys: keys)
        }
        return segment
    }

    /// The FAISS index of a segment or template, once its .faiss file matches the size and
    /// checksum its ids file records (format 2); throws `IndexError.corrupt` when it does not.
    public static func readIndex(name: String, directory: String, mmap: Bool) throws -> FaissIndex {
        try readChecked(name: name, directory: directory, mmap: mmap).1
    }

    private static func readChecked(name: String, directory: String, mmap: Bool) throws -> ([UInt64], FaissIndex) {
        let (ids, expected) = try decodeIds(
            Data(contentsOf: URL(fileURLWithPath: idsPath(directory, name))), name: name)
        if let expected, try fileChecksum(indexPath(directory, name)) != expected {
            throw IndexError.corrupt("\(name).faiss does not match the size and checksum in \(name).ids")
        }
        return (ids, try FaissIndex.read(path: indexPath(directory, name), mmap: mmap))
    }

    public static func remove(name: String, directory: String) {
        unlink(indexPath(directory, name))
        unlink(idsPath(directory, name))
        unlink(keysPath(directory, name))
    }

    public static func bytes(name: String, directory: String) -> Int {
        fileSize(indexPath(directory, name)) + fileSize(idsPath(directory, name)) + fileSize(keysPath(directory, name))
    }

    /// Deletes segment files (and temporaries) in `directory` whose name is not in `keep`.
    public static func removeUnlisted(directory: String, keep: Set<String>) -> [String] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: directory)
        else { return [] }
        var removed: [String] = []
        for entry in entries {
            let base = entry.split(separator: ".", maxSplits: 1).first.map(String.init) ?? entry
            let ours = entry.hasSuffix(".faiss") || entry.hasSuffix(".ids") || entry.hasSuffix(".keys")
                || entry.hasSuffix(".tmp")
            if ours && !keep.contains(base) {
                unlink("\(directory)/\(entry)")
                removed.append(entry)
            }
        }
        return removed
    }

    // MARK: - The ids file

    /// The size and checksum of a .faiss file, as the ids file records them.
    struct IndexCheck: Equatable {
        var bytes: UInt64
        var checksum: UInt64
    }

    /// Format 2: magic, count, the ids, the .faiss file's size and checksum, and a checksum of
    /// the ids and those two.
    static func encodeIds(_ ids: [UInt64], index: IndexCheck) -> Data {
        var data = Data(capacity: 40 + ids.count * 8)
        func put(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
        put(idsMagic)
        put(UInt64(ids.count))
        ids.withUnsafeBytes { raw in
            if UInt64(1).littleEndian == 1 {
                data.append(contentsOf: raw)
            } else {
                for v in ids { put(v) }
            }
        }
        put(index.bytes)
        put(index.checksum)
        put(checksum(ids + [index.bytes, index.checksum]))
        return data
    }

    /// The ids, and what the .faiss file must be (nil for a format 1 file, which has no check).
    static func decodeIds(_ data: Data, name: String) throws -> ([UInt64], IndexCheck?) {
        guard data.count >= 24, (data.count - 24) % 8 == 0 else {
            throw IndexError.corrupt("\(name).ids has a bad size (\(data.count) bytes)")
        }
        let words = data.withUnsafeBytes { raw in
            (0..<(data.count / 8)).map { UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self)) }
        }
        let trailer: Int
        switch words[0] {
        case idsMagic: trailer = 2
        case idsMagicV1: trailer = 0
        default: throw IndexError.corrupt("\(name).ids: unknown format")
        }
        let n = Int(words[1])
        guard words.count == n + 3 + trailer else { throw IndexError.corrupt("\(name).ids: truncated") }
        let covered = Array(words[2..<(2 + n + trailer)])
        guard checksum(covered) == words[n + 2 + trailer] else {
            throw IndexError.corrupt("\(name).ids: checksum mismatch")
        }
        let ids = Array(covered.prefix(n))
        return (ids, trailer == 0 ? nil : IndexCheck(bytes: covered[n], checksum: covered[n + 1]))
    }

    /// FNV-1a over the ids: catches torn or mixed-up files, not malice.
    static func checksum(_ ids: [UInt64]) -> UInt64 {
        var h = fnvOffset
        for v in ids {
            h ^= v
            h = h &* 0x0000_0100_0000_01b3
        }
        return h
    }

    static let fnvOffset: UInt64 = 0xcbf2_9ce4_8422_2325

    /// The size of a file and its checksum: FNV-1a in four lanes (word i of the file, as
    /// little-endian 64 bits with the last one padded with zeros, goes to lane i mod 4; the
    /// lanes run in parallel on one core, about 3x one lane), the lanes then folded by FNV-1a
    /// with the size. Read sequentially in 1 MiB chunks (page cache, no copy of the file).
    static func fileChecksum(_ path: String) throws -> IndexCheck {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw IndexError.io("cannot open \(path): \(errnoText())") }
        defer { close(fd) }
        let chunk = 1 << 20  // a multiple of 4 words: every full chunk starts at lane 0
        var buffer = [UInt64](repeating: 0, count: chunk / 8)
        var lanes = [UInt64](repeating: fnvOffset, count: 4)
        var total: UInt64 = 0
        while true {
            // Fill the whole chunk: a short read mid-file would shift the words.
            let n = buffer.withUnsafeMutableBytes { raw -> Int in
                var filled = 0
                while filled < chunk {
                    let r = Glibc.read(fd, raw.baseAddress! + filled, chunk - filled)
                    if r < 0 && errno == EINTR { continue }
                    if r < 0 { return -1 }
                    if r == 0 { break }
                    filled += r
                }
                return filled
            }
            guard n >= 0 else { throw IndexError.io("cannot read \(path): \(errnoText())") }
            if n == 0 { break }
            let words = (n + 7) / 8
            buffer.withUnsafeMutableBytes { raw in
                for i in n..<(words * 8) { raw[i] = 0 }  // the padding of a last partial word
            }
            if UInt64(1).littleEndian != 1 { for i in 0..<words { buffer[i] = buffer[i].littleEndian } }
            buffer.withUnsafeBufferPointer { fnv1aLanes(UnsafeBufferPointer(rebasing: $0[0..<words]), &lanes) }
            total += UInt64(n)
            if n < chunk { break }
        }
        return IndexCheck(bytes: total, checksum: checksum(lanes + [total]))
    }

    /// Four FNV-1a lanes over `words`, word i to lane i mod 4.
    static func fnv1aLanes(_ words: UnsafeBufferPointer<UInt64>, _ lanes: inout [UInt64]) {
        let prime: UInt64 = 0x0000_0100_0000_01b3
        var (a, b, c, d) = (lanes[0], lanes[1], lanes[2], lanes[3])
        var i = 0
        while i + 4 <= words.count {
            a = (a ^ words[i]) &* prime
            b = (b ^ words[i + 1]) &* prime
            c = (c ^ words[i + 2]) &* prime
            d = (d ^ words[i + 3]) &* prime
            i += 4
        }
        if i < words.count { a = (a ^ words[i]) &* prime }
        if i + 1 < words.count { b = (b ^ words[i + 1]) &* prime }
        if i + 2 < words.count { c = (c ^ words[i + 2]) &* prime }
        lanes = [a, b, c, d]
    }

    // MARK: - Durable file operations

    public static func writeDurably(_ data: Data, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw IndexError.io("cannot create \(path): \(errnoText())") }
        defer { close(fd) }
        try data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw IndexError.io("cannot write \(path): \(errnoText())")
                }
                offset += n
            }
        }
        guard fsync(fd) == 0 else { throw IndexError.io("cannot sync \(path): \(errnoText())") }
    }

    public static func fsyncFile(_ path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw IndexError.io("cannot open \(path): \(errnoText())") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw IndexError.io("cannot sync \(path): \(errnoText())") }
    }

    public static func rename(_ from: String, _ to: String) throws {
        guard Glibc.rename(from, to) == 0 else {
            throw IndexError.io("cannot rename \(from): \(errnoText())")
        }
    }

    public static func fileSize(_ path: String) -> Int {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_size) : 0
    }

    public static func errnoText() -> String { String(cString: strerror(errno)) }
}
