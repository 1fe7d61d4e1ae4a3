// The storage layer's read transactions (LMDB.swift): reused handles (reset, kept, renewed)
// must behave as fresh ones — each read sees every write committed before it began, and no
// more; reads beyond the kept handles, and concurrent ones, neither fail nor run out of LMDB
// reader slots.
import Dispatch
import Foundation
import LookalikeStorage
import LookalikeTestSupport
import Synchronization
import XCTest

final class ReadTransactionTests: XCTestCase {
    private func environment(maxReaders: Int = 126) throws -> (Environment, Table) {
        let env = try scratchEnvironment(self) { $0.maxReaders = maxReaders }
        return (env, try env.table("t"))
    }

    private func value(_ env: Environment, _ table: Table, _ key: String) throws -> String? {
        try env.read { txn in try txn.get(table, Array(key.utf8)).map { String(decoding: $0, as: UTF8.self) } }
    }

    /// A renewed handle reads the newest snapshot: a value written after the handle was first
    /// used (and kept) is seen by the next read, and an overwrite replaces it.
    func testReusedReadsSeeEveryEarlierCommit() throws {
        let (env, table) = try environment()
        for i in 0..<200 {
            _ = try env.write { txn in try txn.put(table, Array("k".utf8), Array("v\(i)".utf8)) }
            XCTAssertEqual(try value(env, table, "k"), "v\(i)")
        }
        try env.write { txn in _ = try txn.delete(table, Array("k".utf8)) }
        XCTAssertNil(try value(env, table, "k"))
    }

    /// A read that began before a commit keeps its snapshot, even when the commit happens
    /// while a nested read on the same thread renews a kept handle.
    func testAnOpenReadKeepsItsSnapshot() throws {
        let (env, table) = try environment()
        _ = try env.write { txn in try txn.put(table, Array("k".utf8), Array("old".utf8)) }
        _ = try value(env, table, "k")  // leaves a kept handle
        try env.read { outer in
            _ = try env.write { txn in try txn.put(table, Array("k".utf8), Array("new".utf8)) }
            XCTAssertEqual(try value(env, table, "k"), "new", "a read begun after the commit sees it")
            let old = try outer.get(table, Array("k".utf8)).map { String(decoding: $0, as: UTF8.self) }
            XCTAssertEqual(old, "old", "the open read keeps its snapshot")
        }
    }

    /// Far more reads than LMDB has reader slots, from several threads, with writes between;
    /// then more reads open at once than handles are kept (16): none fails.
    func testManyReadsDoNotExhaustReaderSlots() throws {
        let (env, table) = try environment(maxReaders: 40)
        _ = try env.write { txn in try txn.put(table, Array("k".utf8), Array("v".utf8)) }
        let failures = Atomic<Int>(0)
        for round in 0..<20 {
            DispatchQueue.concurrentPerform(iterations: 32) { _ in
                do {
                    try env.read { txn in
                        guard try txn.get(table, Array("k".utf8)) != nil else { throw StorageError.corrupt("missing") }
                    }
                } catch { failures.add(1, ordering: .relaxed) }
            }
            _ = try env.write { txn in try txn.put(table, Array("r\(round)".utf8), Array("x".utf8)) }
        }
        XCTAssertEqual(failures.load(ordering: .relaxed), 0)
        XCTAssertEqual(try value(env, table, "r19"), "x")
        func nested(_ depth: Int) throws -> Int {
            try env.read { txn in
                XCTAssertNotNil(try txn.get(table, Array("k".utf8)))
                return depth == 0 ? 1 : 1 + (try nested(depth - 1))
            }
        }
        for _ in 0..<3 { XCTAssertEqual(try nested(35), 36) }  // 36 open at once, slots for 40
    }
}
