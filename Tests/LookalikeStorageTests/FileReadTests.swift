// Reads by pread (LMDBFileRead.swift): a value on LMDB's overflow pages is copied from the data
// file at the offset its map pointer gives, and must equal the mapped bytes; an old read
// transaction must keep reading its snapshot's bytes after later writes overwrite, delete and
// reuse pages; inline values come back as the map's view; a write transaction's values (dirty
// pages in the heap) are never pread.
import Foundation
@testable import LookalikeStorage
import LookalikeTestSupport
import XCTest

final class FileReadTests: XCTestCase {
    private func environment() throws -> (Environment, Table) {
        let env = try scratchEnvironment(self)
        return (env, try env.table("t"))
    }

    /// Sizes around LMDB's inline limit (2,022 bytes under an 8-byte key at 4 KiB pages), a
    /// 512-d and a 128-d vector, and values spanning several overflow pages.
    private let sizes = [512, 1536, 2020, 2022, 2024, 2048, 4080, 4096, 10_000]

    private func bytes(_ size: Int, seed: Int) -> [UInt8] {
        var state = UInt64(truncatingIfNeeded: seed) &* 0x9E37_79B9_7F4A_7C15 | 1
        return (0..<size).map { _ in
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return UInt8(truncatingIfNeeded: state)
        }
    }

    private func write(_ env: Environment, _ table: Table, seed: Int) throws {
        try env.write { txn in
            for (i, size) in sizes.enumerated() {
                try txn.put(table, IdKey.encode(UInt64(i + 1)), bytes(size, seed: seed * 100 + i))
            }
        }
    }

    private func readAll(_ txn: Transaction, _ table: Table, _ buffer: ReadBuffer) throws -> [[UInt8]?] {
        try sizes.indices.map { i in
            try IdKey.withEncoded(UInt64(i + 1)) { try txn.read(table, $0, into: buffer).map { Array($0) } }
        }
    }

    /// Every size reads back equal to the map's bytes, through one buffer; exactly the values
    /// LMDB put on overflow pages (their data starts 16 bytes into a page) are pread.
    func testReadEqualsTheMappedBytesAndPreadsExactlyTheOverflowValues() throws {
        let (env, table) = try environment()
        try write(env, table, seed: 1)
        let buffer = ReadBuffer(capacity: 16)  // grows as it goes
        try env.read { txn in
            let file = try XCTUnwrap(txn.file)
            let base = try XCTUnwrap(file.mapBase, "the data file's map was not found in /proc/self/maps")
            for (i, size) in sizes.enumerated() {
                try IdKey.withEncoded(UInt64(i + 1)) { key in
                    let mapped = try XCTUnwrap(txn.get(table, key))
                    let offsetInPage = (UInt(bitPattern: mapped.baseAddress!) - base) % 4096
                    let onOverflow = offsetInPage == 16
                    XCTAssertEqual(try txn.readsByFile(table, key), onOverflow, "\(size) bytes: pread iff on overflow pages")
                    let read = try XCTUnwrap(txn.read(table, key, into: buffer))
                    XCTAssertEqual(Array(read), bytes(size, seed: 100 + i), "\(size) bytes")
                    XCTAssertEqual(read.baseAddress == mapped.baseAddress, !onOverflow, "\(size) bytes: copied iff pread")
                }
            }
            XCTAssertFalse(try IdKey.withEncoded(1) { try txn.readsByFile(table, $0) }, "512 bytes are inline")
            XCTAssertTrue(try IdKey.withEncoded(6) { try txn.readsByFile(table, $0) }, "a 512-d vector is on overflow pages")
            XCTAssertNil(try IdKey.withEncoded(99) { try txn.read(table, $0, into: buffer) })
        }
    }

    /// The map base is the one live shared mapping of the file's device and inode: a mapping of
    /// a deleted file with the same inode number (a closed-over test folder), or of another
    /// device's file, does not make it ambiguous (CI once failed on that: no base found).
    func testMapBaseSkipsDeletedFilesAndOtherDevices() {
        let dev: UInt64 = (0xfd << 8) | 0x01  // fd:01
        let maps = """
            7f0000000000-7f0000400000 r--s 00000000 fd:01 1234                       /tmp/a/data.mdb (deleted)
            7f1000000000-7f1000400000 r--s 00000000 08:02 1234                       /mnt/b/data.mdb
            7f2000000000-7f2000400000 r--s 00000000 fd:01 1234                       /tmp/c/data.mdb
            7f3000000000-7f3000001000 r--p 00000000 fd:01 1234                       /tmp/c/data.mdb
            """
        XCTAssertEqual(DataFile.mapBase(in: maps, device: dev, inode: 1234), 0x7f20_0000_0000)
        XCTAssertNil(DataFile.mapBase(in: maps, device: dev, inode: 99))
        let twice = maps + "\n7f4000000000-7f4000400000 r--s 00000000 fd:01 1234                       /tmp/c/data.mdb"
        XCTAssertNil(DataFile.mapBase(in: twice, device: dev, inode: 1234), "two live maps are ambiguous")
    }

    /// A read transaction begun before overwrites, deletes and more writes (which reuse the
    /// pages freed by older snapshots) still reads its own snapshot's bytes; a new one reads
    /// the new bytes; values a write transaction reads are its own, never pread.
    func testAnOldReadKeepsItsSnapshotsBytesAfterLaterWrites() throws {
        let (env, table) = try environment()
        try write(env, table, seed: 1)
        try write(env, table, seed: 2)  // frees seed 1's pages, reused below
        let original = sizes.indices.map { bytes(sizes[$0], seed: 200 + $0) }
        let buffer = ReadBuffer()
        try env.read { old in
            XCTAssertEqual(try readAll(old, table, buffer), original)
            for round in 3..<8 {
                try write(env, table, seed: round)
                try env.write { txn in
                    try txn.delete(table, IdKey.encode(6))
                    try txn.put(table, IdKey.encode(UInt64(1000 + round)), bytes(50_000, seed: round))
                }
                XCTAssertEqual(try readAll(old, table, buffer), original, "after write round \(round)")
            }
        }
        try env.read { new in
            var expected: [[UInt8]?] = sizes.indices.map { bytes(sizes[$0], seed: 700 + $0) }
            expected[5] = nil
            XCTAssertEqual(try readAll(new, table, buffer), expected)
        }
        try env.write { txn in
            try txn.put(table, IdKey.encode(2), bytes(4096, seed: 9))
            XCTAssertFalse(try IdKey.withEncoded(2) { try txn.readsByFile(table, $0) })
            let own = try IdKey.withEncoded(2) { try txn.read(table, $0, into: buffer).map { Array($0) } }
            XCTAssertEqual(own, bytes(4096, seed: 9), "a write transaction reads its own uncommitted value")
        }
    }

    /// `read(copyingInto:)` (rescoring's way: straight into a row) copies exactly the stored
    /// bytes of every size, pread or mapped as `read(into:)` decides; a destination of another
    /// size gets nothing and learns the value's size; an absent key gives nil.
    func testReadCopyingIntoARowGivesTheStoredBytes() throws {
        let (env, table) = try environment()
        try write(env, table, seed: 1)
        try env.read { txn in
            for (i, size) in sizes.enumerated() {
                try IdKey.withEncoded(UInt64(i + 1)) { key in
                    var row = [UInt8](repeating: 0xAB, count: size)
                    let got = try row.withUnsafeMutableBytes { try txn.read(table, key, copyingInto: $0) }
                    XCTAssertEqual(got, size)
                    XCTAssertEqual(row, bytes(size, seed: 100 + i), "\(size) bytes")
                    var short = [UInt8](repeating: 0xAB, count: size - 1)
                    let told = try short.withUnsafeMutableBytes { try txn.read(table, key, copyingInto: $0) }
                    XCTAssertEqual(told, size, "the value's size, not copied")
                    XCTAssertEqual(short, [UInt8](repeating: 0xAB, count: size - 1))
                }
            }
            var row = [UInt8](repeating: 0, count: 8)
            XCTAssertNil(try IdKey.withEncoded(99) { key in try row.withUnsafeMutableBytes { try txn.read(table, key, copyingInto: $0) } })
        }
    }

    /// CollectionStore.readVector (rescoring's reader) copies the stored floats of a 512-d
    /// vector (pread) and of a 128-d one (mapped) into the caller's row.
    func testReadVectorGivesTheStoredFloats() throws {
        let env = try scratchEnvironment(self)
        let store = try CollectionStore(environment: env, number: 1, indexedAttributes: [])
        let big = (0..<512).map { Float($0) * 0.25 - 3 }, small = (0..<128).map { Float($0) + 0.5 }
        try env.write { txn in
            for (id, v) in [(UInt64(1), big), (2, small)] {
                try v.withUnsafeBufferPointer { p in
                    _ = try store.insert(id: id, record: ItemRecord(key: "k\(id)", attributes: nil), vector: p, isView: false, indexed: [], txn)
                }
            }
        }
        try env.read { txn in
            for (id, v) in [(UInt64(1), big), (2, small)] {
                var row = [Float](repeating: .nan, count: v.count)
                XCTAssertEqual(try row.withUnsafeMutableBytes { try store.readVector(id, txn, into: $0) }, v.count * 4)
                XCTAssertEqual(row, v)
            }
            var row = [Float](repeating: 0, count: 128)
            XCTAssertNil(try row.withUnsafeMutableBytes { try store.readVector(3, txn, into: $0) })
        }
    }
}
