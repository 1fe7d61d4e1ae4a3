// SegmentFiles: how a sealed segment is stored next to the LMDB files.
//
// A segment "seg-000042" is three files: seg-000042.faiss (FAISS's own format),
// seg-000042.ids (a header, the ascending ids as little-endian UInt64, and a checksum) and
// seg-000042.keys (its positions' keys: KeyTable.swift; absent in folders written before it,
// which recovery migrates by writing it from LMDB). All are written under a temporary name, fsynced, renamed, and the directory fsynced; only
// then does the engine name the segment in the LMDB manifest. A crash before the manifest
// commit leaves files no manifest names, which `removeUnlisted` deletes at the next start.
// Threads: callers serialise writes to one segment name; reads are independent.
import Foundation

#if canImport(Glibc)
import Glibc
#endif

public enum SegmentFiles {
    static let idsMagic: UInt64 = 0x4C4B_4944_5331_0001  // "LKIDS1", version 1

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
        try writeDurably(encodeIds(ids), to: idsTemp)
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
        let ids = try decodeIds(
            Data(contentsOf: URL(fileURLWithPath: idsPath(directory, name))), name: name)
        let index = try FaissIndex.read(path: indexPath(directory, name), mmap: mmap)
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

    static func encodeIds(_ ids: [UInt64]) -> Data {
        var data = Data(capacity: 24 + ids.count * 8)
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
        put(checksum(ids))
        return data
    }

    static func decodeIds(_ data: Data, name: String) throws -> [UInt64] {
        guard data.count >= 24, (data.count - 24) % 8 == 0 else {
            throw IndexError.corrupt("\(name).ids has a bad size (\(data.count) bytes)")
        }
        let words = data.withUnsafeBytes { raw in
            (0..<(data.count / 8)).map { UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self)) }
        }
        guard words[0] == idsMagic else { throw IndexError.corrupt("\(name).ids: unknown format") }
        let n = Int(words[1])
        guard words.count == n + 3 else { throw IndexError.corrupt("\(name).ids: truncated") }
        let ids = Array(words[2..<(2 + n)])
        guard checksum(ids) == words[n + 2] else {
            throw IndexError.corrupt("\(name).ids: checksum mismatch")
        }
        return ids
    }

    /// FNV-1a over the ids: catches torn or mixed-up files, not malice.
    static func checksum(_ ids: [UInt64]) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for v in ids {
            h ^= v
            h = h &* 0x0000_0100_0000_01b3
        }
        return h
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
