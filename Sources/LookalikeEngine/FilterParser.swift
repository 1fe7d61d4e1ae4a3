// FilterParser: FILTER source text to a FilterExpression tree: a tokenizer, then precedence
// climbing (BinaryOperator.precedence; `**` right-associative, the rest left), with the depth
// bound of FilterLimits checked as the tree grows, before any deep tree exists.
// Errors: EngineError.invalidArgument("syntax error in FILTER expression: ...") saying what
// was found where. Threads: pure functions and a parser value local to one call.
import Foundation

extension FilterExpression {
    enum Token: Equatable {
        case number(Double)
        case string(String)
        case selector(String)
        case op(String)
    }

    static func tokenize(_ source: String) throws -> [Token] {
        let chars = Array(source.unicodeScalars)
        var tokens: [Token] = []
        var i = 0
        func syntax(_ why: String) -> EngineError {
            EngineError.invalidArgument("syntax error in FILTER expression: \(why)")
        }
        while i < chars.count {
            let c = chars[i]
            if c == " " || c == "\t" || c == "\n" || c == "\r" { i += 1; continue }
            if c == "." && i + 1 < chars.count && (CharacterSet.letters.contains(chars[i + 1]) || chars[i + 1] == "_") {
                var j = i + 1
                while j < chars.count, CharacterSet.alphanumerics.contains(chars[j]) || chars[j] == "_" || chars[j] == "-" { j += 1 }
                tokens.append(.selector(String(String.UnicodeScalarView(chars[(i + 1)..<j]))))
                i = j
            } else if CharacterSet.decimalDigits.contains(c) || (c == "." && i + 1 < chars.count && CharacterSet.decimalDigits.contains(chars[i + 1])) {
                var j = i
                while j < chars.count, CharacterSet.decimalDigits.contains(chars[j]) || chars[j] == "." || chars[j] == "e" || chars[j] == "E"
                        || ((chars[j] == "-" || chars[j] == "+") && j > i && (chars[j - 1] == "e" || chars[j - 1] == "E")) { j += 1 }
                let text = String(String.UnicodeScalarView(chars[i..<j]))
                guard let n = Double(text) else { throw syntax("bad number '\(text)'") }
                tokens.append(.number(n))
                i = j
            } else if c == "\"" || c == "'" {
                var j = i + 1
                var text = String.UnicodeScalarView()
                while j < chars.count, chars[j] != c {
                    if chars[j] == "\\", j + 1 < chars.count { j += 1 }
                    text.append(chars[j])
                    j += 1
                }
                guard j < chars.count else { throw syntax("unterminated string") }
                tokens.append(.string(String(text)))
                i = j + 1
            } else if CharacterSet.letters.contains(c) {
                var j = i
                while j < chars.count, CharacterSet.letters.contains(chars[j]) { j += 1 }
                let word = String(String.UnicodeScalarView(chars[i..<j])).lowercased()
                switch word {
                case "and": tokens.append(.op("and"))
                case "or": tokens.append(.op("or"))
                case "not": tokens.append(.op("!"))
                case "in": tokens.append(.op("in"))
                case "true": tokens.append(.number(1))
                case "false": tokens.append(.number(0))
                default: throw syntax("unknown word '\(word)' (selectors start with a dot: .\(word))")
                }
                i = j
            } else {
                let two = i + 1 < chars.count ? String(String.UnicodeScalarView([c, chars[i + 1]])) : ""
                if ["**", "==", "!=", "<=", ">=", "&&", "||"].contains(two) {
                    tokens.append(.op(two == "&&" ? "and" : two == "||" ? "or" : two))
                    i += 2
                } else if "+-*/%<>!()[],".unicodeScalars.contains(c) {
                    tokens.append(.op(String(c)))
                    i += 1
                } else {
                    throw syntax("unexpected character '\(c)'")
                }
            }
        }
        return tokens
    }

    struct Parser {
        let tokens: [Token]
        let maxDepth: Int
        var position = 0
        /// Calls of parseExpression in progress (nesting: parentheses, lists, unary chains).
        var nesting = 0

        var atEnd: Bool { position >= tokens.count }
        var peek: String? {
            guard !atEnd else { return nil }
            switch tokens[position] {
            case .op(let o): return o
            case .number(let n): return String(n)
            case .string(let s): return "\"\(s)\""
            case .selector(let s): return "." + s
            }
        }

        func syntax(_ why: String) -> EngineError {
            EngineError.invalidArgument("syntax error in FILTER expression: \(why)")
        }

        /// A parsed subtree and its height (1 for a leaf).
        typealias Parsed = (node: Node, height: Int)

        func checked(_ height: Int) throws -> Int {
            guard height <= maxDepth, nesting <= maxDepth else {
                throw EngineError.invalidArgument("the FILTER expression is nested deeper than \(maxDepth) levels: flatten it (e.g. .x in [1, 2, 3] instead of a chain of or)")
            }
            return height
        }

        mutating func parseExpression(_ minPrecedence: Int) throws -> Parsed {
            nesting += 1
            defer { nesting -= 1 }
            _ = try checked(0)
            var left = try parseUnary()
            while !atEnd, case .op(let text) = tokens[position], let op = BinaryOperator(rawValue: text), op.precedence > minPrecedence {
                position += 1
                // ** is right-associative; the rest associate to the left.
                let right = try parseExpression(op == .power ? op.precedence - 1 : op.precedence)
                left = (.binary(op, left.node, right.node), try checked(1 + max(left.height, right.height)))
            }
            return left
        }

        mutating func parseUnary() throws -> Parsed {
            guard !atEnd else { throw syntax("unexpected end") }
            if case .op(let op) = tokens[position], op == "!" || op == "-" {
                position += 1
                let operand = try parseExpression(op == "!" ? BinaryOperator.in.precedence : BinaryOperator.multiply.precedence)
                return (.unary(op == "!" ? .not : .negate, operand.node), try checked(1 + operand.height))
            }
            return try parsePrimary()
        }

        mutating func parsePrimary() throws -> Parsed {
            guard !atEnd else { throw syntax("unexpected end") }
            let token = tokens[position]
            position += 1
            switch token {
            case .number(let n): return (.number(n), 1)
            case .string(let s): return (.string(s), 1)
            case .selector(let s): return (.selector(s), 1)
            case .op("("):
                let inner = try parseExpression(0)
                try expect(")")
                return inner
            case .op("["):
                var items: [Node] = []
                var height = 0
                if !atEnd, tokens[position] == .op("]") { position += 1; return (.list(items), 1) }
                while true {
                    let item = try parseExpression(0)
                    items.append(item.node)
                    height = max(height, item.height)
                    guard !atEnd else { throw syntax("unterminated list") }
                    if tokens[position] == .op(",") { position += 1; continue }
                    try expect("]")
                    return (.list(items), try checked(1 + height))
                }
            case .op(let o): throw syntax("unexpected '\(o)'")
            }
        }

        mutating func expect(_ op: String) throws {
            guard !atEnd, tokens[position] == .op(op) else { throw syntax("expected '\(op)'") }
            position += 1
        }
    }
}
