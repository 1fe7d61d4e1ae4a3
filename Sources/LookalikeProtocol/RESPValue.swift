// RESPValue: a reply, and how it is written in RESP2 or RESP3.
//
// Commands build RESP3-shaped values (maps, doubles, booleans, null); the encoder lowers them
// for RESP2 connections exactly as Redis does: a map becomes a flat array of key, value; a
// double a bulk string; a boolean the integer 1 or 0; null the null bulk string.
// Threads: value type; encoding runs on the connection's event loop.
import LookalikeEngine
import NIOCore

public enum RESPValue: Sendable, Equatable {
    case simple(String)
    case error(String)
    case integer(Int)
    case bulk([UInt8])
    case null
    case array([RESPValue])
    case map([(RESPValue, RESPValue)])
    case double(Double)
    case bool(Bool)
    /// Out-of-band data (pub/sub messages): RESP3's push type, an array in RESP2.
    case push([RESPValue])
    /// Several replies to one command, back to back (SUBSCRIBE a b answers once per channel).
    case sequence([RESPValue])

    /// A bulk string of the bytes `s` carries (Names.swift: the inverse of Invocation.string).
    public static func string(_ s: String) -> RESPValue { .bulk(Names.bytes(s)) }
    public static let ok = RESPValue.simple("OK")

    public static func == (a: RESPValue, b: RESPValue) -> Bool {
        switch (a, b) {
        case (.simple(let x), .simple(let y)), (.error(let x), .error(let y)): return x == y
        case (.integer(let x), .integer(let y)): return x == y
        case (.bulk(let x), .bulk(let y)): return x == y
        case (.null, .null): return true
        case (.array(let x), .array(let y)): return x == y
        case (.map(let x), .map(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        case (.double(let x), .double(let y)): return x == y
        case (.bool(let x), .bool(let y)): return x == y
        case (.push(let x), .push(let y)), (.sequence(let x), .sequence(let y)): return x == y
        default: return false
        }
    }

    /// Writes the value for a connection speaking RESP `version` (2 or 3).
    public func write(to buffer: inout ByteBuffer, version: Int) {
        switch self {
        case .simple(let s):
            buffer.writeStaticString("+")
            buffer.writeString(Self.oneLine(s))
            buffer.writeStaticString("\r\n")
        case .error(let s):
            buffer.writeStaticString("-")
            buffer.writeString(Self.oneLine(s))
            buffer.writeStaticString("\r\n")
        case .integer(let n):
            buffer.writeStaticString(":")
            buffer.writeString(String(n))
            buffer.writeStaticString("\r\n")
        case .bulk(let bytes):
            buffer.writeStaticString("$")
            buffer.writeString(String(bytes.count))
            buffer.writeStaticString("\r\n")
            buffer.writeBytes(bytes)
            buffer.writeStaticString("\r\n")
        case .null:
            buffer.writeStaticString(version >= 3 ? "_\r\n" : "$-1\r\n")
        case .array(let items):
            buffer.writeStaticString("*")
            buffer.writeString(String(items.count))
            buffer.writeStaticString("\r\n")
            for item in items { item.write(to: &buffer, version: version) }
        case .map(let pairs):
            buffer.writeString(version >= 3 ? "%\(pairs.count)\r\n" : "*\(pairs.count * 2)\r\n")
            for (k, v) in pairs {
                k.write(to: &buffer, version: version)
                v.write(to: &buffer, version: version)
            }
        case .double(let d):
            if version >= 3 {
                buffer.writeString(",\(Self.format(d))\r\n")
            } else {
                RESPValue.string(Self.format(d)).write(to: &buffer, version: version)
            }
        case .bool(let b):
            buffer.writeStaticString(version >= 3 ? (b ? "#t\r\n" : "#f\r\n") : (b ? ":1\r\n" : ":0\r\n"))
        case .push(let items):
            buffer.writeString((version >= 3 ? ">" : "*") + "\(items.count)\r\n")
            for item in items { item.write(to: &buffer, version: version) }
        case .sequence(let replies):
            for r in replies { r.write(to: &buffer, version: version) }
        }
    }

    /// Doubles as Redis prints them: shortest round-trip form, integers without ".0".
    public static func format(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d > 0 ? "inf" : "-inf" }
        if d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
        return "\(d)"
    }

    /// Simple strings and errors may not hold line breaks: one echoing user input could
    /// otherwise forge a reply. Checked per scalar: "\r\n" is a single Swift Character.
    static func oneLine(_ s: String) -> String {
        guard s.unicodeScalars.contains(where: { $0 == "\r" || $0 == "\n" }) else { return s }
        return String(String.UnicodeScalarView(s.unicodeScalars.map { $0 == "\r" || $0 == "\n" ? " " : $0 }))
    }
}
