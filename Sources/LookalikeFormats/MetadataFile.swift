// MetadataFile: item metadata, one record per line, read as a stream.
//
//   jsonl    one JSON object per line
//   amazon   the Amazon product metadata file: one Python dict literal per line (single
//            quotes, nested lists and dicts, True/False/None), parsed by PythonLiteral, never
//            evaluated
//
// Records come back as JSON-compatible dictionaries with their 1-based line number; a broken
// line is an error for that line only, so callers can report it and go on. A record is a line
// that is not blank, parsed or not: `countRecords` and `next` share that rule, so a count taken
// before reading is what reading yields.
// Threads: one reader per instance.
import Foundation

public enum MetadataFormat: String, Sendable, CaseIterable {
    case jsonl, amazon

    public static func guess(path: String) -> MetadataFormat {
        let lower = path.lowercased()
        return lower.hasSuffix(".json") || lower.hasSuffix(".jsonl") || lower.hasSuffix(".ndjson") ? .jsonl : .amazon
    }
}

public final class MetadataFile {
    public let path: String
    public let format: MetadataFormat
    private let data: Data
    private var offset: Int
    /// The 1-based number of the last line read.
    public private(set) var line = 0

    public init(path: String, format: MetadataFormat? = nil) throws {
        do { data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) } catch {
            throw FormatError("cannot read \(path): \(error.localizedDescription)")
        }
        self.path = path
        self.format = format ?? MetadataFormat.guess(path: path)
        offset = data.startIndex
    }

    /// The next non-empty line's record, or nil at the end. A line that does not parse yields
    /// `.failure` with the reason; reading goes on with the next line.
    public func next() -> Result<[String: Any], FormatError>? {
        while offset < data.endIndex {
            let end = data[offset...].firstIndex(of: UInt8(ascii: "\n")) ?? data.endIndex
            let bytes = data[offset..<end]
            offset = end < data.endIndex ? end + 1 : end
            line += 1
            let text = Self.trimmed(bytes)
            if text.isEmpty { continue }
            return parse(text).mapError { FormatError("\(path) line \(line): \($0.description)") }
        }
        return nil
    }

    /// How many records the whole file holds (what `next` yields from the start, broken lines
    /// included), without parsing them and without moving the reader: one pass over the bytes.
    public func countRecords() -> Int {
        data.withUnsafeBytes { (all: UnsafeRawBufferPointer) -> Int in
            var records = 0, start = 0
            while start < all.count {
                let rest = UnsafeRawBufferPointer(rebasing: all[start...])
                let end = rest.firstIndex(of: UInt8(ascii: "\n")).map { start + $0 } ?? all.count
                if !Self.isBlank(UnsafeRawBufferPointer(rebasing: all[start..<end])) { records += 1 }
                start = end + 1
            }
            return records
        }
    }

    /// A line's text without surrounding white space (Unicode's, as for any text).
    static func trimmed<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> String {
        String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Whether a line holds no record. ASCII lines, nearly all of them, are decided byte by
    /// byte; a line with other bytes and no ASCII text is decided as `next` decides it.
    static func isBlank(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var ascii = true
        for b in bytes {
            if b >= 0x80 { ascii = false; continue }
            if b != 0x20 && (b < 0x09 || b > 0x0D) { return false }  // not space, \t \n \v \f \r
        }
        return ascii || trimmed(bytes).isEmpty
    }

    func parse(_ text: String) -> Result<[String: Any], FormatError> {
        switch format {
        case .jsonl:
            guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) else {
                return .failure(FormatError("not valid JSON"))
            }
            guard let dict = object as? [String: Any] else { return .failure(FormatError("not a JSON object")) }
            return .success(dict)
        case .amazon:
            do {
                guard let dict = try PythonLiteral.parse(text) as? [String: Any] else {
                    return .failure(FormatError("not a dict"))
                }
                return .success(Self.amazonAttributes(dict))
            } catch let e as FormatError {
                return .failure(e)
            } catch {
                return .failure(FormatError("\(error)"))
            }
        }
    }

    /// Amazon records name their categories as paths (`'categories': [['Clothing', 'Shoes']]`);
    /// the first path's top level becomes `category`, the attribute the planner indexes.
    static func amazonAttributes(_ record: [String: Any]) -> [String: Any] {
        var out = record
        if out["category"] == nil, let paths = record["categories"] as? [Any],
           let first = paths.first as? [Any], let top = first.first as? String {
            out["category"] = top
        }
        return out
    }
}

/// A parser for Python literals as `repr()` writes them: dict, list, tuple, str (single or
/// double quotes, escapes), int, float, True, False, None. Values come back JSON-compatible
/// (tuples as arrays, None as NSNull).
public enum PythonLiteral {
    public static func parse(_ text: String) throws -> Any {
        var p = Parser(chars: Array(text.unicodeScalars))
        let v = try p.value()
        p.skipSpace()
        guard p.i == p.chars.count else { throw FormatError("unexpected text at column \(p.i + 1)") }
        return v
    }

    struct Parser {
        let chars: [Unicode.Scalar]
        var i = 0
        var depth = 0

        mutating func skipSpace() {
            while i < chars.count, chars[i] == " " || chars[i] == "\t" || chars[i] == "\r" || chars[i] == "\n" { i += 1 }
        }

        func fail(_ why: String) -> FormatError { FormatError("\(why) at column \(i + 1)") }

        mutating func value() throws -> Any {
            skipSpace()
            guard i < chars.count else { throw fail("unexpected end") }
            depth += 1
            defer { depth -= 1 }
            guard depth < 256 else { throw fail("nested too deep") }
            switch chars[i] {
            case "{": return try dict()
            case "[": return try sequence(close: "]")
            case "(": return try sequence(close: ")")
            case "'", "\"": return try string()
            default: return try bare()
            }
        }

        mutating func dict() throws -> [String: Any] {
            i += 1
            var out: [String: Any] = [:]
            while true {
                skipSpace()
                guard i < chars.count else { throw fail("unclosed dict") }
                if chars[i] == "}" { i += 1; return out }
                let key = try value()
                skipSpace()
                guard i < chars.count, chars[i] == ":" else { throw fail("expected ':'") }
                i += 1
                let v = try value()
                let name: String
                switch key {
                case let s as String: name = s
                case let n as NSNumber: name = n.stringValue
                default: throw fail("dict key is not a string or number")
                }
                out[name] = v
                skipSpace()
                guard i < chars.count else { throw fail("unclosed dict") }
                if chars[i] == "," { i += 1 } else if chars[i] != "}" { throw fail("expected ',' or '}'") }
            }
        }

        mutating func sequence(close: Unicode.Scalar) throws -> [Any] {
            i += 1
            var out: [Any] = []
            while true {
                skipSpace()
                guard i < chars.count else { throw fail("unclosed list") }
                if chars[i] == close { i += 1; return out }
                out.append(try value())
                skipSpace()
                guard i < chars.count else { throw fail("unclosed list") }
                if chars[i] == "," { i += 1 } else if chars[i] != close { throw fail("expected ',' or '\(close)'") }
            }
        }

        mutating func string() throws -> String {
            let quote = chars[i]
            i += 1
            var out = String.UnicodeScalarView()
            while i < chars.count {
                let c = chars[i]
                i += 1
                if c == quote { return String(out) }
                guard c == "\\" else { out.append(c); continue }
                guard i < chars.count else { break }
                let e = chars[i]
                i += 1
                switch e {
                case "n": out.append("\n")
                case "t": out.append("\t")
                case "r": out.append("\r")
                case "0": out.append("\0")
                case "x": out.append(try hexScalar(2))
                case "u": out.append(try hexScalar(4))
                case "U": out.append(try hexScalar(8))
                default: out.append(e)  // \\ \' \" and unknown escapes keep the character
                }
            }
            throw fail("unclosed string")
        }

        mutating func hexScalar(_ digits: Int) throws -> Unicode.Scalar {
            guard i + digits <= chars.count,
                  let n = UInt32(String(String.UnicodeScalarView(chars[i..<(i + digits)])), radix: 16),
                  let s = Unicode.Scalar(n) else { throw fail("bad escape") }
            i += digits
            return s
        }

        mutating func bare() throws -> Any {
            let start = i
            while i < chars.count, !",:]})} \t\r\n".unicodeScalars.contains(chars[i]) { i += 1 }
            let word = String(String.UnicodeScalarView(chars[start..<i]))
            switch word {
            case "True": return true
            case "False": return false
            case "None": return NSNull()
            default:
                if let n = Int(word) { return n }
                if let d = Double(word), d.isFinite { return d }
                throw FormatError("unexpected '\(word.prefix(20))' at column \(start + 1)")
            }
        }
    }
}
