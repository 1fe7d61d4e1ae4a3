// Glob: Redis's patterns for KEYS and SCAN MATCH: `*`, `?`, `[abc]`, `[^a-z]`, and `\` escapes,
// matched against a name's bytes (names are byte strings, see Names.swift).
//
// Invariant: matching takes O(pattern × name) steps, whatever the pattern. A `*` is matched by
// the classic greedy walk that only ever returns to the most recent `*`, never by recursion:
// the recursive form backtracks exponentially on patterns like `*a*a*a…*b`, and ran on the
// event loop (issue 17).
// Threads: a compiled pattern is an immutable value; KEYS and SCAN run it on the search pool.
import LookalikeEngine

struct Glob: Sendable {
    enum Token: Sendable {
        case star
        case any
        case byte(UInt8)
        case set(ranges: [ClosedRange<UInt8>], negated: Bool)

        func accepts(_ c: UInt8) -> Bool {
            switch self {
            case .star, .any: return true
            case .byte(let b): return b == c
            case .set(let ranges, let negated): return ranges.contains { $0.contains(c) } != negated
            }
        }
    }

    let tokens: [Token]

    init(_ pattern: [UInt8]) { tokens = Self.compile(pattern) }

    /// The names that match, in the order given.
    func filter(_ names: [String]) -> [String] {
        names.filter { matches(Names.bytes($0)) }
    }

    func matches(_ text: [UInt8]) -> Bool {
        var p = 0, t = 0
        var star = -1, starText = 0  // the last `*` seen, and where its match now ends
        while t < text.count {
            if p < tokens.count, case .star = tokens[p] {
                star = p; starText = t; p += 1
            } else if p < tokens.count, tokens[p].accepts(text[t]) {
                p += 1; t += 1
            } else if star >= 0 {
                // Let the last `*` take one more byte and retry what follows it.
                starText += 1; t = starText; p = star + 1
            } else {
                return false
            }
        }
        while p < tokens.count, case .star = tokens[p] { p += 1 }
        return p == tokens.count
    }

    static func compile(_ pattern: [UInt8]) -> [Token] {
        var tokens: [Token] = []
        var i = 0
        while i < pattern.count {
            let c = pattern[i]
            switch c {
            case UInt8(ascii: "*"):
                if case .star? = tokens.last {} else { tokens.append(.star) }
                i += 1
            case UInt8(ascii: "?"):
                tokens.append(.any)
                i += 1
            case UInt8(ascii: "["):
                let (token, next) = compileSet(pattern, from: i + 1)
                tokens.append(token)
                i = next
            case UInt8(ascii: "\\") where i + 1 < pattern.count:
                tokens.append(.byte(pattern[i + 1]))
                i += 2
            default:
                tokens.append(.byte(c))
                i += 1
            }
        }
        return tokens
    }

    /// A `[...]` class starting after its `[`; an unterminated class ends with the pattern, as
    /// in Redis. Returns the token and the index after the closing `]`.
    static func compileSet(_ p: [UInt8], from start: Int) -> (Token, Int) {
        var i = start
        let negated = i < p.count && p[i] == UInt8(ascii: "^")
        if negated { i += 1 }
        var ranges: [ClosedRange<UInt8>] = []
        while i < p.count, p[i] != UInt8(ascii: "]") {
            if p[i] == UInt8(ascii: "\\"), i + 1 < p.count {
                ranges.append(p[i + 1]...p[i + 1])
                i += 2
            } else if i + 2 < p.count, p[i + 1] == UInt8(ascii: "-"), p[i + 2] != UInt8(ascii: "]") {
                ranges.append(min(p[i], p[i + 2])...max(p[i], p[i + 2]))
                i += 3
            } else {
                ranges.append(p[i]...p[i])
                i += 1
            }
        }
        return (.set(ranges: ranges, negated: negated), min(i + 1, p.count))
    }
}
