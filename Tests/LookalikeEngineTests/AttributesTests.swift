// Attributes are parsed once, in the engine (Attributes.swift): the values the attribute tables
// list, the kinds of value each indexed attribute has held (AttributeKinds.swift), and what a
// filtered search skips because of them: no hit is parsed when the members decide the filter
// exactly, and CATEGORY x shares FILTER '.category == "x"''s cached member set.
import LookalikeStorage
import LookalikeTestSupport
import XCTest
@testable import LookalikeEngine

final class AttributesTests: XCTestCase {
    func testTypedValuesAndIndexTexts() {
        let a = Attributes(json: #"{"s": "x", "n": 5.0, "f": 2.5, "b": true, "l": ["b", "a", 3, {"o": 1}, "a"], "e": "", "o": {"k": 1}, "z": null}"#)
        XCTAssertEqual(a["s"], .scalar(.string("x")))
        XCTAssertEqual(a["b"], .scalar(.bool(true)))
        XCTAssertEqual(a["l"], .list([.string("b"), .string("a"), .number(3), nil, .string("a")]))
        XCTAssertEqual(a["o"], .other)
        XCTAssertEqual(a["z"], .other)
        XCTAssertEqual(a.indexedTexts("s"), ["x"])
        XCTAssertEqual(a.indexedTexts("n"), ["5"])
        XCTAssertEqual(a.indexedTexts("f"), ["2.5"])
        XCTAssertEqual(a.indexedTexts("b"), ["true"])
        XCTAssertEqual(a.indexedTexts("l"), ["3", "a", "b"])
        XCTAssertEqual(a.indexedTexts("e"), [""])
        XCTAssertEqual(a.indexedTexts("o"), [])
        XCTAssertEqual(a.indexedTexts("missing"), [])
        XCTAssertEqual(Attributes(json: #"{"v": "\#(String(repeating: "x", count: 481))"}"#).indexedTexts("v"),
                       [String(repeating: "x", count: 481)])
        XCTAssertEqual(a.number("f"), 2.5)
        XCTAssertNil(a.number("b"))
        XCTAssertEqual(Attributes(json: #"{"p": "12"}"#).number("p"), 12)
        XCTAssertEqual(a.indexedValues(["s", "b", "missing"]),
                       [IndexedValue(attribute: "s", value: "x"), IndexedValue(attribute: "b", value: "true")])
        XCTAssertNil(Attributes(""))
        XCTAssertNil(Attributes(nil))
        XCTAssertEqual(Attributes(json: "[1, 2]").indexedTexts("0"), [])  // not an object: nothing
        XCTAssertFalse(Attributes(json: "{not json").isObject)
        XCTAssertTrue(Attributes(json: "{}").isObject)
        XCTAssertFalse(try FilterExpression("1").matches(Attributes(json: "{not json")), "no object, no match")
        XCTAssertTrue(try FilterExpression("1").matches(Attributes(json: "{}")))
    }

    /// The member set decides a filter exactly only for the kinds of value its attributes held.
    func testWhenMembersDecideAFilter() throws {
        let indexed: Set<String> = ["category", "author"]
        func decided(_ source: String, _ kinds: AttributeKinds) throws -> Bool {
            try FilterExpression(source).isDecided(over: indexed) { _ in kinds }
        }
        for source in [".category == \"x\"", "\"x\" == .category", ".category in [\"x\", \"y\"]",
                       ".category == \"x\" and .author == \"y\"", ".category == \"x\" or .author == \"y\"",
                       ".category == 7", ".category in []"] {
            XCTAssertTrue(try decided(source, .string), source)
        }
        for source in [".category == \"x\" and .price < 3", ".price == 3", ".category != \"x\"",
                       "not (.category == \"x\")", ".category == .author", "\"x\" in .category",
                       ".category == \"x\" or .price == 3",
                       ".category == \"5.0\"", ".category == \"5\"", ".category == 1", ".category in [0]"] {
            XCTAssertFalse(try decided(source, .string), source)
        }
        XCTAssertFalse(try decided(".category == \"x\"", [.string, .list]), "an array is listed, == is false")
        XCTAssertTrue(try decided(".category == \"5.0\"", .number), "the number 5 equals \"5.0\"")
        XCTAssertTrue(try decided(".category == 1", [.number, .bool]))
        XCTAssertFalse(try decided(".category == \"true\"", .bool), "true is 1, not \"true\"")
        XCTAssertFalse(try decided(".category == \"x\"", .all), "no record: everything is checked")
    }

    func loaded(_ directory: String) async throws -> (Engine, Collection) {
        let engine = try Engine(directory: directory)
        let c: Collection
        if let existing = engine.collection("a") {
            c = existing
        } else {
            c = try engine.createCollection(.init(name: "a", dimension: 4, metric: .l2, index: "Flat"))
            for i in 0..<60 {
                try await c.upsert(key: "k\(i)", vector: [Float(i), 0, 0, 0],
                                   attributes: .set("{\"category\":\"c\(i % 3)\",\"n\":\(i)}"))
            }
        }
        return (engine, c)
    }

    /// Attributes a search parsed (and its hits' keys).
    func parsed(_ c: Collection, _ request: SearchRequest) throws -> (parses: Int, keys: [String]) {
        let before = Attributes.parses.load(ordering: .relaxed)
        let keys = try c.search(request).map(\.key)
        return (Attributes.parses.load(ordering: .relaxed) - before, keys)
    }

    func testDecidedFilterParsesNoHit() async throws {
        let directory = temporaryDirectory(self)
        var (engine, c) = try await loaded(directory)
        let near = SearchRequest(query: .vector([30, 0, 0, 0]), k: 4)
        let exact = near.filtered(try FilterExpression(".category == \"c1\""), candidates: nil)
        let expected = ["k31", "k28", "k34", "k25"]
        XCTAssertEqual(try parsed(c, exact).keys, expected)
        XCTAssertEqual(try parsed(c, exact).parses, 0)
        XCTAssertEqual(try parsed(c, near.inCategory("c1")).parses, 0)
        // A part the members cannot decide is checked on each hit (and only up to the k-th).
        let mixed = try parsed(c, near.filtered(try FilterExpression(".category == \"c1\" and .n > 0"), candidates: nil))
        XCTAssertEqual(mixed.keys, expected)
        XCTAssertEqual(mixed.parses, 4)

        // The record survives a restart.
        engine.close()
        (engine, c) = try await loaded(directory)
        XCTAssertEqual(try parsed(c, exact).parses, 0)

        // An array value makes == inexact (the table lists "c1" for it, == is false): checked.
        try await c.upsert(key: "list", vector: [30, 0, 0, 0], attributes: .set("{\"category\":[\"c1\"]}"))
        let checked = try parsed(c, exact)
        XCTAssertEqual(checked.keys, expected)
        XCTAssertGreaterThan(checked.parses, 0)
        engine.close()
        (engine, c) = try await loaded(directory)
        defer { engine.close() }
        XCTAssertGreaterThan(try parsed(c, exact).parses, 0)
        XCTAssertEqual(try c.search(near.inCategory("c1")).map(\.key), ["list"] + expected.prefix(3))
    }

    /// A collection from before the record keeps checking every hit.
    func testNoRecordChecksEveryHit() async throws {
        let directory = temporaryDirectory(self)
        var (engine, c) = try await loaded(directory)
        try engine.environment.write { try engine.meta.delete(MetaLayout.attributeKinds(c.number), $0) }
        engine.close()
        (engine, c) = try await loaded(directory)
        defer { engine.close() }
        let exact = SearchRequest(query: .vector([30, 0, 0, 0]), k: 4).filtered(try FilterExpression(".category == \"c1\""), candidates: nil)
        let result = try parsed(c, exact)
        XCTAssertEqual(result.keys, ["k31", "k28", "k34", "k25"])
        XCTAssertEqual(result.parses, 4)
        try await c.upsert(key: "new", vector: [0, 1, 0, 0], attributes: .set("{\"category\":\"c1\"}"))
        XCTAssertEqual(try parsed(c, exact).parses, 4, "still no record after a write")
    }

    /// One member set, one cache entry: CATEGORY x, FILTER '.category == "x"' and both.
    func testCategoryAndEqualFilterShareOneCacheEntry() async throws {
        let (engine, c) = try await loaded(temporaryDirectory(self))
        defer { engine.close() }
        let near = SearchRequest(query: .vector([30, 0, 0, 0]), k: 4)
        let filter = try FilterExpression(".category == \"c1\"")
        XCTAssertEqual(c.memberCache.count, 0)
        let byCategory = try c.search(near.inCategory("c1")).map(\.key)
        XCTAssertEqual(c.memberCache.count, 1)
        XCTAssertEqual(try c.search(near.filtered(filter, candidates: nil)).map(\.key), byCategory)
        XCTAssertEqual(try c.search(near.inCategory("c1").filtered(filter, candidates: nil)).map(\.key), byCategory)
        XCTAssertEqual(c.memberCache.count, 1)
        _ = try c.search(near.inCategory("c2"))
        XCTAssertEqual(c.memberCache.count, 2)
    }
}
