// KeyTable: the keys (element names) of a sealed segment's positions, in memory, and their file
// seg-*.keys, so that a search hit gets its key without reading LMDB.
//
// Why: LMDB is memory-mapped, and Linux maps up to 16 neighbouring pages that are in the page
// cache on every fault ("fault-around", not turned off by MADV_RANDOM: measured). Items and
// vectors pages are written interleaved in one file, so reading each hit's key record from LMDB
// mapped the vector pages around it, and resident memory grew toward the whole data file as
// queries ran. Keys here live on the heap (about key length + 4 bytes an item); LMDB is read
// only for attributes (WITHATTRIBS, filters) and vectors (VEMB, rescoring, rebuilds, batch job).
//
// File format: magic, count, (count + 1) little-endian UInt32 offsets into the UTF-8 bytes, the
// bytes, and an FNV-1a checksum over offsets and bytes.
// Invariants: immutable once made; key(at:) for 0..<count.
// Threads: any thread.
import Foundation

public final class KeyTable: Sendable {
    static let magic: UInt64 = 0x4C4B_4B45_5931_0001  // "LKKEY1", version 1
    private let bytes: [UInt8]
    private let offsets: [UInt32]

    public var count: Int { offsets.count - 1 }

    public init(keys: [String]) {
        var b: [UInt8] = []
        var o: [UInt32] = [0]
        b.reserveCapacity(keys.reduce(0) { $0 + $1.utf8.count })
        o.reserveCapacity(keys.count + 1)
        for k in keys {
            b.append(contentsOf: k.utf8)
            o.append(UInt32(b.count))
        }
        bytes = b
        offsets = o
    }

    private init(bytes: [UInt8], offsets: [UInt32]) {
        self.bytes = bytes
        self.offsets = offsets
    }

    public func key(at position: Int) -> String {
        let lo = Int(offsets[position]), hi = Int(offsets[position + 1])
        return bytes.withUnsafeBufferPointer { String(decoding: UnsafeBufferPointer(rebasing: $0[lo..<hi]), as: UTF8.self) }
    }

    /// Heap bytes this table holds.
    public var memoryBytes: Int { bytes.count + offsets.count * 4 }

    func encode() -> Data {
        var data = Data(capacity: 24 + offsets.count * 4 + bytes.count)
        func put64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
        put64(Self.magic)
        put64(UInt64(count))
        for o in offsets { withUnsafeBytes(of: o.littleEndian) { data.append(contentsOf: $0) } }
        data.append(contentsOf: bytes)
        put64(Self.checksum(offsets, bytes))
        return data
    }

    static func decode(_ data: Data, name: String) throws -> KeyTable {
        try data.withUnsafeBytes { raw -> KeyTable in
            func u64(_ at: Int) -> UInt64 { UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
            guard raw.count >= 28, u64(0) == magic else { throw IndexError.corrupt("\(name).keys: unknown format") }
            let n = Int(clamping: u64(8))
            let offsetsEnd = 16 + (n + 1) * 4
            guard n >= 0, n < 1 << 31, raw.count >= offsetsEnd + 8 else { throw IndexError.corrupt("\(name).keys: truncated") }
            let offsets = (0...n).map { UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 16 + $0 * 4, as: UInt32.self)) }
            let total = Int(offsets[n])
            guard raw.count == offsetsEnd + total + 8, zip(offsets, offsets.dropFirst()).allSatisfy({ $0 <= $1 }) else {
                throw IndexError.corrupt("\(name).keys: bad size")
            }
            let bytes = Array(raw[offsetsEnd..<(offsetsEnd + total)])
            guard checksum(offsets, bytes) == u64(offsetsEnd + total) else { throw IndexError.corrupt("\(name).keys: checksum mismatch") }
            return KeyTable(bytes: bytes, offsets: offsets)
        }
    }

    static func checksum(_ offsets: [UInt32], _ bytes: [UInt8]) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for o in offsets { h = (h ^ UInt64(o)) &* 0x0000_0100_0000_01b3 }
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        return h
    }
}
