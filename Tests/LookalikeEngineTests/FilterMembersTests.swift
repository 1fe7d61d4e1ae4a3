// A filter's member set (the items its indexed part lists) never loses a match: for each
// filter, a search returns exactly the items a full scan with the per-hit check
// (`FilterExpression.matches`) accepts, whatever the kinds of value the attribute held —
// empty strings, values past LMDB's key limit, numbers spelled as strings ("5.0" == 5),
// booleans against "1" / "0" — and whether the plan checks hits or trusts the members.
// Also: a data folder indexed before these entries existed is re-indexed at open.
import LookalikeStorage
import LookalikeTestSupport
import XCTest
@testable import LookalikeEngine
@testable import LookalikeStorage

final class FilterMembersTests: XCTestCase {
    static let long = String(repeating: "L", count: 600)
    static let longToo = String(repeating: "L", count: 599) + "M"

    /// Attribute JSON of each element, by collection: mixed kinds, strings only, flags only.
    static let sets: [String: [String]] = [
        "mixed": ["\"\"", "\"\(long)\"", "\"\(longToo)\"", #""5.0""#, "5", "5.0", #""5""#, #""05""#, "true", "false",
                  #""1""#, "1", "0", #""true""#, #""abc""#, #"["5"]"#, "null", "2.5", #""2.50""#, #""1e0""#],
        "strings": ["\"\"", "\"\(long)\"", "\"\(longToo)\"", #""5.0""#, #""5""#, #""05""#, #""abc""#, #""1""#, #""2.50""#],
        "flags": ["true", "false", "1", "0", "2", "1.0"],
    ]

    static let filters = [
        ".x == \"\"", "\"\" == .x", ".x == \"\(long)\"", ".x == \"\(longToo)\"", ".x == 5", ".x == 5.0", #".x == "5""#,
        #".x == "5.0""#, #".x == "05""#, ".x == 1", ".x == 0", ".x == true", #".x == "1""#, #".x == "0""#,
        #".x == "1.0""#, #".x == "true""#, ".x == 2.5", #".x == "2.5""#, #".x in [5, "", "abc"]"#,
        #".x in ["1", 0]"#, ".x == \"\" or .x == 5", #".x == "abc" and .x == "abc""#,
    ]

    func fill(_ engine: Engine) async throws {
        for (name, values) in Self.sets {
            let c = try engine.createCollection(.init(name: name, dimension: 2, metric: .l2, index: "Flat", attributes: ["x"]))
            for (i, v) in values.enumerated() {
                try await c.upsert(key: "e\(i)", vector: [Float(i), 0], attributes: .set("{\"x\":\(v)}"))
            }
            try await c.upsert(key: "none", vector: [-1, 0], attributes: .set("{\"y\":1}"))
        }
    }

    /// Every filter on every collection: the search's keys are the full scan's.
    func assertSearchesEqualFullScan(_ engine: Engine, file: StaticString = #filePath, line: UInt = #line) throws {
        for (name, values) in Self.sets {
            let c = try XCTUnwrap(engine.collection(name))
            for source in Self.filters {
                let filter = try FilterExpression(source)
                let expected = Set(values.indices.filter { filter.matches("{\"x\":\(values[$0])}") }.map { "e\($0)" })
                let request = SearchRequest(query: .vector([0, 0]), k: 100).filtered(filter, candidates: nil)
                let got = try c.search(request).map(\.key)
                XCTAssertEqual(Set(got), expected, "\(name): \(source.prefix(60))", file: file, line: line)
                XCTAssertEqual(got.count, Set(got).count, file: file, line: line)
            }
        }
    }

    func testMembersNeverMissAMatch() async throws {
        let directory = temporaryDirectory(self)
        var engine = try Engine(directory: directory)
        try await fill(engine)
        try assertSearchesEqualFullScan(engine)
        engine.close()
        engine = try Engine(directory: directory)
        defer { engine.close() }
        try assertSearchesEqualFullScan(engine)
    }

    /// A folder whose attribute tables lack the entries (indexed by an older version: no
    /// empty or long values, no numbers spelled as strings) is re-indexed once at open.
    func testOldAttributeTablesAreReindexedAtOpen() async throws {
        let directory = temporaryDirectory(self)
        var engine = try Engine(directory: directory)
        try await fill(engine)
        func forget() throws {
            try engine.environment.write { txn in
                for name in Self.sets.keys {
                    let c = try XCTUnwrap(engine.collection(name))
                    try txn.empty(try XCTUnwrap(c.store.attributeTables["x"]))
                    try engine.meta.delete(MetaLayout.attributeIndex(c.number), txn)
                }
            }
        }
        try forget()
        engine.close()
        engine = try Engine(directory: directory)
        defer { engine.close() }
        try assertSearchesEqualFullScan(engine)
        // In several transactions of a few items each: the same entries (read from the tables,
        // not through searches, whose member sets are cached).
        func entries() throws -> [String: [UInt64]] {
            try engine.environment.read { txn in
                var out: [String: [UInt64]] = [:]
                for (name, values) in Self.sets {
                    let c = try XCTUnwrap(engine.collection(name))
                    for v in values { for t in Attributes(json: "{\"x\":\(v)}").indexedTexts("x") {
                        out[name + "/" + t] = try c.store.ids(attribute: "x", value: t, txn)
                    } }
                }
                return out
            }
        }
        let before = try entries()
        try forget()
        XCTAssertNotEqual(try entries(), before)
        for name in Self.sets.keys { try XCTUnwrap(engine.collection(name)).reindexAttributesIfOld(batch: 3) }
        XCTAssertEqual(try entries(), before)
        for name in Self.sets.keys {
            let c = try XCTUnwrap(engine.collection(name))
            XCTAssertNotNil(try engine.environment.read { try engine.meta.get(MetaLayout.attributeIndex(c.number), $0) })
        }
    }

    /// The exact fast path stays for the common case; values it cannot list exactly are checked.
    func testWhichLiteralsStayDecided() throws {
        func decided(_ source: String, _ kinds: AttributeKinds) throws -> Bool {
            try FilterExpression(source).isDecided(over: ["x"]) { _ in kinds }
        }
        XCTAssertTrue(try decided(#".x == "abc""#, .string))
        XCTAssertTrue(try decided(".x == \"\"", .string), "the empty string is listed as it is")
        XCTAssertTrue(try decided(".x == 5", .string), "every string equal to 5 is listed under 5")
        XCTAssertTrue(try decided(#".x == "1""#, [.bool, .number]), "true is listed under \"1\"'s set")
        XCTAssertFalse(try decided(".x == \"\(Self.long)\"", .string), "a long value's key is a hash")
        XCTAssertFalse(try decided(#".x == "5""#, .string), "\"5.0\" is listed under 5 and is not \"5\"")
        XCTAssertFalse(try decided(".x == 1", [.string, .bool]), "the string \"true\" is listed, not equal")
    }

    func testIndexTexts() {
        XCTAssertEqual(Attributes(json: "{\"x\": \"\"}").indexedTexts("x"), [""])
        XCTAssertEqual(Attributes(json: "{\"x\": \"\(Self.long)\"}").indexedTexts("x"), [Self.long])
        XCTAssertEqual(Attributes(json: #"{"x": "5.0"}"#).indexedTexts("x"), ["5", "5.0"])
        XCTAssertEqual(Attributes(json: #"{"x": "5"}"#).indexedTexts("x"), ["5"])
        XCTAssertEqual(Attributes(json: #"{"x": ["", "1.0"]}"#).indexedTexts("x"), ["", "1", "1.0"])
        // The storage keys of texts LMDB cannot hold as they are: never a valid UTF-8 text.
        XCTAssertEqual(CollectionStore.tableKey(""), [0xFF])
        XCTAssertEqual(CollectionStore.tableKey("abc"), Array("abc".utf8))
        let a = CollectionStore.tableKey(Self.long), b = CollectionStore.tableKey(Self.longToo)
        XCTAssertEqual(a.first, 0xFE)
        XCTAssertLessThanOrEqual(a.count, 511)
        XCTAssertNotEqual(a, b)
        XCTAssertEqual(a, CollectionStore.tableKey(Self.long))
    }
}
