// ConfigFile: the --config file, in Redis's format: one `directive value` per line, `#` starts
// a comment line, values may be quoted ("…" with \" \\ \n \t \xHH escapes, or '…').
//
// Owns: reading the file into directives (with their line numbers), the names it accepts,
// and CONFIG REWRITE's in-place update of it.
// Names: every lookalike-server flag without its dashes (`max-clients 100`, `data /srv/x`),
// and Redis's spelling of the directives a flag mirrors (`redisDirectives`: `maxclients`,
// `bind`, `dir`, `loglevel`, ...). Names are case-insensitive, as Redis's.
// Invariants: a file that does not parse changes nothing (the server does not start, and the
// message names the line); a rewrite keeps every comment, blank line and directive order,
// replaces the first line of each changed setting, drops its repeats, appends the settings
// the file did not name, and replaces the file atomically (a crash leaves the old or the new).
// Threads: any; the caller serialises rewrites (CONFIG runs on one event loop at a time per
// connection; two rewrites at once both write complete files).
import Foundation

public struct ConfigDirective: Sendable, Equatable {
    public let line: Int
    /// As written in the file, lowercased.
    public let name: String
    /// The lookalike-server flag it sets, without dashes.
    public let flag: String
    public let value: String
}

public struct ConfigFileError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public enum ConfigFile {
    /// Redis directives that a flag of ours mirrors, and that flag.
    public static let redisDirectives: [String: String] = [
        "bind": "host", "dir": "data", "maxclients": "max-clients", "loglevel": "log-level",
    ]

    /// The flag a directive (or a CONFIG SET name) stands for.
    public static func flag(for name: String) -> String {
        let n = name.lowercased()
        if let f = redisDirectives[n] { return f }
        return n.hasPrefix("lookalike-") ? String(n.dropFirst("lookalike-".count)) : n
    }

    /// Reads the file's directives; throws with the path and line of the first bad one.
    public static func read(_ path: String) throws -> [ConfigDirective] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ConfigFileError("--config \(path): cannot read the file")
        }
        var out: [ConfigDirective] = []
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let words: [String]
            do { words = try split(String(raw)) } catch let e as ConfigFileError {
                throw ConfigFileError("\(path) line \(i + 1): \(e.description)")
            }
            guard let first = words.first, !first.hasPrefix("#") else { continue }
            let name = first.lowercased()
            guard words.count == 2 else {
                throw ConfigFileError("\(path) line \(i + 1): '\(name)' takes one value, found \(words.count - 1) (quote a value with spaces)")
            }
            guard name != "config" else { throw ConfigFileError("\(path) line \(i + 1): a config file cannot name another") }
            out.append(ConfigDirective(line: i + 1, name: name, flag: flag(for: name), value: words[1]))
        }
        return out
    }

    /// A line's words, as Redis's sdssplitargs splits them. Empty for a blank line.
    static func split(_ line: String) throws -> [String] {
        var words: [String] = []
        var chars = Array(line.trimmingCharacters(in: .whitespacesAndNewlines)), i = 0
        if chars.first == "#" { return ["#"] }
        while i < chars.count {
            while i < chars.count, chars[i].isWhitespace { i += 1 }
            guard i < chars.count else { break }
            var word = ""
            if chars[i] == "\"" || chars[i] == "'" {
                let quote = chars[i]
                i += 1
                var closed = false
                while i < chars.count {
                    let c = chars[i]
                    if c == quote { closed = true; i += 1; break }
                    if c == "\\", i + 1 < chars.count {
                        let n = chars[i + 1]
                        i += 2
                        if quote == "'" { word.append(n == "'" ? "'" : "\\\(n)"); continue }
                        switch n {
                        case "n": word.append("\n")
                        case "t": word.append("\t")
                        case "r": word.append("\r")
                        case "x" where i + 1 < chars.count:
                            guard let v = UInt8(String(chars[i...i + 1]), radix: 16) else { throw ConfigFileError("bad \\x escape") }
                            word.unicodeScalars.append(UnicodeScalar(v))
                            i += 2
                        default: word.append(n)
                        }
                        continue
                    }
                    word.append(c)
                    i += 1
                }
                guard closed else { throw ConfigFileError("unbalanced quotes") }
                guard i >= chars.count || chars[i].isWhitespace else { throw ConfigFileError("a closing quote must be followed by a space") }
            } else {
                while i < chars.count, !chars[i].isWhitespace { word.append(chars[i]); i += 1 }
            }
            words.append(word)
        }
        chars.removeAll()
        return words
    }

    /// A value as the file writes it: bare when it is one plain word, else double-quoted.
    static func quoted(_ value: String) -> String {
        let plain = !value.isEmpty && !value.contains { $0.isWhitespace || $0 == "\"" || $0 == "'" || $0 == "\\" || $0 == "#" }
        if plain { return value }
        var out = "\""
        for c in value {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default: out.append(c)
            }
        }
        return out + "\""
    }

    /// CONFIG REWRITE: sets each of `values` (flag name -> value) in the file at `path`.
    public static func rewrite(_ path: String, values: [(flag: String, value: String)]) throws {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        let wanted = Dictionary(values.map { ($0.flag, $0.value) }, uniquingKeysWith: { _, last in last })
        var written = Set<String>()
        var out: [String] = []
        for line in lines {
            guard let words = try? split(line), let first = words.first, !first.hasPrefix("#"),
                  let value = wanted[flag(for: first)] else {
                out.append(line)
                continue
            }
            let f = flag(for: first)
            if written.insert(f).inserted { out.append("\(first) \(quoted(value))") }  // repeats dropped
        }
        for (f, value) in values where !written.contains(f) {
            out.append("\(f) \(quoted(value))")
            written.insert(f)
        }
        let temporary = path + ".rewrite-tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: Data((out.joined(separator: "\n") + "\n").utf8)) else {
            throw ConfigFileError("cannot write \(temporary)")
        }
        guard rename(temporary, path) == 0 else {
            try? FileManager.default.removeItem(atPath: temporary)
            throw ConfigFileError("cannot replace \(path): \(String(cString: strerror(errno)))")
        }
    }
}
