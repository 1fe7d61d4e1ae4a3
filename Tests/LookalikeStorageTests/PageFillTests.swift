// How full the items' pages are (CollectionStore.insert): ids are allocated in ascending order,
// so items and vectors are appended, not inserted into the middle of the table. A plain put
// splits a full page in half, leaving every leaf page of a 384-d collection holding one vector
// where two fit (4,114 bytes a vector on disk instead of 2,057: Docs/sizing.md).
import Foundation
import LookalikeStorage
import LookalikeTestSupport
import XCTest

final class PageFillTests: XCTestCase {
    private func emptyStore() throws -> (Environment, CollectionStore) {
        let env = try scratchEnvironment(self)
        return (env, try CollectionStore(environment: env, number: 1, indexedAttributes: []))
    }

    func testAscendingInsertsFillPages() throws {
        let (env, store) = try emptyStore()
        let d = 384, n = 200
        let vector = [Float](repeating: 0.5, count: d)
        for batch in 0..<(n / 50) {
            _ = try env.write { txn in
                for i in (batch * 50)..<((batch + 1) * 50) {
                    try vector.withUnsafeBufferPointer { v in
                        _ = try store.insert(id: UInt64(i + 1), record: ItemRecord(key: "k\(i)", attributes: nil), vector: v, isView: false, indexed: [], txn)
                    }
                }
            }
        }
        let used = try env.read { try store.usedBytes($0) }
        let raw = n * d * 4
        // Two vectors a 4 KiB page, plus the keys' and items' pages: well under 1.5x raw.
        XCTAssertLessThan(Double(used), 1.5 * Double(raw), "\(used) bytes for \(raw) bytes of vectors")
        XCTAssertEqual(try env.read { try store.vectorCount($0) }, n)
    }

    /// A key that does not sort last still goes in (a plain put), and reads back.
    func testAnOutOfOrderIdStillInserts() throws {
        let (env, store) = try emptyStore()
        let vector: [Float] = [1, 2, 3]
        for id in [UInt64(10), 5, 7] {
            _ = try env.write { txn in
                try vector.withUnsafeBufferPointer { v in
                    _ = try store.insert(id: id, record: ItemRecord(key: "k\(id)", attributes: nil), vector: v, isView: false, indexed: [], txn)
                }
            }
        }
        XCTAssertEqual(try env.read { try store.vectorCount($0) }, 3)
        for id in [UInt64(5), 7, 10] {
            XCTAssertEqual(try env.read { try store.key(id, $0) }, "k\(id)")
            XCTAssertEqual(try env.read { txn in try store.vectorBytes(id, txn).map { Array($0.bindMemory(to: Float.self)) } }, vector)
        }
    }
}
