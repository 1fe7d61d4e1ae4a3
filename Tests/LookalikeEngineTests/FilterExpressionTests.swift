// Redis's FILTER language: operators, precedence, types, and "missing means no match".
import LookalikeEngine
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
}
