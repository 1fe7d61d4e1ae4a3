// Report: what a load tells its user on stderr while it runs (skipped records, each with its
// row or line; warnings; the stage it is in) and the counts its summary adds up.
//
// Invariant: every row read ends as exactly one of added, updated or unchanged (the sink's
// outcome) or skipped (counted here), so the summary's parts add up to its rows. Counted
// beside them: duplicate keys (such a row is also added, updated or unchanged), and bad
// metadata lines read before the rows when joining by key (they are no row).
// Threads: the load's main loop only.
import Foundation

final class Report {
    let strict: Bool
    private(set) var skipped = 0
    private(set) var skippedLines = 0
    private(set) var duplicates = 0

    init(strict: Bool) { self.strict = strict }

    /// A bad row (or `rows` rows at once), skipped; under --strict the load stops here.
    func skip(_ message: String, rows: Int = 1) throws {
        skipped += rows
        try bad(message)
    }

    /// A bad metadata line that belongs to no row yet (joining by key), skipped.
    func skipLine(_ message: String) throws {
        skippedLines += 1
        try bad(message)
    }

    private func bad(_ message: String) throws {
        write("skipped: \(message)")
        if strict {
            throw IngestError("stopped at the first bad record (--strict): fix it, or run without --strict to skip and report bad records")
        }
    }

    /// What the summary adds after its rows: "(2 with a duplicate key; 1 metadata line skipped)".
    var asides: String {
        var parts: [String] = []
        if duplicates > 0 { parts.append("\(duplicates) with a duplicate key") }
        if skippedLines > 0 { parts.append("\(skippedLines) metadata line\(skippedLines == 1 ? "" : "s") skipped") }
        return parts.isEmpty ? "" : " (\(parts.joined(separator: "; ")))"
    }

    func warn(_ message: String) { write("warning: \(message)") }

    /// A key the input gave before: the later row (or metadata line) wins. Not a bad record,
    /// so --strict goes on, but a sign the files are not what they seem.
    func duplicate(_ message: String) {
        duplicates += 1
        warn(message)
    }

    /// The step the load is in, for the long ones after the progress bar (the index build).
    func stage(_ name: String, _ what: String) { write("\(name): \(what)") }

    private func write(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}

struct IngestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
