// lookalike-compact: rebuilds a collection's segments without deleted and replaced items,
// merges them into one, and retrains IVF centroids when asked or when the lists drifted.
// Offline against a data folder (the server must be stopped: the folder's lock says so), or
// online against a running server (VCOMPACT), which keeps answering meanwhile. Safe to run
// from cron: exit 0 with a report; 1 with a clear message when it cannot run. Progress (stage,
// items, rate, ETA) goes to stderr while it runs: read from the engine offline, polled with
// VCOMPACT key STATUS on a second connection online.
import ArgumentParser
import Foundation
import LookalikeClient
import LookalikeEngine
import LookalikeToolSupport

@main
struct Compact: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lookalike-compact",
        abstract: "Compacts a Lookalike collection: drops deleted items, merges segments, retrains IVF.")

    @Option(help: "The collection to compact.") var collection: String
    @Option(help: "Offline: the data folder (the server must be stopped).") var data: String?
    @Option(help: "Online: the server, host:port.") var server: String?
    @Option(help: "Online: the server's password.") var password: String?
    @Flag(help: "Retrain IVF/PQ/SQ centroids on the live items (otherwise only when the lists drifted).") var retrain = false

    func validate() throws {
        guard (data == nil) != (server == nil) else { throw ValidationError("give exactly one of --data DIR (offline) or --server HOST:PORT (online)") }
    }

    func run() throws {
        if let server {
            let client = try RESPClient(address: server, password: password)
            let watcher = UncheckedBox(try? RESPClient(address: server, password: password))
            let name = collection
            let reply = try ProgressBar.following(unit: "items", measure: { finished in
                watcher.value.flatMap { Self.status($0, name, finished: finished) }
            }) {
                try client.call(["VCOMPACT", collection] + (retrain ? ["RETRAIN"] : []))
            }
            guard case .array(let items?) = reply else {
                // The reply's own "ERR" code would follow ArgumentParser's "Error:": dropped.
                if let e = reply.errorMessage { throw CompactError("\(server) says: \(e)") }
                throw CompactError("unexpected reply from \(server): \(reply) (is it a Lookalike server?)")
            }
            var fields: [String: String] = [:]
            for i in stride(from: 0, to: items.count - 1, by: 2) { fields[items[i].text ?? ""] = items[i + 1].text ?? "" }
            print(summary(kept: fields["items-kept"], dropped: fields["items-dropped"], before: fields["segments-before"],
                          after: fields["segments-after"], bytesBefore: fields["bytes-before"], bytesAfter: fields["bytes-after"],
                          retrained: fields["retrained"] == "1", seconds: Double(fields["seconds"] ?? "") ?? 0))
            return
        }
        let engine = try Engine(directory: data!)
        defer { engine.close() }
        guard let c = engine.collection(collection) else {
            throw CompactError("no collection '\(collection)' in \(data!) (it has: \(engine.collectionNames().joined(separator: ", ")))")
        }
        let progress = c.compactionProgress
        let r = try ProgressBar.following(unit: "items", measure: { _ in
            ProgressReading(stage: progress.stage, done: progress.doneCount, total: progress.totalCount)
        }) { try engine.compact(c, retrain: retrain) }
        print(summary(kept: "\(r.itemsKept)", dropped: "\(r.itemsDropped)", before: "\(r.segmentsBefore)", after: "\(r.segmentsAfter)",
                      bytesBefore: "\(r.bytesBefore)", bytesAfter: "\(r.bytesAfter)", retrained: r.retrained, seconds: r.seconds))
    }

    /// The compaction's reading from VCOMPACT key STATUS; nil when it cannot be had, or when none
    /// runs and ours has not `finished` (before it starts, the counts are the last run's).
    static func status(_ client: RESPClient, _ collection: String, finished: Bool) -> ProgressReading? {
        guard case .array(let items?)? = try? client.call(["VCOMPACT", collection, "STATUS"]) else { return nil }
        var fields: [String: String] = [:]
        for i in stride(from: 0, to: items.count - 1, by: 2) { fields[items[i].text ?? ""] = items[i + 1].text }
        guard finished || fields["running"] == "1", let done = fields["items-done"].flatMap({ Int($0) }), let total = fields["items-total"].flatMap({ Int($0) }) else {
            return nil
        }
        return ProgressReading(stage: fields["stage"] ?? nil, done: done, total: total)
    }

    func summary(kept: String?, dropped: String?, before: String?, after: String?, bytesBefore: String?, bytesAfter: String?,
                 retrained: Bool, seconds: Double) -> String {
        "compacted \(collection): \(kept ?? "?") items kept, \(dropped ?? "?") dropped, segments \(before ?? "?") -> \(after ?? "?"), "
            + "bytes \(bytesBefore ?? "?") -> \(bytesAfter ?? "?"), \(retrained ? "retrained" : "not retrained"), \(String(format: "%.2f", seconds)) s"
    }
}

struct CompactError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
