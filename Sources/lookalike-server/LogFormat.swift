// LogFormat: the server's swift-log handler, one line per event on stderr, in the format of
// --log-format: `text` (swift-log's StreamLogHandler layout), `logfmt` (key=value pairs) or
// `json` (one JSON object per line). Every line has the time (ISO 8601, UTC), the level,
// the logger's label and the message; the event's metadata follows, keys sorted.
// Invariants: one event is one line (newlines inside values are escaped in every format);
// lines of concurrent events never interleave (one lock around each write).
// Threads: any; `log` takes the lock only to write.
import Foundation
import Logging
import Synchronization

enum LogFormat: String, CaseIterable {
    case text, logfmt, json
}

struct LineLogHandler: LogHandler {
    let label: String
    let format: LogFormat
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    private static let output = Mutex<Void>(())

    init(label: String, format: LogFormat, level: Logger.Level) {
        self.label = label
        self.format = format
        logLevel = level
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(level: Logger.Level, message: Logger.Message, metadata extra: Logger.Metadata?, source: String,
             file: String, function: String, line: UInt) {
        let fields = metadata.merging(extra ?? [:]) { _, new in new }
            .map { ($0.key, Self.flatten($0.value)) }.sorted { $0.0 < $1.0 }
        let text = render(time: Self.timestamp(), level: level, message: "\(message)", fields: fields) + "\n"
        Self.output.withLock { _ in FileHandle.standardError.write(Data(text.utf8)) }
    }

    func render(time: String, level: Logger.Level, message: String, fields: [(String, String)]) -> String {
        switch format {
        case .text:
            let meta = fields.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
            return "\(time) \(level) \(label) :\(meta.isEmpty ? "" : " " + meta) \(message)".replacingOccurrences(of: "\n", with: "\\n")
        case .logfmt:
            let pairs = [("time", time), ("level", "\(level)"), ("logger", label), ("msg", message)] + fields
            return pairs.map { "\(Self.logfmtKey($0.0))=\(Self.logfmtValue($0.1))" }.joined(separator: " ")
        case .json:
            var object: [String: String] = ["time": time, "level": "\(level)", "logger": label, "msg": message]
            for (k, v) in fields where object[k] == nil { object[k] = v }
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
            return String(decoding: data, as: UTF8.self)
        }
    }

    static func flatten(_ v: Logger.Metadata.Value) -> String {
        switch v {
        case .string(let s): return s
        case .stringConvertible(let c): return c.description
        case .array(let a): return "[" + a.map(flatten).joined(separator: ", ") + "]"
        case .dictionary(let d): return "{" + d.sorted { $0.key < $1.key }.map { "\($0.key): \(flatten($0.value))" }.joined(separator: ", ") + "}"
        }
    }

    static func logfmtKey(_ k: String) -> String {
        String(k.map { $0.isWhitespace || $0 == "=" || $0 == "\"" ? "_" : $0 })
    }

    /// Bare when safe, else quoted with \" \\ \n escaped (as logfmt parsers expect).
    static func logfmtValue(_ v: String) -> String {
        if !v.isEmpty, !v.contains(where: { $0.isWhitespace || $0 == "=" || $0 == "\"" || $0 == "\\" }) { return v }
        let escaped = v.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n").replacingOccurrences(of: "\r", with: "\\r")
        return "\"" + escaped + "\""
    }

    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var t = now.tv_sec, parts = tm()
        gmtime_r(&t, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
                      Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(now.tv_nsec / 1_000_000))
    }
}
