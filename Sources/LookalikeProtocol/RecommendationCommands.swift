// RecommendationCommands: our commands for the jobs a shop runs beside plain VSIM (issue 7;
// Docs/recommendations/ has a page per command): a user's history (VHISTORY), threshold
// queries (VWITHIN), the cascade (VRECOMMEND), and the new items' neighbours batch job
// (VNEWNEIGHBORS) with its lookup (VNEIGHBORS).
// Threads: parsing on the event loop; searches on the search pool (`offload`); the batch job on
// the admin executor (`admin`), so queries go on meanwhile.
import Foundation
import LookalikeEngine
import NIOCore

enum RecommendationCommands {
    static let specs: [CommandSpec] = [
        CommandSpec(name: "vhistory", arity: -4, ordering: .read, flags: ["readonly"], firstKey: 1, lastKey: 1, run: vhistory),
        CommandSpec(name: "vwithin", arity: -5, ordering: .read, flags: ["readonly"], firstKey: 1, lastKey: 1, run: vwithin),
        CommandSpec(name: "vrecommend", arity: -3, ordering: .read, flags: ["readonly"], firstKey: 1, lastKey: 1, run: vrecommend),
        CommandSpec(name: "vnewneighbors", arity: -3, ordering: .write, flags: ["admin"], firstKey: 1, lastKey: 1, run: vnewneighbors),
        CommandSpec(name: "vneighbors", arity: -3, ordering: .read, flags: ["readonly", "fast"], firstKey: 1, lastKey: 1, run: vneighbors),
    ]

    /// VHISTORY key n element1 … elementn [WEIGHTS w1 … wn | ATTENTION (FP32 blob | VALUES d …)]
    ///          [any VSIM option]
    /// Top-k for a user's history: the elements' vectors combined (mean, weights, or attention
    /// softmax(q·x)), the elements themselves left out.
    static func vhistory(_ inv: Invocation) throws -> Reply {
        let h = try parseHistory(inv, countAt: 2, command: "VHISTORY", attention: true)
        let options = try VectorCommands.SearchOptions(inv, query: .history(h.keys, h.weighting), from: h.next, command: "VHISTORY", k: 10)
        return try options.run(inv, threshold: nil)
    }

    /// `n e1 … en [WEIGHTS w1 … wn | ATTENTION vector]` with n at `countAt` (VHISTORY, and
    /// VPREDICT … HISTORY, which takes no ATTENTION); `next` is the argument after it.
    static func parseHistory(_ inv: Invocation, countAt start: Int, command: String, attention: Bool) throws
        -> (keys: [String], weighting: HistoryWeighting, next: Int)
    {
        let n = try VectorCommands.positive(inv, start, "the number of elements")
        guard n <= Collection.maxHistoryItems else {
            throw CommandError("a history holds at most \(Collection.maxHistoryItems) elements")
        }
        guard start + 1 + n <= inv.count else { throw CommandError("\(command) names \(n) elements but has \(inv.count - start - 1)") }
        let keys = (start + 1..<(start + 1 + n)).map { inv.string($0) }
        var i = start + 1 + n
        var weighting = HistoryWeighting.mean
        switch inv.keyword(i) {
        case "WEIGHTS":
            guard i + n < inv.count else { throw CommandError("WEIGHTS needs one weight per element (\(n))") }
            weighting = .weights(try (1...n).map { j in
                guard let w = Float(inv.string(i + j)) else { throw CommandError.notFloat() }
                return w
            })
            i += 1 + n
        case "ATTENTION" where attention:
            i += 1
            weighting = .attention(try VectorCommands.parseVector(inv, at: &i))
        default:
            break
        }
        return (keys, weighting, i)
    }

    /// VWITHIN key (ELE element | FP32 blob | VALUES n …) threshold [any VSIM option]
    /// Every element whose score (as WITHSCORES reports it) passes the threshold — cosine and
    /// IP: at least it; L2: a distance of at most it — best first, at most COUNT (default 1000).
    static func vwithin(_ inv: Invocation) throws -> Reply {
        var i = 2
        let query = try VectorCommands.parseQuery(inv, at: &i)
        guard i < inv.count, let t = Double(inv.string(i)), t.isFinite else {
            throw CommandError("VWITHIN needs a threshold (a number) after the query")
        }
        let options = try VectorCommands.SearchOptions(inv, query: query, from: i + 1, command: "VWITHIN", k: 1000)
        return try options.run(inv, threshold: t)
    }

    /// VRECOMMEND key element [COUNT n] [EF n] [WITHSCORES] [WITHATTRIBS]
    ///            [SAME attr] [SIMILAR [IN attr]] [TOP attr [ASC|DESC]] …
    /// The cascade: the list is filled from the stages in the order given, without duplicates.
    /// Default stages: SAME author, then SIMILAR. Each hit says its stage ("same:author",
    /// "similar", "similar:category", "top:sales_rank"). SIMILAR IN uses the item's predicted
    /// category when it has none, and its hits say "similar:category:predicted".
    static func vrecommend(_ inv: Invocation) throws -> Reply {
        let element = inv.string(2)
        var stages: [(CascadeStage, String)] = []
        var count = 10
        var ef: Int?
        var withScores = false
        var withAttributes = false
        var i = 3
        func attribute(_ at: Int, after word: String) throws -> String {
            guard at < inv.count, !inv.string(at).isEmpty else { throw CommandError("\(word) needs an attribute name") }
            return inv.string(at)
        }
        while i < inv.count {
            switch inv.keyword(i) {
            case "COUNT": count = try VectorCommands.positive(inv, i + 1, "COUNT", atMost: inv.engine.options.maxK); i += 2
            case "EF": ef = try VectorCommands.positive(inv, i + 1, "EF", atMost: inv.engine.options.maxEfSearch); i += 2
            case "WITHSCORES": withScores = true; i += 1
            case "WITHATTRIBS": withAttributes = true; i += 1
            case "SAME":
                let a = try attribute(i + 1, after: "SAME")
                stages.append((.sharing(a), "same:" + a))
                i += 2
            case "SIMILAR":
                if inv.keyword(i + 1) == "IN" {
                    let a = try attribute(i + 2, after: "SIMILAR IN")
                    stages.append((.similarIn(a), "similar:" + a))
                    i += 3
                } else {
                    stages.append((.similar, "similar"))
                    i += 1
                }
            case "TOP":
                let a = try attribute(i + 1, after: "TOP")
                let order = inv.keyword(i + 2)
                let ascending = order != "DESC"
                stages.append((.top(a, ascending: ascending), "top:" + a))
                i += (order == "ASC" || order == "DESC") ? 3 : 2
            default:
                throw CommandError("unknown VRECOMMEND option '\(inv.string(i).prefix(64))' (stages: SAME attr, SIMILAR [IN attr], TOP attr [ASC|DESC])")
            }
        }
        if stages.isEmpty { stages = [(.sharing("author"), "same:author"), (.similar, "similar")] }
        guard count <= inv.engine.options.maxK else { throw CommandError("COUNT must be at most \(inv.engine.options.maxK)") }
        guard let c = inv.server.collection(inv.string(1)) else { throw CommandError("no such key '\(inv.string(1).prefix(200))'") }
        let (version, metric) = (inv.connection.protocolVersion, c.definition.metric)
        let (plan, n, effort, scores, attributes) = (stages, count, ef, withScores, withAttributes)
        return inv.offload {
            let hits = try c.recommend(key: element, stages: plan.map(\.0), count: n, efSearch: effort, withAttributes: attributes)
            return cascadeReply(hits, labels: plan.map(\.1), metric: metric, withScores: scores,
                                withAttributes: attributes, version: version)
        }
    }

    /// RESP2: element, stage[, score][, attributes] for each hit. RESP3: a map from element to
    /// [stage, score?, attributes?]. Scores as VSIM reports them; a TOP stage's is the value.
    static func cascadeReply(_ hits: [CascadeHit], labels: [String], metric: Metric, withScores: Bool,
                             withAttributes: Bool, version: Int) -> RESPValue {
        func fields(_ h: CascadeHit) -> [RESPValue] {
            var f: [RESPValue] = [.string(labels[h.stage] + (h.predicted ? ":predicted" : ""))]
            if withScores {
                let isTop = labels[h.stage].hasPrefix("top:")
                f.append(.double(isTop ? Double(h.hit.score) : VectorCommands.redisScore(h.hit.score, metric)))
            }
            if withAttributes { f.append(h.hit.attributes.map { .string($0) } ?? .null) }
            return f
        }
        if version >= 3 {
            return .map(hits.map { h in
                let f = fields(h)
                return (.string(h.hit.key), f.count == 1 ? f[0] : .array(f))
            })
        }
        return .array(hits.flatMap { [.string($0.hit.key)] + fields($0) })
    }

    /// VNEWNEIGHBORS key SINCE (ID n | TIME unix-seconds | LAST) [COUNT n] [INCLUDE-NEW] [OUTPUT name] [IN attr]
    /// VNEWNEIGHBORS key STATUS
    /// The batch job: for each item added since the point, its COUNT (default 10) nearest
    /// existing items, exact (BLAS); kept for VNEIGHBORS and, with OUTPUT, written as JSON lines
    /// to <data>/exports/<name>. The reply (a report) comes when the job is done; STATUS, from
    /// another connection, says how far it is.
    static func vnewneighbors(_ inv: Invocation) throws -> Reply {
        guard let c = inv.server.collection(inv.string(1)) else { throw CommandError("no such key '\(inv.string(1).prefix(200))'") }
        if inv.keyword(2) == "STATUS" {
            guard inv.count == 3 else { throw CommandError.syntax() }
            return inv.offload { try newItemsStatus(c) }
        }
        guard inv.keyword(2) == "SINCE" else { throw CommandError("VNEWNEIGHBORS needs SINCE (ID n | TIME unix-seconds | LAST), or STATUS") }
        var request: NewItemsRequest
        var i: Int
        switch inv.keyword(3) {
        case "ID":
            guard let id = UInt64(inv.string(4)) else { throw CommandError("SINCE ID needs an id (a non-negative integer)") }
            request = NewItemsRequest(since: .id(id)); i = 5
        case "TIME":
            guard let t = UInt64(inv.string(4)) else { throw CommandError("SINCE TIME needs a Unix time in seconds") }
            request = NewItemsRequest(since: .time(t)); i = 5
        case "LAST":
            request = NewItemsRequest(since: .lastRun); i = 4
        default:
            throw CommandError("SINCE takes ID n, TIME unix-seconds or LAST")
        }
        while i < inv.count {
            switch inv.keyword(i) {
            case "COUNT":
                request.count = try VectorCommands.positive(inv, i + 1, "COUNT")
                guard request.count <= Collection.maxNewItemNeighbors else {
                    throw CommandError("COUNT must be at most \(Collection.maxNewItemNeighbors)")
                }
                i += 2
            case "INCLUDE-NEW": request.includeNew = true; i += 1
            case "OUTPUT":
                request.outputPath = try exportPath(inv.string(i + 1), data: inv.engine.directory)
                i += 2
            case "IN":
                guard i + 1 < inv.count, !inv.string(i + 1).isEmpty else { throw CommandError("IN needs an attribute name") }
                request.within = inv.string(i + 1)
                i += 2
            default:
                throw CommandError("unknown VNEWNEIGHBORS option '\(inv.string(i).prefix(64))' (options: COUNT n, INCLUDE-NEW, OUTPUT name, IN attr)")
            }
        }
        let job = request
        return inv.admin {
            if let path = job.outputPath { try createExportFolder(of: path) }  // off the event loop
            let r = try c.runNewItemsJob(job)
            return reportReply(r)
        }
    }

    /// Output files go to <data>/exports/, by a plain name: a client must not be able to write
    /// wherever the server may. Checks the name only (the event loop calls it).
    static func exportPath(_ name: String, data: String) throws -> String {
        guard !name.isEmpty, name.utf8.count <= 200, !name.contains("/"), !name.hasPrefix("."), !name.contains("\0") else {
            throw CommandError("OUTPUT takes a plain file name (no '/', not starting with '.'); the file goes to the data folder's exports/")
        }
        return data + "/exports/" + name
    }

    /// Makes the exports folder of an `exportPath`, if missing (a blocking call: admin executor only).
    static func createExportFolder(of path: String) throws {
        let folder = (path as NSString).deletingLastPathComponent
        do { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) } catch {
            throw CommandError("cannot create \(folder): \(error.localizedDescription)")
        }
    }

    static func reportReply(_ r: NewItemsReport) -> RESPValue {
        .map([
            (.simple("new-items"), .integer(r.newItems)),
            (.simple("existing-items"), .integer(r.existingItems)),
            (.simple("first-id"), .integer(Int(clamping: r.firstId))),
            (.simple("through-id"), .integer(Int(clamping: r.throughId))),
            (.simple("passes"), .integer(r.passes)),
            (.simple("seconds"), .double(r.seconds)),
            (.simple("output"), r.outputPath.map { .string($0) } ?? .null),
            (.simple("within"), r.within.map { .string($0) } ?? .null),
            (.simple("predicted"), .integer(r.predicted ?? 0)),
        ])
    }

    static func newItemsStatus(_ c: Collection) throws -> RESPValue {
        let p = c.newItemsProgress
        return .map([
            (.simple("running"), .integer(p.isRunning ? 1 : 0)),
            (.simple("rows-scored"), .integer(p.rowsScored)),
            (.simple("rows-total"), .integer(p.rowsTotal)),
            (.simple("progress"), .double(p.fraction)),
        ] + JobStatus.timing(p) + [
            (.simple("last-run"), try c.lastNewItemsReport().map(reportReply) ?? .null),
            (.simple("aborted-run"), try c.abortedNewItemsRun().map { a in
                .map([(.simple("started-at"), .double(a.startedAt)),
                      (.simple("output"), a.output.map { .string($0) } ?? .null),
                      (.simple("reason"), .string(a.reason))])
            } ?? .null),
        ])
    }

    /// VNEIGHBORS key element [WITHSCORES]: the neighbours the last batch job kept for the
    /// element (those deleted since left out); null when no job has listed it.
    static func vneighbors(_ inv: Invocation) throws -> Reply {
        var withScores = false
        for i in 3..<max(3, inv.count) {
            guard inv.keyword(i) == "WITHSCORES" else { throw CommandError("unknown VNEIGHBORS option '\(inv.string(i).prefix(64))'") }
            withScores = true
        }
        guard let c = inv.server.collection(inv.string(1)) else { return .now(.null) }
        let (element, scores, version, metric) = (inv.string(2), withScores, inv.connection.protocolVersion, c.definition.metric)
        return inv.offload {
            guard let hits = try c.neighbors(key: element) else { return .null }
            return VectorCommands.vsimReply(hits.map { ($0, VectorCommands.redisScore($0.score, metric)) },
                                            withScores: scores, withAttributes: false, version: version)
        }
    }
}
