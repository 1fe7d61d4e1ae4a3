// StreamEntry: one change in the replication stream, and its bytes.
//
// An entry is a RESP array of bulk strings (readable with redis-cli's --replica dump or a
// hex viewer), first element the operation:
//   C <definition JSON>                        a collection was created
//   U <collection> <key> <vector> K|S|N <json> an upsert: vector as little-endian float32 (as
//                                              stored, after any REDUCE projection); attributes
//                                              kept (K), set (S) or removed (N)
//   R <collection> <key>                       an element was removed
//   A <collection> <key> S|N <json>            attributes set or removed
//   D <collection>                             the collection was dropped
// Only our replicas read it; its offsets count these bytes.
// Threads: pure functions.
import Foundation

public enum StreamEntry: Sendable {
    case create(CollectionDefinition)
    case write(collection: String, WriteRequest)

    public func encoded() -> [UInt8] {
        switch self {
        case .create(let d):
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            return Self.array([Array("C".utf8), Array((try? encoder.encode(d)) ?? Data())])
        case .write(let c, let request):
            let name = Names.bytes(c)
            switch request {
            case .upsert(let key, let vector, let attributes):
                let (mode, json) = Self.attributeWords(attributes)
                let floats = vector.withUnsafeBufferPointer { buf in
                    buf.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian) { Array($0) } }
                }
                return Self.array([Array("U".utf8), name, Names.bytes(key), floats, mode, json])
            case .remove(let key):
                return Self.array([Array("R".utf8), name, Names.bytes(key)])
            case .setAttributes(let key, let attributes):
                let (mode, json) = Self.attributeWords(.set(attributes))
                return Self.array([Array("A".utf8), name, Names.bytes(key), mode, json])
            case .dropCollection:
                return Self.array([Array("D".utf8), name])
            }
        }
    }

    private static func attributeWords(_ a: AttributeUpdate) -> ([UInt8], [UInt8]) {
        switch a {
        case .keep: return (Array("K".utf8), [])
        case .set(nil): return (Array("N".utf8), [])
        case .set(let json?): return (Array("S".utf8), Array(json.utf8))
        }
    }

    static func array(_ words: [[UInt8]]) -> [UInt8] {
        var out = Array("*\(words.count)\r\n".utf8)
        for w in words {
            out += Array("$\(w.count)\r\n".utf8)
            out += w
            out += [13, 10]
        }
        return out
    }

    /// Decodes the entry at the start of `bytes`: the entry and its length, nil when `bytes`
    /// holds only part of it. Throws on bytes that are not an entry (a broken stream).
    public static func decode(_ bytes: ArraySlice<UInt8>) throws -> (StreamEntry, Int)? {
        guard let (words, length) = try parseArray(bytes) else { return nil }
        func text(_ i: Int) -> String { Names.string(words[i]) }
        let op = words.first.map { String(decoding: $0, as: UTF8.self) } ?? ""
        switch (op, words.count) {
        case ("C", 2):
            let d = try JSONDecoder().decode(CollectionDefinition.self, from: Data(words[1]))
            return (.create(d), length)
        case ("U", 6):
            let raw = words[3]
            guard raw.count % 4 == 0 else { throw broken("a vector of \(raw.count) bytes") }
            let vector = stride(from: 0, to: raw.count, by: 4).map { i -> Float in
                let bits = UInt32(raw[i]) | UInt32(raw[i + 1]) << 8 | UInt32(raw[i + 2]) << 16 | UInt32(raw[i + 3]) << 24
                return Float(bitPattern: bits)
            }
            return (.write(collection: text(1), .upsert(key: text(2), vector: vector, attributes: try attributes(words[4], words[5]))), length)
        case ("R", 3):
            return (.write(collection: text(1), .remove(key: text(2))), length)
        case ("A", 5):
            guard case .set(let json) = try attributes(words[3], words[4]) else { throw broken("attributes kept in A") }
            return (.write(collection: text(1), .setAttributes(key: text(2), attributes: json)), length)
        case ("D", 2):
            return (.write(collection: text(1), .dropCollection), length)
        default:
            throw broken("operation \(op.prefix(8)) with \(words.count) words")
        }
    }

    private static func attributes(_ mode: [UInt8], _ json: [UInt8]) throws -> AttributeUpdate {
        switch String(decoding: mode, as: UTF8.self) {
        case "K": return .keep
        case "N": return .set(nil)
        case "S": return .set(String(decoding: json, as: UTF8.self))
        default: throw broken("attribute mode")
        }
    }

    static func broken(_ what: String) -> EngineError {
        EngineError.storage("the replication stream is damaged (\(what)); a full sync follows")
    }

    /// A RESP array of bulk strings at the start of `b`, or nil when incomplete.
    static func parseArray(_ b: ArraySlice<UInt8>) throws -> ([[UInt8]], Int)? {
        var i = b.startIndex
        func line() throws -> Int? {
            guard let cr = b[i...].firstIndex(of: 13) else {
                if b.endIndex - i > 24 { throw broken("a header without an end") }
                return nil
            }
            guard cr + 1 < b.endIndex else { return nil }
            guard b[cr + 1] == 10, cr > i + 1, let n = Int(String(decoding: b[(i + 1)..<cr], as: UTF8.self)), n >= 0 else {
                throw broken("a bad header")
            }
            i = cr + 2
            return n
        }
        guard i < b.endIndex else { return nil }
        guard b[i] == UInt8(ascii: "*") else { throw broken("no array") }
        guard let count = try line() else { return nil }
        guard count <= 16 else { throw broken("\(count) words") }
        var words: [[UInt8]] = []
        for _ in 0..<count {
            guard i < b.endIndex else { return nil }
            guard b[i] == UInt8(ascii: "$") else { throw broken("no bulk string") }
            guard let n = try line() else { return nil }
            guard b.endIndex - i >= n + 2 else { return nil }
            words.append(Array(b[i..<(i + n)]))
            i += n + 2
        }
        return (words, i - b.startIndex)
    }
}
