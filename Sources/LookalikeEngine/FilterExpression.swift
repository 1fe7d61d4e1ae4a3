// FilterExpression: Redis vector sets' FILTER language, compiled once per query and evaluated
// against each candidate's JSON attributes.
//
//   .year >= 1980 and .year < 1990        .genre == "action" && .rating > 8.0
//   .director in ["Spielberg", "Nolan"]   "foo" in .title      not (.price > 100)
//   (.year - 2000) ** 2 < 100
//
// Semantics, as in Redis: selectors read first-level keys of the attributes object; numbers
// are doubles; booleans are 1 and 0; arrays of numbers and strings serve `in`; a missing or
// unusable value makes the whole expression false for that item (never an error at run time).
// Equality: two strings compare as strings ("5.0" is not "5"), two numbers as numbers, a string
// and a number as numbers when the string reads as one ("5.0" == 5, "1" == true). Redis
// (vset expr.c) also reads an unreadable string, and an array, as 0 there; here they equal no
// number, as `<` and `+` on them make the expression false.
// Limits: the source is at most `FilterLimits.maxBytes` long and its tree at most
// `maxDepth` deep (a chain `a + b + c` is as deep as it is long). Parsing, evaluation and
// planning recurse over the tree, so a depth bound is what keeps a hostile filter from
// overflowing a thread's stack; it is checked while parsing, before any deep tree exists.
// The parser (tokens to tree) is FilterParser.swift; this file holds the tree, its evaluation
// over parsed attributes (Attributes.swift), and its planning over attribute indexes
// (`indexedSet`, and `isDecided`: when the indexed set is the answer and no hit is checked).
// Threads: a compiled expression is immutable and may be evaluated from any thread.
import Foundation
import LookalikeStorage

/// How large a FILTER expression may be (flags --max-filter-bytes, --max-filter-depth).
public struct FilterLimits: Sendable {
    public var maxBytes = 65_536
    public var maxDepth = 1_000
    public init() {}
}

public struct FilterExpression: Sendable {
    indirect enum Node: Sendable {
        case number(Double)
        case string(String)
        case list([Node])
        case selector(String)
        case unary(UnaryOperator, Node)
        case binary(BinaryOperator, Node, Node)
    }

    enum UnaryOperator: Sendable {
        /// `!` and `not`: 1 for a false operand, else 0.
        case not
        /// `-`: the operand's number, negated.
        case negate
    }

    /// The binary operators, spelled as in the source (`&&` and `||` parse as and, or).
    enum BinaryOperator: String, Sendable, CaseIterable {
        case or, and, `in`
        case equal = "==", notEqual = "!="
        case less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">="
        case add = "+", subtract = "-", multiply = "*", divide = "/", remainder = "%", power = "**"

        /// Binding strength: a higher one binds tighter (`**` the tightest, `or` the loosest).
        var precedence: Int {
            switch self {
            case .or: 1
            case .and: 2
            case .in: 3
            case .equal, .notEqual: 4
            case .less, .lessOrEqual, .greater, .greaterOrEqual: 5
            case .add, .subtract: 6
            case .multiply, .divide, .remainder: 7
            case .power: 8
            }
        }
    }

    enum Value {
        case number(Double)
        case string(String)
        case list([Value])

        var truthy: Bool {
            switch self {
            case .number(let n): return n != 0
            case .string(let s): return !s.isEmpty
            case .list(let l): return !l.isEmpty
            }
        }
    }

    struct Missing: Error {}

    let root: Node
    /// Selectors the expression reads (a planner may use indexed ones).
    public let selectors: Set<String>

    /// Compiles an expression; throws `EngineError.invalidArgument` with the reason.
    public init(_ source: String, limits: FilterLimits = FilterLimits()) throws {
        guard source.utf8.count <= limits.maxBytes else {
            throw EngineError.invalidArgument("the FILTER expression is longer than \(limits.maxBytes) bytes")
        }
        var parser = Parser(tokens: try Self.tokenize(source), maxDepth: limits.maxDepth)
        root = try parser.parseExpression(0).node
        guard parser.atEnd else { throw EngineError.invalidArgument("syntax error in FILTER expression near '\(parser.peek ?? "")'") }
        var names = Set<String>()
        Self.collectSelectors(root, into: &names)
        selectors = names
    }

    /// True when the attributes JSON satisfies the expression.
    public func matches(_ attributesJSON: String?) -> Bool {
        guard let attributes = Attributes(attributesJSON) else { return false }
        return matches(attributes)
    }

    public func matches(_ attributes: Attributes) -> Bool {
        guard attributes.isObject, let v = try? Self.evaluate(root, attributes) else { return false }
        return v.truthy
    }

    // MARK: Evaluation

    static func evaluate(_ node: Node, _ object: Attributes) throws -> Value {
        switch node {
        case .number(let n): return .number(n)
        case .string(let s): return .string(s)
        case .list(let items): return .list(try items.map { try evaluate($0, object) })
        case .selector(let name):
            guard let raw = object[name], let v = convert(raw) else { throw Missing() }
            return v
        case .unary(let op, let a):
            let v = try evaluate(a, object)
            switch op {
            case .not: return .number(v.truthy ? 0 : 1)
            case .negate: return .number(-(try number(v)))
            }
        case .binary(let op, let a, let b):
            switch op {
            case .and:
                guard try evaluate(a, object).truthy else { return .number(0) }
                return .number(try evaluate(b, object).truthy ? 1 : 0)
            case .or:
                if (try? evaluate(a, object))?.truthy == true { return .number(1) }
                return .number(try evaluate(b, object).truthy ? 1 : 0)
            default:
                return try apply(op, try evaluate(a, object), try evaluate(b, object))
            }
        }
    }

    /// An attribute as the language sees it: booleans are 1 and 0; an array only when every
    /// element is a string or a number (or boolean); null and objects are unusable.
    static func convert(_ raw: Attributes.Value) -> Value? {
        func scalar(_ s: Attributes.Scalar) -> Value {
            switch s {
            case .string(let t): return .string(t)
            case .number(let n): return .number(n)
            case .bool(let b): return .number(b ? 1 : 0)
            }
        }
        switch raw {
        case .scalar(let s): return scalar(s)
        case .list(let items):
            let values = items.compactMap { $0.map(scalar) }
            return values.count == items.count ? .list(values) : nil
        case .other: return nil
        }
    }

    static func number(_ v: Value) throws -> Double {
        switch v {
        case .number(let n): return n
        case .string(let s):
            guard let n = Double(s) else { throw Missing() }
            return n
        case .list: throw Missing()
        }
    }

    static func equal(_ a: Value, _ b: Value) -> Bool {
        switch (a, b) {
        case (.number(let x), .number(let y)): return x == y
        case (.string(let x), .string(let y)): return x == y
        case (.number(let x), .string(let y)), (.string(let y), .number(let x)):
            return Double(y) == x
        default: return false
        }
    }

    static func apply(_ op: BinaryOperator, _ a: Value, _ b: Value) throws -> Value {
        func bool(_ x: Bool) -> Value { .number(x ? 1 : 0) }
        switch op {
        case .equal: return bool(equal(a, b))
        case .notEqual: return bool(!equal(a, b))
        case .less, .lessOrEqual, .greater, .greaterOrEqual:
            let order: Int
            if case .string(let x) = a, case .string(let y) = b {
                order = x < y ? -1 : (x == y ? 0 : 1)
            } else {
                let x = try number(a), y = try number(b)
                order = x < y ? -1 : (x == y ? 0 : 1)
            }
            switch op {
            case .less: return bool(order < 0)
            case .lessOrEqual: return bool(order <= 0)
            case .greater: return bool(order > 0)
            default: return bool(order >= 0)
            }
        case .in:
            switch (a, b) {
            case (_, .list(let items)): return bool(items.contains { equal(a, $0) })
            case (.string(let x), .string(let y)): return bool(y.contains(x))
            default: throw Missing()
            }
        case .and, .or:  // evaluated lazily by `evaluate`; here for completeness
            return bool(op == .and ? a.truthy && b.truthy : a.truthy || b.truthy)
        case .add, .subtract, .multiply, .divide, .remainder, .power:
            let x = try number(a), y = try number(b)
            switch op {
            case .add: return .number(x + y)
            case .subtract: return .number(x - y)
            case .multiply: return .number(x * y)
            case .divide: return .number(x / y)
            case .remainder: return .number(x.truncatingRemainder(dividingBy: y))
            default: return .number(pow(x, y))
            }
        }
    }

    static func collectSelectors(_ node: Node, into names: inout Set<String>) {
        switch node {
        case .selector(let s): names.insert(s)
        case .list(let items): items.forEach { collectSelectors($0, into: &names) }
        case .unary(_, let a): collectSelectors(a, into: &names)
        case .binary(_, let a, let b):
            collectSelectors(a, into: &names)
            collectSelectors(b, into: &names)
        default: break
        }
    }

    // MARK: Planning over attribute indexes

    /// A filter's indexed part as set operations over attribute values.
    public indirect enum IndexedSet: Hashable, Sendable {
        /// The items indexed under this attribute value.
        case value(attribute: String, text: String)
        case union([IndexedSet])
        case intersection([IndexedSet])

        /// The union of `parts` in one canonical form, so that equal sets are equal keys (one
        /// MemberCache entry for `CATEGORY x` and `FILTER '.category == "x"'`): nested unions
        /// flattened, duplicates dropped, parts in a fixed order, a single part standing alone.
        public static func anyOf(_ parts: [IndexedSet]) -> IndexedSet {
            canonical(parts.flatMap { if case .union(let inner) = $0 { inner } else { [$0] } }, IndexedSet.union)
        }

        /// The intersection of `parts`, in the same canonical form as `anyOf`.
        public static func allOf(_ parts: [IndexedSet]) -> IndexedSet {
            canonical(parts.flatMap { if case .intersection(let inner) = $0 { inner } else { [$0] } }, IndexedSet.intersection)
        }

        private static func canonical(_ parts: [IndexedSet], _ make: ([IndexedSet]) -> IndexedSet) -> IndexedSet {
            let unique = Array(Set(parts)).sorted { String(describing: $0) < String(describing: $1) }
            return unique.count == 1 ? unique[0] : make(unique)
        }
    }

    /// A set of items that holds every match (a superset: members are still checked against
    /// the whole expression unless `isDecided`), from `==` and `in [...]` tests on `indexed` attributes joined by
    /// `and` / `or`. Nil when the expression does not restrict to indexed values: a `not`, a
    /// range, or an `or` with an unindexed side may match items outside any value's set.
    public func indexedSet(over indexed: Set<String>) -> IndexedSet? {
        Self.indexedSet(root, indexed)
    }

    static func indexedSet(_ node: Node, _ indexed: Set<String>) -> IndexedSet? {
        guard case .binary(let op, let a, let b) = node else { return nil }
        switch op {
        case .and:
            let sides = [indexedSet(a, indexed), indexedSet(b, indexed)].compactMap { $0 }
            return sides.isEmpty ? nil : .allOf(sides)
        case .or:
            guard let x = indexedSet(a, indexed), let y = indexedSet(b, indexed) else { return nil }
            return .anyOf([x, y])
        case .equal:
            if case .selector(let name) = a, indexed.contains(name) { return valueSet(name, b) }
            if case .selector(let name) = b, indexed.contains(name) { return valueSet(name, a) }
            return nil
        case .in:
            guard case .selector(let name) = a, indexed.contains(name), case .list(let items) = b else { return nil }
            let sets = items.map { valueSet(name, $0) }
            guard !sets.contains(where: { $0 == nil }) else { return nil }
            return .anyOf(sets.compactMap { $0 })
        default:
            return nil
        }
    }

    /// The index entries a literal can equal. Attribute indexes hold values as text
    /// (`Attributes.indexedTexts`): numbers as integers when whole, booleans as true/false,
    /// which the filter language treats as 1 and 0, and strings that read as numbers under that
    /// number's text too. A string literal that reads as a number equals what that number
    /// equals ("1" equals true), besides its own text.
    static func valueSet(_ attribute: String, _ literal: Node) -> IndexedSet? {
        valueTexts(literal).map { .anyOf($0.map { .value(attribute: attribute, text: $0) }) }
    }

    static func valueTexts(_ literal: Node) -> [String]? {
        switch literal {
        case .string(let s):
            guard let n = Double(s), !n.isNaN else { return [s] }
            return Array(Set([s] + valueTexts(.number(n))!)).sorted()
        case .number(let n):
            var texts = [Attributes.numberText(n)]
            if n == 1 { texts.append("true") }
            if n == 0 { texts.append("false") }
            return texts
        default:
            return nil
        }
    }

    /// True when every item of `indexedSet` matches the whole expression, so no hit needs its
    /// attributes checked: only `==` / `in` over indexed attributes joined by and / or, each
    /// test exact for the kinds of value its attribute has held (`kinds`, AttributeKinds):
    ///   - never an array (the table lists each element; `==` on an array is false);
    ///   - a string literal: if strings were held, not one that reads as a number (the string
    ///     "5.0" is listed under "5" and is not the string "5"); if booleans, not "true" /
    ///     "false"; never one over the key limit (its key is a digest, CollectionStore);
    ///   - a number literal 1 or 0: no strings held (the string "true" is listed, not equal).
    public func isDecided(over indexed: Set<String>, kinds: (String) -> AttributeKinds) -> Bool {
        Self.isDecided(root, indexed, kinds)
    }

    static func isDecided(_ node: Node, _ indexed: Set<String>, _ kinds: (String) -> AttributeKinds) -> Bool {
        guard case .binary(let op, let a, let b) = node else { return false }
        switch op {
        case .and, .or:
            return isDecided(a, indexed, kinds) && isDecided(b, indexed, kinds)
        case .equal:
            if case .selector(let name) = a, indexed.contains(name) { return isExact(kinds(name), b) }
            if case .selector(let name) = b, indexed.contains(name) { return isExact(kinds(name), a) }
            return false
        case .in:
            guard case .selector(let name) = a, indexed.contains(name), case .list(let items) = b else { return false }
            return items.allSatisfy { isExact(kinds(name), $0) }
        default:
            return false
        }
    }

    /// Whether the items listed under a literal's texts are exactly those equal to it.
    static func isExact(_ kinds: AttributeKinds, _ literal: Node) -> Bool {
        guard !kinds.contains(.list), let texts = valueTexts(literal) else { return false }
        switch literal {
        case .string(let s):
            if s.utf8.count > CollectionStore.maxValueBytes { return false }
            if kinds.contains(.string), texts.contains(where: { $0 != s }) || Double(s) != nil { return false }
            return !(kinds.contains(.bool) && (s == "true" || s == "false"))
        case .number:
            return !(kinds.contains(.string) && (texts.contains("true") || texts.contains("false")))
        default:
            return false
        }
    }
}
