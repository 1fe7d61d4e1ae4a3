// Items: the rows of a vector file joined with their metadata, as (key, vector, attributes),
// with every bad record reported by its row or line number.
//
// Join by row order (row i of the vectors with the i-th record of the metadata) or by key
// (the metadata is read first into a map from key to record). Keys come from the vector file
// when it carries them (Amazon's ASINs), else from the metadata's key field, else the row
// number.
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
    private let metadata: MetadataFile?
    private let join: Join
    private let keyField: String
    private let fields: Set<String>?
    private var byKey: [String: [String: Any]] = [:]
    private(set) var row = 0
    let maxAttributeBytes: Int

    init(vectors: VectorFile, metadata: MetadataFile?, join: Join, keyField: String, fields: [String]?,
         maxAttributeBytes: Int, report: (String) throws -> Void) throws {
        self.vectors = vectors
        self.metadata = metadata
        self.join = join
        self.keyField = keyField
        self.fields = fields.map(Set.init)
        self.maxAttributeBytes = maxAttributeBytes
        if join == .key, let metadata {
            while let next = metadata.next() {
                switch next {
                case .failure(let e): try report(e.description)
                case .success(let record):
                    guard let key = Self.keyText(record[keyField]) else {
                        try report("\(metadata.path) line \(metadata.line): no '\(keyField)' field")
                        continue
                    }
                    byKey[key] = record
                }
            }
        }
    }

    /// The next good item, or nil at the end; bad rows are reported and skipped.
    func next(report: (String) throws -> Void) throws -> Item? {
        while row < vectors.count {
            let r = row
            row += 1
            var record: [String: Any]?
            if join == .row, let metadata {
                switch metadata.next() {
                case nil:
                    try report("row \(r): the metadata file ended (\(metadata.line) lines) before the vectors")
                    return nil
                case .failure(let e)?:
                    try report("row \(r): \(e.description)")
                    continue
                case .success(let value)?:
                    record = value
                }
            }
            var key = vectors.key(at: r) ?? record.flatMap { Self.keyText($0[keyField]) }
            if join == .key {
                guard let k = key ?? vectors.key(at: r) else {
                    try report("row \(r): no key to join on (the vector file has none; use --join row)")
                    continue
                }
                record = byKey[k]
                key = k
            }
            if metadata != nil && key == nil {
                try report("row \(r): the metadata has no '\(keyField)' field")
                continue
            }
            let vector: [Float]
            do { vector = try vectors.vector(at: r) } catch {
                try report("row \(r): \(error)")
                continue
            }
            guard vector.allSatisfy(\.isFinite) else {
                try report("row \(r): the vector holds NaN or infinity")
                continue
            }
            var attributes: String?
            if var object = record {
                object[keyField] = nil
                if let fields { object = object.filter { fields.contains($0.key) } }
                if !object.isEmpty {
                    guard JSONSerialization.isValidJSONObject(object),
                          let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else {
                        try report("row \(r): its metadata cannot be written as JSON")
                        continue
                    }
                    guard data.count <= maxAttributeBytes else {
                        try report("row \(r): its attributes take \(data.count) bytes, over \(maxAttributeBytes) (keep fewer with --fields)")
                        continue
                    }
                    attributes = String(decoding: data, as: UTF8.self)
                }
            }
            return Item(row: r, key: key ?? String(r), vector: vector, attributes: attributes)
        }
        return nil
    }

    static func keyText(_ value: Any?) -> String? {
        switch value {
        case let s as String where !s.isEmpty: return s
        case let n as NSNumber: return n.stringValue
        default: return nil
        }
    }
}
