// Items: the rows of a vector file joined with their metadata, as (key, vector, attributes),
// with every bad record reported by its row (and, for the metadata's faults, its line).
//
// Join by row order (row i of the vectors with the i-th record of the metadata) or by key
// (the metadata is read first into a map from key to record). Keys come from the vector file
// when it carries them (Amazon's ASINs), else from the metadata's key field, else the row
// number.
// Invariants: every row below `rows` is either returned by `next` or reported skipped, once;
// a key given again (by a later row, or a later metadata line when joining by key) is
// reported as a duplicate with both rows or lines, and the later one wins.
// Threads: the load's main loop only.
import Foundation
import LookalikeFormats

struct Item {
    var row: Int
    var key: String
    var vector: [Float]
    var attributes: String?
}

enum Join: String, CaseIterable {
    case row, key
}

final class ItemReader {
    let vectors: VectorFile
    /// The rows to read: all of the file, or the first --limit.
    let rows: Int
    private let metadata: MetadataFile?
    private let join: Join
    private let keyField: String
    private let fields: Set<String>?
    private let report: Report
    /// Joined by key: each key's record and the line it came from.
    private var byKey: [String: (line: Int, record: [String: Any])] = [:]
    /// The last row that gave each key, to name duplicates; nil when keys are row numbers
    /// (no metadata, no keys in the vector file), which cannot repeat. Some 50 bytes a short key.
    private var lastRow: [String: Int]?
    private(set) var row = 0
    let maxAttributeBytes: Int

    init(vectors: VectorFile, rows: Int, metadata: MetadataFile?, join: Join, keyField: String, fields: [String]?,
         maxAttributeBytes: Int, report: Report) throws {
        self.vectors = vectors
        self.rows = rows
        self.metadata = metadata
        self.join = join
        self.keyField = keyField
        self.fields = fields.map(Set.init)
        self.maxAttributeBytes = maxAttributeBytes
        self.report = report
        if metadata != nil || (vectors.count > 0 && vectors.key(at: 0) != nil) { lastRow = [:] }
        if join == .key, let metadata { try readByKey(metadata) }
    }

    private func readByKey(_ metadata: MetadataFile) throws {
        while let next = metadata.next() {
            switch next {
            case .failure(let e): try report.skipLine(e.description)
            case .success(let record):
                guard let key = Self.keyText(record[keyField]) else {
                    try report.skipLine("\(metadata.path) line \(metadata.line): no '\(keyField)' field (name the key field with --key-field)")
                    continue
                }
                if let earlier = byKey.updateValue((metadata.line, record), forKey: key) {
                    report.duplicate("duplicate key '\(key)' in \(metadata.path): lines \(earlier.line) and \(metadata.line) (the later line's attributes are used)")
                }
            }
        }
    }

    /// The next good item, or nil at the end; bad rows are reported and skipped.
    func next() throws -> Item? {
        while row < rows {
            let r = row
            row += 1
            var record: [String: Any]?
            var recordLine: Int?
            /// Where the row's metadata record came from, for the messages about it.
            var line: String { recordLine.map { " (\(metadata!.path) line \($0))" } ?? "" }
            if join == .row, let metadata {
                switch metadata.next() {
                case nil:
                    try skipUnjoined(from: r, metadata)
                    return nil
                case .failure(let e)?:
                    try report.skip("row \(r): \(e.description)")
                    continue
                case .success(let value)?:
                    record = value
                    recordLine = metadata.line
                }
            }
            var key = vectors.key(at: r) ?? record.flatMap { Self.keyText($0[keyField]) }
            if join == .key {
                guard let k = key else {
                    try report.skip("row \(r): no key to join on (the vector file has none; use --join row)")
                    continue
                }
                let entry = byKey[k]
                (recordLine, record) = (entry?.line, entry?.record)
                key = k
            }
            if metadata != nil && key == nil {
                try report.skip("row \(r): the metadata has no '\(keyField)' field\(line) (name the key field with --key-field)")
                continue
            }
            let vector: [Float]
            do { vector = try vectors.vector(at: r) } catch {
                try report.skip("row \(r): \(error)")
                continue
            }
            guard vector.allSatisfy(\.isFinite) else {
                try report.skip("row \(r): the vector holds NaN or infinity")
                continue
            }
            var attributes: String?
            if let record {
                switch attributeText(record) {
                case .success(let text): attributes = text
                case .failure(let why):
                    try report.skip("row \(r): \(why.description)\(line)")
                    continue
                }
            }
            let item = Item(row: r, key: key ?? String(r), vector: vector, attributes: attributes)
            noteKey(item)
            return item
        }
        return nil
    }

    /// Joined by row, the metadata ended first: the rows left have no record. One line for
    /// all of them (not one per row), and every one counted.
    private func skipUnjoined(from r: Int, _ metadata: MetadataFile) throws {
        let left = rows - r
        row = rows
        let which = left == 1 ? "row \(r)" : "rows \(r) to \(rows - 1) (\(left) rows)"
        try report.skip("\(which): no metadata record (\(metadata.path) ends at line \(metadata.line), after \(r) records)", rows: left)
    }

    private func noteKey(_ item: Item) {
        guard lastRow != nil, let earlier = lastRow!.updateValue(item.row, forKey: item.key) else { return }
        report.duplicate("duplicate key '\(item.key)': rows \(earlier) and \(item.row) (the later row replaces the earlier)")
    }

    /// The record as the item's attributes (all fields but the key, or --fields), nil when
    /// none are left; a failure when it cannot be stored.
    private func attributeText(_ record: [String: Any]) -> Result<String?, IngestError> {
        var object = record
        object[keyField] = nil
        if let fields { object = object.filter { fields.contains($0.key) } }
        if object.isEmpty { return .success(nil) }
        guard JSONSerialization.isValidJSONObject(object),
              let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else {
            return .failure(IngestError("its metadata cannot be written as JSON"))
        }
        guard data.count <= maxAttributeBytes else {
            return .failure(IngestError("its attributes take \(data.count) bytes, over \(maxAttributeBytes) (keep fewer with --fields)"))
        }
        return .success(String(decoding: data, as: UTF8.self))
    }

    static func keyText(_ value: Any?) -> String? {
        switch value {
        case let s as String where !s.isEmpty: return s
        case let n as NSNumber: return n.stringValue
        default: return nil
        }
    }
}
