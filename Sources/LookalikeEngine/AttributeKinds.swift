// AttributeKinds: which kinds of value (string, number, boolean, array) each indexed attribute
// of a collection has ever held. With them a FILTER knows when its member set is exactly its
// answer (FilterExpression.isDecided), so no hit's attributes need parsing: `==` is false on an
// array although the attribute table lists each element, and a literal's set may list texts
// that equal it only as index text ("true" for 1, "5" for "5.0").
//
// Stored in the meta table (`attrkinds:<N>`, JSON of attribute -> kind bits), written in the
// transaction of the write that first brings a kind. Kinds are never narrowed: one seen stays
// (a removed value only makes the record cautious). A collection created before this record
// has none: every kind is assumed, and every filter is checked per hit as before.
// Invariants: the kinds readers see include those of every write applied to the segments: a
// write's kinds are widened when it is staged, before its transaction commits.
// Threads: `noteKinds`, `persistAttributeKinds`: the commit thread; `kinds(of:)`: any thread.
import Foundation
import LookalikeStorage

public struct AttributeKinds: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let string = AttributeKinds(rawValue: 1)
    public static let number = AttributeKinds(rawValue: 2)
    public static let bool = AttributeKinds(rawValue: 4)
    public static let list = AttributeKinds(rawValue: 8)
    public static let all: AttributeKinds = [.string, .number, .bool, .list]

    /// The kind of one value; an object or null is none (never listed, never matched).
    init(_ value: Attributes.Value) {
        switch value {
        case .scalar(.string): self = .string
        case .scalar(.number): self = .number
        case .scalar(.bool): self = .bool
        case .list: self = .list
        case .other: self = []
        }
    }
}

extension Collection {

    /// What a new collection starts with: known, and no kind yet.
    static func emptyKindsRecord() -> [UInt8] { encodeKinds([:]) }

    /// The kinds `attribute` has held; all of them when the collection keeps no record.
    func kinds(of attribute: String) -> AttributeKinds {
        attributeKinds.withLock { $0 == nil ? .all : $0![attribute] ?? [] }
    }

    /// Widens the record by a staged write's attributes (commit thread, before the commit).
    func noteKinds(_ attributes: Attributes?) {
        guard let attributes, !definition.attributes.isEmpty else { return }
        attributeKinds.withLock { record in
            guard record != nil else { return }
            for name in definition.attributes {
                if let v = attributes[name] { record![name, default: []].formUnion(AttributeKinds(v)) }
            }
        }
    }

    /// Writes the record in the batch's transaction when it differs from the stored one (so a
    /// failed transaction's retry writes it again).
    func persistAttributeKinds(_ txn: Transaction) throws {
        guard !definition.attributes.isEmpty, let record = attributeKinds.withLock({ $0 }) else { return }
        let bytes = Self.encodeKinds(record)
        let key = MetaLayout.attributeKinds(number)
        if try engine.meta.get(key, txn) != bytes { try engine.meta.put(key, bytes, txn) }
    }

    static func loadKinds(_ engine: Engine, number: UInt32) throws -> [String: AttributeKinds]? {
        try engine.environment.read { txn in
            guard let bytes = try engine.meta.get(MetaLayout.attributeKinds(number), txn),
                  let raw = try? JSONDecoder().decode([String: UInt8].self, from: Data(bytes)) else { return nil }
            return raw.mapValues(AttributeKinds.init(rawValue:))
        }
    }

    private static func encodeKinds(_ record: [String: AttributeKinds]) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return Array((try? encoder.encode(record.mapValues(\.rawValue))) ?? Data("{}".utf8))
    }
}
