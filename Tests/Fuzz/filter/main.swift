// fuzz-filter: FilterExpression(_:) compiling and .matches(_:) evaluating (Docs/fuzzing.md).
//
// Input: the expression, a newline, then the attributes JSON (no newline: the expression alone,
// evaluated against fixed attributes). Never crashes; a compiled expression is also evaluated
// against no attributes and against a fixed object of every JSON type, and planned over its
// own selectors as if all of them were indexed (indexedSet, isDecided).
import Foundation
import FuzzSupport
import LookalikeEngine

let fixed = #"{"year": 1984, "genre": "action", "rating": 8.5, "tags": ["a", "b", 3], "ok": true, "none": null, "obj": {"x": 1}, "empty": "", "neg": -0.0}"#

fuzzMain { input in
    let bytes = Array(input)
    let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
    let source = String(decoding: bytes[..<newline], as: UTF8.self)
    let json = newline < bytes.count ? String(decoding: bytes[(newline + 1)...], as: UTF8.self) : fixed
    guard let filter = try? FilterExpression(source) else { return }
    _ = filter.matches(json)
    _ = filter.matches(fixed)
    _ = filter.matches(nil)
    _ = filter.indexedSet(over: filter.selectors)
    _ = filter.indexedSet(over: [])
    _ = filter.isDecided(over: filter.selectors) { _ in .string }
}
