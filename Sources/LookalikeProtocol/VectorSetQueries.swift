// VectorSetQueries: Redis 8.4's VRANGE and VLINKS, and VADD's REDUCE rules, with Redis's
// syntax, errors and reply shapes (modules/vector-sets/vset.c); Docs/protocol.md says where
// Lookalike differs. The engine does the work: NameRange.swift, GraphLinks.swift,
// Projection.swift.
// Threads: parsing runs on the event loop; LMDB and index reads through `offload`.
import LookalikeEngine

enum VectorSetQueries {
    // MARK: VRANGE

    /// VRANGE key start end [count]: element names in byte order from start ("-", "[name",
    /// "(name") to end ("+", "[name", "(name"); all of them when count is left out or negative.
    /// An empty array for a missing key. Arguments are checked first, as Redis does.
    static func vrange(_ inv: Invocation) throws -> Reply {
        guard inv.count <= 5 else { throw CommandError("wrong number of arguments for 'vrange' command") }
        var count = -1
        if inv.count == 5 {
            guard let n = Int(inv.string(4)) else { throw CommandError("invalid COUNT value") }
            count = n
        }
        let limit = count < 0 ? nil : count
        guard let start = RangeEnd(inv.bytes(2)) else { throw CommandError("invalid start range format") }
        guard let end = RangeEnd(inv.bytes(3)) else { throw CommandError("invalid end range format") }
        guard start != .plus, end != .minus else {
            throw CommandError("'-' can only be used as first argument, '+' only as second")
        }
        guard let c = inv.server.collection(inv.string(1)) else { return .now(.array([])) }
        return inv.offload {
            .array(try c.names(from: start.bound, to: end.bound, limit: limit).map { .string($0) })
        }
    }

    /// One VRANGE argument as Redis parses it, either end allowed ("+" as a start is refused
    /// afterwards, with Redis's message).
    enum RangeEnd: Equatable {
        case minus, plus
        case bounded(NameBound)

        init?(_ bytes: [UInt8]) {
            switch bytes.first {
            case UInt8(ascii: "-") where bytes.count == 1: self = .minus
            case UInt8(ascii: "+") where bytes.count == 1: self = .plus
            // The name as every name is carried (Names.swift), so it compares as stored.
            case UInt8(ascii: "[") where bytes.count > 1: self = .bounded(.inclusive(Names.string(bytes.dropFirst())))
            case UInt8(ascii: "(") where bytes.count > 1: self = .bounded(.exclusive(Names.string(bytes.dropFirst())))
            default: return nil
            }
        }

        var bound: NameBound {
            if case .bounded(let b) = self { return b }
            return .unbounded
        }
    }

    // MARK: VLINKS

    /// VLINKS key element [WITHSCORES]: the element's neighbours in its HNSW graph, one array
    /// per level, the highest level first; WITHSCORES makes each level a map neighbour -> the
    /// score VSIM reports (RESP2: a flat name, score array). Null for a missing key or element;
    /// an error for an element outside any graph (GraphLinks.swift says when).
    static func vlinks(_ inv: Invocation) throws -> Reply {
        guard inv.count <= 4, inv.count == 3 || inv.keyword(3) == "WITHSCORES" else {
            throw CommandError("wrong number of arguments for 'vlinks' command")  // as Redis
        }
        let withScores = inv.count == 4
        guard let c = inv.server.collection(inv.string(1)) else { return .now(.null) }
        let (element, metric) = (inv.string(2), c.definition.metric)
        return inv.offload {
            guard let levels = try c.links(key: element) else { return .null }
            return .array(levels.map { level in
                guard withScores else { return .array(level.map { .string($0.key) }) }
                return .map(level.map { (.string($0.key), .double(VectorCommands.redisScore($0.score, metric))) })
            })
        }
    }

    // MARK: VADD REDUCE

    /// REDUCE dim at `i`, where Redis wants it (right before the vector); advances past it.
    static func parseReduce(_ inv: Invocation, at i: inout Int) throws -> Int? {
        guard inv.keyword(i) == "REDUCE" else { return nil }
        guard i + 2 < inv.count, let d = Int(inv.string(i + 1)), d > 0 else {
            throw CommandError("invalid vector specification: REDUCE needs a positive dimension")
        }
        i += 2
        return d
    }

    /// Redis's rules, checked before anything is written: a new set made with REDUCE d stores
    /// d dimensions; a reduced set wants REDUCE with its dimension and a vector of its input
    /// dimension on every VADD; a set made without REDUCE takes none.
    static func checkReduce(_ reduce: Int?, _ vector: [Float], key: String, existing: Collection?) throws {
        if let reduce, reduce > vector.count {
            throw CommandError("invalid vector specification: REDUCE \(reduce) is larger than the vector's \(vector.count) dimensions")
        }
        guard let existing else {
            if let reduce, reduce == vector.count {
                throw CommandError("REDUCE \(reduce) does not reduce a \(reduce)-dimensional vector: pass a smaller dimension, or leave REDUCE out")
            }
            return
        }
        let d = existing.definition.dimension
        let input = existing.projectionInputDimension
        let quoted = String(key.prefix(200))
        switch (reduce, input) {
        case (nil, 0):
            return
        case (nil, _):
            throw CommandError("vector dimension mismatch: '\(quoted)' reduces \(input)-dimensional vectors to \(d) by random projection: add them with REDUCE \(d)")
        case (_, 0):
            guard vector.count == d else { throw CommandError(EngineError.wrongDimension(expected: d, got: vector.count).description) }
            throw CommandError("'\(quoted)' has no projection: REDUCE only applies when a set is created; add \(d)-dimensional vectors without it")
        case (let r?, _):
            guard r == d else { throw CommandError("projection dimension mismatch: '\(quoted)' reduces to \(d) dimensions, not \(r)") }
            guard vector.count == input else {
                throw CommandError("input dimension mismatch for projection: got \(vector.count), the projection expects \(input)")
            }
        }
    }
}
