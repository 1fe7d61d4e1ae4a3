// Bad input gets a clear error and changes nothing.
import LookalikeEngine
import LookalikeIndex
import LookalikeTestSupport
import XCTest

final class ValidationTests: XCTestCase {
    var engine: Engine!
    var c: Collection!

    override func setUp() async throws {
        engine = try Engine(directory: temporaryDirectory(self))
        c = try engine.createCollection(.init(name: "v", dimension: 4, metric: .cosine, index: "HNSW16"))
        try await c.upsert(key: "keep", vector: [1, 2, 3, 4], attributes: .set(#"{"category":"a"}"#))
    }

    override func tearDown() { engine.close() }

    func assertUnchanged(file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(try c.itemCount(), 1, file: file, line: line)
        XCTAssertEqual(try c.vector(key: "keep"), [1, 2, 3, 4], file: file, line: line)
        XCTAssertEqual(try c.item(key: "keep")?.attributes, #"{"category":"a"}"#, file: file, line: line)
    }

    func testBadVectors() async throws {
        await assertThrowsAsync(.wrongDimension(expected: 4, got: 3)) { try await self.c.upsert(key: "keep", vector: [1, 2, 3]) }
        await assertThrowsAsync(.notFinite) { try await self.c.upsert(key: "keep", vector: [1, .nan, 3, 4]) }
        await assertThrowsAsync(.notFinite) { try await self.c.upsert(key: "x", vector: [1, .infinity, 3, 4]) }
        XCTAssertThrowsError(try c.search(.init(query: .vector([1, 2]), k: 3)))
        XCTAssertThrowsError(try c.search(.init(query: .vector([1, 2, .nan, 4]), k: 3)))
        XCTAssertThrowsError(try c.search(.init(query: .vector([1, 2, 3, 4]), k: 0)))
        XCTAssertThrowsError(try c.search(.init(query: .vector([1, 2, 3, 4]), k: 1_000_000)))
        try assertUnchanged()
    }

    func testBadKeysAndAttributes() async throws {
        await assertThrowsAsync(.emptyKey) { try await self.c.upsert(key: "", vector: [1, 2, 3, 4]) }
        await assertThrowsAsync(.keyTooLong(max: 511)) {
            try await self.c.upsert(key: String(repeating: "k", count: 600), vector: [1, 2, 3, 4])
        }
        await assertThrowsAsync(.attributesTooLarge(max: 65_536)) {
            try await self.c.setAttributes(key: "keep", #"{"t":""# + String(repeating: "x", count: 70_000) + #""}"#)
        }
        try assertUnchanged()
    }

    func testBadDefinitions() throws {
        XCTAssertThrowsError(try engine.createCollection(.init(name: "bad", dimension: 8, index: "HNSW-banana"))) { error in
            guard case .indexSpecRejected(let spec, let reason)? = error as? EngineError else {
                return XCTFail("unexpected \(error)")
            }
            XCTAssertEqual(spec, "HNSW-banana")
            XCTAssertFalse(reason.isEmpty)
        }
        assertThrows(.invalidDefinition("dimension must be between 1 and 65536, got 0")) {
            try engine.createCollection(.init(name: "bad", dimension: 0))
        }
        XCTAssertThrowsError(try engine.createCollection(.init(name: "bad", dimension: 8, index: "IDMap,Flat")))
        XCTAssertThrowsError(try engine.createCollection(.init(name: "", dimension: 8)))
        XCTAssertThrowsError(try CollectionDefinition.load(path: "/nonexistent.json"))
        XCTAssertEqual(engine.collectionNames(), ["v"])
    }

    /// A FAISS exception (here: PQ needs the dimension to divide by its sub-quantizers, and
    /// searching an untrained index) comes back as a Swift error, never an abort.
    func testFaissErrorsSurfaceAsSwiftErrors() throws {
        XCTAssertThrowsError(try FaissIndex(spec: "PQ3", dimension: 8, metric: .l2)) { error in
            guard case .faiss(let message)? = error as? IndexError else { return XCTFail("\(error)") }
            XCTAssertFalse(message.isEmpty)
        }
        let ivf = try FaissIndex(spec: "IVF16,Flat", dimension: 8, metric: .l2)
        let x = [Float](repeating: 1, count: 8)
        XCTAssertThrowsError(try ivf.add(x, count: 1))
        XCTAssertThrowsError(try FaissIndex.read(path: "/nonexistent.faiss", mmap: false))
        let flat = try FaissIndex(spec: "Flat", dimension: 8, metric: .l2)
        XCTAssertThrowsError(try flat.search(x, queryCount: 1, k: 0, effort: .init(), selector: nil))
        XCTAssertThrowsError(try flat.reconstruct(position: 5, dimension: 8))
    }
}

final class DirectoryLockTests: XCTestCase {
    /// One process per data folder: a second open is refused while the first holds it, and
    /// allowed once it is closed.
    func testASecondOpenOfAFolderIsRefused() throws {
        let dir = temporaryDirectory(self)
        let first = try Engine(directory: dir)
        XCTAssertThrowsError(try Engine(directory: dir)) { error in
            XCTAssertTrue("\(error)".contains("in use by another Lookalike process"), "\(error)")
        }
        first.close()
        let again = try Engine(directory: dir)
        again.close()
    }
}
