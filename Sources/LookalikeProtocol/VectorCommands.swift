// VectorCommands: Redis 8 vector-set commands over the engine, with Redis's syntax and reply
// shapes (Docs/protocol.md lists where Lookalike differs). VSIM and VPREDICT are in
// SearchCommands.swift.
// Threads: parsing runs on the event loop; engine work through `offload` (the search pool) or
// `write`; VCOMPACT through `admin` (the admin executor), so queries go on meanwhile.
import Foundation
import LookalikeEngine
import NIOCore

enum VectorCommands {
    static let specs: [CommandSpec] = [
        CommandSpec(name: "vadd", arity: -5, ordering: .write, flags: ["write", "denyoom"], firstKey: 1, lastKey: 1, run: vadd),
        CommandSpec(name: "vsim", arity: -4, ordering: .read, flags: ["readonly"], firstKey: 1, lastKey: 1, run: vsim),
        CommandSpec(name: "vrem", arity: 3, ordering: .write, flags: ["write"], firstKey: 1, lastKey: 1, run: vrem),
        CommandSpec(name: "vcard", arity: 2, ordering: .read, flags: ["readonly", "fast"], firstKey: 1, lastKey: 1, run: vcard),
        CommandSpec(name: "vdim", arity: 2, ordering: .read, flags: ["readonly", "fast"], firstKey: 1, lastKey: 1, run: vdim),
        CommandSpec(name: "vemb", arity: -3, ordering: .read, flags: ["readonly", "fast"], firstKey: 1, lastKey: 1, run: vemb),
        CommandSpec(name: "vinfo", arity: 2, ordering: .read, flags: ["readonly", "fast"], firstKey: 1, lastKey: 1, run: vinfo),
        CommandSpec(name: "vgetattr", arity: 3, ordering: .read, flags: ["readonly", "fast"], firstKey: 1, lastKey: 1, run: vgetattr),
        CommandSpec(name: "vsetattr", arity: 4, ordering: .write, flags: ["write"], firstKey: 1, lastKey: 1, run: vsetattr),
        CommandSpec(name: "vismember", arity: 3, ordering: .read, flags: ["readonly", "fast"], firstKey: 1, lastKey: 1, run: vismember),
        CommandSpec(name: "vrandmember", arity: -2, ordering: .read, flags: ["readonly"], firstKey: 1, lastKey: 1, run: vrandmember),
        CommandSpec(name: "vlinks", arity: -3, ordering: .read, flags: ["readonly"], firstKey: 1, lastKey: 1, run: VectorSetQueries.vlinks),
        CommandSpec(name: "vrange", arity: -4, ordering: .read, flags: ["readonly"], firstKey: 1, lastKey: 1, run: VectorSetQueries.vrange),
        CommandSpec(name: "vpredict", arity: -4, ordering: .read, flags: ["readonly"], firstKey: 1, lastKey: 1, run: vpredict),
        CommandSpec(name: "vcompact", arity: -2, ordering: .write, flags: ["admin"], firstKey: 1, lastKey: 1, run: vcompact),
    ]

    // MARK: VADD

    /// VADD key [REDUCE dim] (FP32 blob | VALUES n v...) element [CAS] [NOQUANT|Q8|BIN]
    ///      [EF n] [SETATTR json] [M n] [METRIC COSINE|L2|IP] [INDEX spec] [VIEW name]
    /// VIEW (ours) adds or replaces one more vector of an existing element (Views.swift).
    static func vadd(_ inv: Invocation) throws -> Reply {
        let key = inv.string(1)
        var i = 2
        let reduce = try VectorSetQueries.parseReduce(inv, at: &i)
        let vector = try parseVector(inv, at: &i)
        guard i < inv.count else { throw CommandError.syntax() }
        let element = inv.string(i)
        i += 1
        var attributes = AttributeUpdate.keep
        var metric: Metric?
        var index: String?
        var m: Int?
        var ef: Int?
        var view: String?
        var quantization: String?
        while i < inv.count {
            switch inv.keyword(i) {
            case "CAS":
                i += 1  // accepted: writes never block the event loop, they join the group commit
            case "NOQUANT", "Q8":
                quantization = inv.keyword(i)
                i += 1
            case "BIN":
                throw CommandError("BIN is not supported: binary quantization needs FAISS's binary (Hamming) indexes, which do not serve cosine; use Q8 (HNSW with 8-bit storage) or an INDEX spec such as \"IVF1024,PQ32\"")
            case "EF":
                ef = try positive(inv, i + 1, "EF", atMost: inv.engine.options.maxEfSearch)
                i += 2
            case "M":
                m = try positive(inv, i + 1, "M", atMost: maxM)
                i += 2
            case "SETATTR":
                guard i + 1 < inv.count else { throw CommandError.syntax() }
                attributes = .set(inv.string(i + 1))
                i += 2
            case "METRIC":
                guard i + 1 < inv.count, let mm = Metric(rawValue: inv.string(i + 1).lowercased()) else {
                    throw CommandError("METRIC must be COSINE, L2 or IP")
                }
                metric = mm
                i += 2
            case "INDEX":
                guard i + 1 < inv.count else { throw CommandError.syntax() }
                index = inv.string(i + 1)
                i += 2
            case "VIEW":
                view = inv.string(i + 1)
                guard i + 1 < inv.count, !view!.isEmpty, Views.split(view!).view == nil else {
                    throw CommandError("VIEW needs a name (not empty, without the byte 0x1F)")
                }
                i += 2
            default:
                throw CommandError("unknown VADD option '\(inv.string(i).prefix(64))'")
            }
        }
        if index != nil && quantization != nil {
            throw CommandError("give INDEX or \(quantization!), not both: the INDEX spec says how vectors are stored")
        }
        let member = view.map { Views.member(item: element, view: $0) } ?? element
        let request = WriteRequest.upsert(key: member, vector: vector, attributes: attributes)
        let spec = index ?? quantizedSpec(quantization, m: m) ?? (m.map { "HNSW\($0)" } ?? inv.server.options.defaultIndex)
        let creation = CollectionDefinition(name: key, dimension: reduce ?? vector.count,
                                            metric: metric ?? inv.server.options.defaultMetric, index: spec, efConstruction: ef,
                                            projectionInputDimension: reduce.map { _ in vector.count })
        let future: EventLoopFuture<WriteOutcome>
        let existing = inv.server.collection(key)
        try VectorSetQueries.checkReduce(reduce, vector, key: key, existing: existing)
        if let existing {
            if let metric, metric != existing.definition.metric {
                throw CommandError("'\(key)' uses metric \(existing.definition.metric.rawValue.uppercased()); METRIC only applies when a set is created")
            }
            if let index, index != existing.definition.index {
                throw CommandError("'\(key)' uses index \(existing.definition.index); INDEX only applies when a set is created")
            }
            if let quantization, (quantization == "Q8") != (quantName(existing.definition.index) == "int8") {
                throw CommandError("asked quantization mismatch with existing vector set: '\(key)' is \(quantName(existing.definition.index))")
            }
            // The set may be deleted before this write commits (DEL, or VREM of its last
            // element in the same group commit): then the write creates it anew, as in Redis.
            let retry = { inv.write(creating: creation, request) }
            future = inv.write(existing, request).assumeIsolated().flatMapError { error in
                guard case EngineError.unknownCollection = error else { return inv.eventLoop.makeFailedFuture(error) }
                return retry()
            }.nonisolated()
        } else {
            future = inv.write(creating: creation, request)
        }
        return .later(future.map { .integer($0 == .added ? 1 : 0) })
    }

    /// Redis's quantization words as index specs: Q8 stores HNSW vectors in 8 bits
    /// (FAISS's HNSW over SQ8, rescored with the exact vectors by default: Rescoring.swift),
    /// NOQUANT in float32; nil when none was given. (Sets made before kept "HNSWn_SQ8", the
    /// same index to FAISS's factory.)
    static func quantizedSpec(_ quantization: String?, m: Int?) -> String? {
        switch quantization {
        case "Q8": return "HNSW\(m ?? 32),SQ8"
        case "NOQUANT": return "HNSW\(m ?? 32)"
        default: return nil
        }
    }

    /// ELE element, FP32 blob or VALUES n v1 ... vn, at `i`; advances `i` past it.
    static func parseQuery(_ inv: Invocation, at i: inout Int) throws -> SearchRequest.Query {
        guard inv.keyword(i) == "ELE" else { return .vector(try parseVector(inv, at: &i)) }
        guard i + 1 < inv.count else { throw CommandError.syntax() }
        i += 2
        return .key(inv.string(i - 1))
    }

    /// FP32 blob or VALUES n v1 ... vn, at `i`; advances `i` past it.
    static func parseVector(_ inv: Invocation, at i: inout Int) throws -> [Float] {
        guard i < inv.count else { throw CommandError.syntax() }
        switch inv.keyword(i) {
        case "FP32":
            guard i + 1 < inv.count else { throw CommandError.syntax() }
            let blob = inv.arguments[i + 1]
            guard blob.readableBytes > 0, blob.readableBytes % 4 == 0 else {
                throw CommandError("invalid vector specification: an FP32 blob must be 4 bytes per component")
            }
            i += 2
            return blob.readableBytesView.withContiguousStorageIfAvailable { raw in
                (0..<(raw.count / 4)).map { j in
                    Float(bitPattern: UInt32(raw[j * 4]) | UInt32(raw[j * 4 + 1]) << 8
                                      | UInt32(raw[j * 4 + 2]) << 16 | UInt32(raw[j * 4 + 3]) << 24)
                }
            } ?? []
        case "VALUES":
            guard i + 1 < inv.count, let n = Int(inv.string(i + 1)), n > 0 else {
                throw CommandError("invalid vector specification: VALUES needs a positive count")
            }
            // Compared as what is left, so a count near Int.max cannot overflow the sum.
            guard n <= inv.count - i - 2 else {
                throw CommandError("invalid vector specification: VALUES \(n) needs \(n) numbers")
            }
            var v: [Float] = []
            v.reserveCapacity(n)
            for j in 0..<n {
                guard let x = Float(inv.string(i + 2 + j)) else {
                    throw CommandError("invalid vector specification: '\(inv.string(i + 2 + j).prefix(32))' is not a number")
                }
                v.append(x)
            }
            i += 2 + n
            return v
        default:
            throw CommandError("invalid vector specification: expected FP32 or VALUES")
        }
    }

    /// HNSW links per node at most (the search loop's neighbour lists hold 512).
    static let maxM = 256
    /// IVF lists probed per query at most (FAISS's nlist is far below this in practice).
    static let maxNprobe = 1 << 16
    /// FILTER-EF at most: candidates a filtered query may inspect.
    static let maxFilterEffort = 1 << 24

    static func positive(_ inv: Invocation, _ i: Int, _ what: String, atMost limit: Int = Int.max) throws -> Int {
        guard i < inv.count, let n = Int(inv.string(i)), n > 0 else {
            throw CommandError("\(what) must be a positive integer")
        }
        guard n <= limit else { throw CommandError("\(what) must be at most \(limit)") }
        return n
    }

    // MARK: The rest

    static func vrem(_ inv: Invocation) throws -> Reply {
        guard let c = inv.server.collection(inv.string(1)) else { return .now(.integer(0)) }
        return .later(inv.write(c, .remove(key: inv.string(2))).map { .integer($0 == .removed ? 1 : 0) }
            .recover(ifGone: .integer(0)))
    }

    static func vcard(_ inv: Invocation) throws -> Reply {
        guard let c = inv.server.collection(inv.string(1)) else { return .now(.integer(0)) }
        return inv.offload { .integer(try c.itemCount()) }
    }

    static func vdim(_ inv: Invocation) throws -> Reply {
        guard let c = inv.server.collection(inv.string(1)) else { throw CommandError("key does not exist") }
        return .now(.integer(c.definition.dimension))
    }

    static func vemb(_ inv: Invocation) throws -> Reply {
        let raw = inv.count > 3
        if raw && (inv.count != 4 || inv.keyword(3) != "RAW") { throw CommandError.syntax() }
        guard let c = inv.server.collection(inv.string(1)) else { return .now(.null) }
        let element = inv.string(2)
        return inv.offload {
            guard let v = try c.vector(key: element) else { return .null }
            guard raw else { return .array(v.map { .double(Double($0)) }) }
            var blob: [UInt8] = []
            blob.reserveCapacity(v.count * 4)
            for x in v { withUnsafeBytes(of: x.bitPattern.littleEndian) { blob.append(contentsOf: $0) } }
            let norm = v.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot()
            return .array([.simple("f32"), .bulk(blob), .double(norm)])
        }
    }

    static func vinfo(_ inv: Invocation) throws -> Reply {
        guard let c = inv.server.collection(inv.string(1)) else { return .now(.null) }
        return inv.offload {
            let d = c.definition
            let s = c.segmentSummary()
            return .map([
                (.simple("quant-type"), .simple(quantName(d.index))),
                (.simple("vector-dim"), .integer(d.dimension)),
                (.simple("projection-input-dim"), .integer(c.projectionInputDimension)),
                (.simple("size"), .integer(try c.itemCount())),
                (.simple("max-level"), .integer(0)),
                (.simple("vset-uid"), .integer(Int(c.numberForInfo))),
                (.simple("hnsw-max-node-uid"), .integer(Int(clamping: c.idHighWaterMark))),
                (.simple("metric"), .simple(d.metric.rawValue)),
                (.simple("index"), .simple(d.index)),
                (.simple("indexed-attributes"), .array(d.attributes.map { .string($0) })),
                (.simple("sealed-segments"), .integer(s.sealed)),
                (.simple("sealing-segments"), .integer(s.frozen)),
                (.simple("mutable-items"), .integer(s.mutableCount)),
                (.simple("unindexed-items"), .integer(c.unindexed.items)),
                (.simple("ef-construction"), .integer(c.efConstructionForInfo)),
                (.simple("index-state"), .string(c.indexState)),
                (.simple("hnsw-m"), .integer(hnswM(d.index))),
                (.simple("rescore"), .integer(c.defaultRescore)),
            ] + ServerCommands.memoryFields(try c.memoryUsage()) + categoryFields(c.categoryPredictorStatus()))
        }
    }

    /// VINFO's category predictor lines (CategoryTraining): which predictor answers VPREDICT
    /// and CATEGORY AUTO, why, and its held-out accuracy (-1 until a model was trained).
    static func categoryFields(_ s: CategoryPredictorStatus) -> [(RESPValue, RESPValue)] {
        [
            (.simple("category-predictor"), .simple(s.predictor)),
            (.simple("category-predictor-note"), .string(s.note)),
            (.simple("category-classes"), .integer(s.classes)),
            (.simple("category-labelled-items"), .integer(s.labelledItems)),
            (.simple("category-held-out-items"), .integer(s.heldOutItems)),
            (.simple("category-accuracy-vote"), .double(s.voteAccuracy ?? -1)),
            (.simple("category-accuracy-model"), .double(s.modelAccuracy ?? -1)),
            (.simple("category-accuracy"), .double(s.blendAccuracy ?? -1)),
            (.simple("category-blend-weight"), .double(s.blendWeight)),
            (.simple("category-model-seconds"), .double(s.seconds)),
            (.simple("category-model-training"), .integer(s.training ? 1 : 0)),
        ]
    }

    /// VCOMPACT key [RETRAIN] (our extension): rebuilds the set's sealed segments into one
    /// without deleted items, retraining IVF/PQ/SQ when asked or when the lists drifted.
    /// Queries and writes go on meanwhile; the reply comes when it is done.
    /// VCOMPACT key STATUS: how far the running one is (JobStatus).
    static func vcompact(_ inv: Invocation) throws -> Reply {
        if inv.count == 3, inv.keyword(2) == "STATUS" {
            guard let c = inv.server.collection(inv.string(1)) else { throw CommandError("no such key '\(inv.string(1).prefix(200))'") }
            return .now(JobStatus.compaction(c))
        }
        var retrain = false
        for i in 2..<max(2, inv.count) {
            guard inv.keyword(i) == "RETRAIN" else {
                throw CommandError("unknown VCOMPACT option '\(inv.string(i).prefix(64))' (VCOMPACT key [RETRAIN], or VCOMPACT key STATUS)")
            }
            retrain = true
        }
        guard let c = inv.server.collection(inv.string(1)) else { throw CommandError("no such key '\(inv.string(1).prefix(200))'") }
        let (engine, wantsRetrain) = (inv.engine, retrain)
        return inv.admin { JobStatus.report(try engine.compact(c, retrain: wantsRetrain)) }
    }

    /// M of an HNSW spec ("HNSW32", "HNSW16_SQ8", "IVF…,HNSW…" reads as its first), else 0.
    static func hnswM(_ spec: String) -> Int {
        guard let r = spec.uppercased().range(of: "HNSW") else { return 0 }
        return Int(spec[r.upperBound...].prefix { $0.isNumber }) ?? 32
    }

    static func quantName(_ spec: String) -> String {
        let u = spec.uppercased()
        if u.contains("SQ8") { return "int8" }
        if u.contains("PQ") { return "pq" }
        if u.contains("SQFP16") || u.contains("SQ16") { return "f16" }
        return "f32"
    }

    static func vgetattr(_ inv: Invocation) throws -> Reply {
        guard let c = inv.server.collection(inv.string(1)) else { return .now(.null) }
        let element = inv.string(2)
        return inv.offload { try c.item(key: element)?.attributes.map { .string($0) } ?? .null }
    }

    static func vsetattr(_ inv: Invocation) throws -> Reply {
        guard let c = inv.server.collection(inv.string(1)) else { return .now(.integer(0)) }
        let json = inv.string(3)
        return .later(inv.write(c, .setAttributes(key: inv.string(2), attributes: json))
            .map { .integer($0 == .notFound ? 0 : 1) }.recover(ifGone: .integer(0)))
    }

    static func vismember(_ inv: Invocation) throws -> Reply {
        guard let c = inv.server.collection(inv.string(1)) else { return .now(.bool(false)) }
        let element = inv.string(2)
        return inv.offload { .bool(try c.contains(key: element)) }
    }

    static func vrandmember(_ inv: Invocation) throws -> Reply {
        guard inv.count <= 3 else { throw CommandError.syntax() }
        let count = inv.count == 3 ? try inv.integer(2) : nil
        guard let c = inv.server.collection(inv.string(1)) else { return .now(count == nil ? .null : .array([])) }
        let limit = inv.engine.options.maxK
        return inv.offload {
            guard let count else { return try c.randomKeys(1).first.map { .string($0) } ?? .null }
            guard count != 0 else { return .array([]) }
            // magnitude, not abs: abs(Int.min) traps.
            let n = Int(min(count.magnitude, UInt(max(limit, 1))))
            return .array(try c.randomKeys(n, allowRepeats: count < 0).map { .string($0) })
        }
    }
}

extension EventLoopFuture where Value == RESPValue {
    /// The reply for a write whose set was deleted before it committed (DEL, or VREM of its
    /// last element in the same group commit): the same as for a set that never existed.
    func recover(ifGone reply: RESPValue) -> EventLoopFuture<RESPValue> {
        flatMapErrorThrowing { error in
            if case EngineError.unknownCollection = error { return reply }
            throw error
        }
    }
}
