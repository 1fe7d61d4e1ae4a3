// Redis's FILTER language: operators, precedence, types, and "missing means no match".
import LookalikeEngine
import LookalikeTestSupport
import XCTest

final class FilterExpressionTests: XCTestCase {
    let item = #"{"year": 1984, "genre": "action", "rating": 8.5, "tags": ["a", "b", 3], "ok": true, "title": "The Terminator"}"#

    func check(_ expression: String, _ expected: Bool, line: UInt = #line) throws {
        XCTAssertEqual(try FilterExpression(expression).matches(item), expected, expression, line: line)
    }

    func testOperators() throws {
        try check(".year >= 1980 and .year < 1990", true)
        try check(".year > 1990 || .genre == 'action'", true)
        try check("not (.rating > 8)", false)
        try check("!(.rating > 9)", true)
        try check(".genre in [\"drama\", \"action\"]", true)
        try check("3 in .tags", true)
        try check("\"Term\" in .title", true)
        try check("(.year - 2000) ** 2 < 300", true)
        try check(".year % 100 == 84", true)
        try check("2 ** 3 ** 2 == 512", true)
        try check("-.rating < -8", true)
        try check(".ok == 1 and .ok", true)
        try check(".rating * 2 == 17 && .year / 2 == 992", true)
        try check("1 + 2 * 3 == 7", true)
        try check(".genre != \"action\"", false)
        try check(".genre > \"aaa\"", true)
    }

    func testMissingOrUnusableValuesDoNotMatch() throws {
        try check(".nothere == 1", false)
        try check(".nothere == 1 or .year == 1984", true)
        try check(".tags > 3", false)
        XCTAssertFalse(try FilterExpression(".year > 1").matches(nil))
        XCTAssertFalse(try FilterExpression(".year > 1").matches("not json"))
        XCTAssertFalse(try FilterExpression(".year > 1").matches("[1,2]"))
    }

    func testSyntaxErrorsSayWhere() {
        for bad in ["", ".year >", "year > 1", ".a == 'unterminated", "(.a == 1", ".a ** ** 2", ".a # 1", "[1, 2"] {
            XCTAssertThrowsError(try FilterExpression(bad), bad) { error in
                XCTAssertTrue("\(error)".contains("FILTER"), "\(error)")
            }
        }
        XCTAssertEqual(try FilterExpression(".a == 1 and .b in [1]").selectors, ["a", "b"])
    }

    /// One member set, one cache key (MemberCache is keyed by the set): `CATEGORY x`,
    /// `FILTER '.category == "x"'` and both together resolve to the same set, whatever the
    /// order or nesting of the expression's parts.
    func testEqualMemberSetsAreOneKey() throws {
        typealias S = FilterExpression.IndexedSet
        let indexed: Set<String> = ["category", "author"]
        func set(_ source: String) throws -> S? { try FilterExpression(source).indexedSet(over: indexed) }
        let category = S.value(attribute: "category", text: "x")  // what CATEGORY x searches
        XCTAssertEqual(try set(".category == \"x\""), category)
        XCTAssertEqual(try set(".category in [\"x\"]"), category)
        XCTAssertEqual(try set(".category == \"x\" or .category == \"x\""), category)
        XCTAssertEqual(S.allOf([category, try XCTUnwrap(set(".category == \"x\""))]), category)
        XCTAssertEqual(try set(".category == \"a\" and .author == \"b\""), try set(".author == \"b\" and .category == \"a\""))
        XCTAssertEqual(try set("(.category == \"a\" or .category == \"b\") or .category == \"c\""),
                       try set(".category in [\"c\", \"b\", \"a\"]"))
        XCTAssertEqual(S.anyOf([]), .union([]))  // `in []`: no members
    }

    /// The indexed part is a superset of the matches: ==, in, and, or over indexed attributes;
    /// nothing for not, ranges, substrings or an `or` with an unindexed side.
    func testIndexedSetOfAFilter() throws {
        typealias S = FilterExpression.IndexedSet
        let indexed: Set<String> = ["category", "author"]
        func set(_ source: String) throws -> S? { try FilterExpression(source).indexedSet(over: indexed) }
        let cat = S.value(attribute: "category", text: "shoes")
        XCTAssertEqual(try set(".category == \"shoes\""), cat)
        XCTAssertEqual(try set("\"shoes\" == .category"), cat)
        XCTAssertEqual(try set(".category == \"shoes\" and .price < 10"), cat)
        XCTAssertEqual(try set(".price < 10 && .category == \"shoes\""), cat)
        XCTAssertEqual(try set(".category in [\"a\", \"b\"]"),
                       .union([.value(attribute: "category", text: "a"), .value(attribute: "category", text: "b")]))
        XCTAssertEqual(try set(".category == \"a\" or .author == \"x\""),
                       .union([.value(attribute: "author", text: "x"), .value(attribute: "category", text: "a")]))
        XCTAssertEqual(try set(".category == \"a\" and .author == \"x\""),
                       .intersection([.value(attribute: "author", text: "x"), .value(attribute: "category", text: "a")]))
        // Numbers match the text the index holds: whole numbers as integers, 1/0 as booleans too.
        XCTAssertEqual(try set(".author == 1"), .union([.value(attribute: "author", text: "1"), .value(attribute: "author", text: "true")]))
        XCTAssertEqual(try set(".author == \"7.0\""), .union([.value(attribute: "author", text: "7"), .value(attribute: "author", text: "7.0")]))
        for unplannable in ["not (.category == \"a\")", ".category != \"a\"", ".price < 3", "\"a\" in .category",
                            ".category == \"a\" or .price > 3", ".title == \"a\"", ".category in [\"a\", .author]"] {
            XCTAssertNil(try set(unplannable), unplannable)
        }
    }
}
